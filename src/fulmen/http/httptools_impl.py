"""The fast HTTP/1.1 parser: httptools (llhttp) behind the shared :class:`HTTPConnection`."""

from __future__ import annotations

import logging

import httptools

from fulmen.http.connection import HTTPConnection
from fulmen.http.request_head import HTTPRequestError

logger = logging.getLogger("fulmen.error")


class HttpToolsProtocol(HTTPConnection):
    """Feeds bytes to an llhttp parser whose callbacks are the shared connection's events."""

    __slots__ = (
        "chunk_size",
        "fresh_chunk",
        "head_bound",
        "headers",
        "parser",
        "received",
        "trailer_size",
        "trailing",
        "url",
    )

    def setup(self) -> None:
        super().setup()
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.received = 0  # bytes of the current head seen so far, for the size limit
        self.chunk_size = 0  # bytes of the data being parsed
        # The data being parsed when it began between two requests (see on_headers_complete).
        self.fresh_chunk: bytes | None = None
        self.head_bound = 0  # an upper bound of the current head's size
        self.trailer_size = 0  # bytes of trailers of a chunked body (never given to the app)
        self.trailing = b""

    def feed(self, data: bytes) -> None:
        self.chunk_size = len(data)
        if self.head_started:
            self.fresh_chunk = None
            self.received += len(data)
            self.head_bound += len(data)
        elif self.cycle is None or not self.cycle.more_body:
            self.fresh_chunk = data  # no head nor body under way: a request line starts this data
        else:
            self.fresh_chunk = None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.trailing = data[exc.args[0] :]
            if self.upgrade_scope is None:
                # Another upgrade (h2c, ...) was served as plain HTTP; llhttp parses nothing after it.
                self.closing = True
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, HTTPRequestError):
                raise exc.__context__ from None
            logger.error("Error while handling a request head", exc_info=exc.__context__)
            raise HTTPRequestError(400, "Invalid HTTP request") from None
        except httptools.HttpParserError as exc:
            raise HTTPRequestError(400, str(exc) or "Invalid HTTP request") from None
        if self.head_started and self.received > self.max_head_size:
            raise HTTPRequestError(431, "Request head too large")

    def take_trailing_data(self) -> bytes:
        trailing, self.trailing = self.trailing, b""
        return trailing

    # -- llhttp callbacks

    def on_message_begin(self) -> None:
        self.head_started = True
        self.url = b""
        self.headers = []
        self.received = 0
        # At most this many bytes of the head have arrived: the head's exact size is only added up
        # when it could be over the limit, not per header on every request.
        self.head_bound = self.chunk_size

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.head_started:
            # llhttp drops the spaces and tabs before a value, not those after it (RFC 9110 section
            # 5.5: neither is part of the value; h11 drops both). The only whitespace llhttp lets
            # end a value is space and tab, so rstrip() without arguments strips just those; it
            # returns the value itself when there is nothing to strip, and costs about 140
            # instructions, half of rstrip(b" \t") and a quarter of a test of the last byte first.
            trimmed = value.rstrip()
            if trimmed is not value and name.lower() == b"content-length":
                # llhttp frames "5 " as 5 bytes; a proxy in front may not: refused, as on the h11 path.
                raise HTTPRequestError(400, "Invalid Content-Length header")
            self.headers.append((name.lower(), trimmed))
            return
        self.trailer_size += len(name) + len(value) + 4
        if self.trailer_size > self.max_head_size:
            # A trailer of a chunked body: never added to the request's headers (the app already has
            # them), and bounded like a head, as the h11 path bounds it.
            raise HTTPRequestError(431, "Request trailers too large")

    def on_headers_complete(self) -> None:
        parser = self.parser
        method = parser.get_method()
        methods = self.server_state.caches.methods
        method_text = methods.get(method)
        if method_text is None:
            method_text = methods[method] = method.decode("ascii")
        headers = self.headers
        size = 0
        if self.head_bound > self.max_head_size:
            size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in headers)
        self.trailer_size = 0
        # get_http_version() formats a new string per request. The first request of data that began
        # between requests starts the data (after any CR and LF, which llhttp skips), and llhttp takes
        # no CR or LF inside a request line and needs CRLF right after the version: so when the bytes
        # after "METHOD URL " (single spaces) are "HTTP/1.1\r\n", they are this request's version.
        chunk = self.fresh_chunk
        if chunk is not None:
            self.fresh_chunk = None  # a later request in the same data starts somewhere inside it
            start = len(method) + len(self.url) + 2
            if chunk[start : start + 10] == b"HTTP/1.1\r\n":
                version = "1.1"
            else:
                version = parser.get_http_version()
        else:
            version = parser.get_http_version()
        self.on_request(method_text, self.url, version, headers, size)
