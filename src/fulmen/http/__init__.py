"""HTTP on the protocol floor (:mod:`fulmen.protocols`).

- :mod:`~fulmen.http.connection`: the HTTP/1.1 connection, shared by the two parser adapters
  :mod:`~fulmen.http.httptools_impl` and :mod:`~fulmen.http.h11_impl`;
  :mod:`~fulmen.http.cycle`: one request and its response, framed as HTTP/1.1 bytes.
- :mod:`~fulmen.http.request_head`: the request-head checks, without I/O;
  :mod:`~fulmen.http.target`: request targets; :mod:`~fulmen.http.wire`: HTTP/1.1 bytes.
- :mod:`~fulmen.http.h2_impl`: HTTP/2 (``--http2``), one stream per request.
"""
