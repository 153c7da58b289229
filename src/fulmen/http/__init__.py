"""HTTP/1.1: one request/response cycle shared by the httptools and h11 parsers."""
