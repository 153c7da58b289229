"""The pure-Python HTTP/1.1 parser: h11 behind the shared :class:`HTTPConnection`.

h11 is used for parsing only; responses are written by the shared cycle. Each request gets a fresh
h11 state machine (see :meth:`H11Protocol.prepare_next_request`). h11 reads requests more loosely
than llhttp; the checks that make both parsers answer alike read some of h11's private state, all of
it in the last section of this module.
"""

from __future__ import annotations

import re
from typing import Any

import h11
from h11._readers import ChunkedReader

from fulmen.http.connection import HTTPConnection
from fulmen.http.request_head import HTTPRequestError
from fulmen.http.wire import lax_framing

_MAX_CHUNK_SIZE = 1 << 64
# A chunk-size line as llhttp accepts it: hex digits, then extensions without any whitespace.
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_EXT_VALUE = rb'(?:%s*|"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*")' % _TOKEN
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]+)(?:;(?:%s+(?:=%s)?|=%s))*\r\n" % (_TOKEN, _EXT_VALUE, _EXT_VALUE))


class H11Protocol(HTTPConnection):
    def setup(self) -> None:
        super().setup()
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_head_size)
        self.raw_head_size = 0  # bytes of the current request head as received (an upper bound)
        self.head_lines = 0  # lines of the current request head (h11 joins folded ones)

    def feed(self, data: bytes) -> None:
        if self.parser_paused:
            # h11 holds a whole request until the current one ends; bound what piles up behind it.
            self.flow.pause_reading()
        self.conn.receive_data(data)
        self.process_events()

    def process_events(self) -> None:
        conn = self.conn
        while True:
            if conn.their_state is h11.IDLE:
                self.raw_head_size = self.check_head(_received(conn))
            elif conn.their_state is h11.SEND_BODY:
                _check_chunk_line(conn)
            elif conn.their_state is h11.MUST_CLOSE:
                # h11 reads nothing after a request it will not keep alive (HTTP/1.0): what follows
                # an HTTP/1.0 keep-alive request waits for the next parser, like a held request.
                self.parser_paused = True
                return
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint
                if "too long" in str(exc) or "too large" in str(exc):
                    status = 431
                elif status == 501:  # an unknown Transfer-Encoding: 400, as the httptools path answers
                    status = 400
                raise HTTPRequestError(status, str(exc)) from None
            event_type = type(event)
            if event_type is h11.Request:
                assert isinstance(event, h11.Request)
                headers = _header_pairs(event.headers)
                if len(headers) + 2 != self.head_lines:  # request line, headers, empty line
                    raise HTTPRequestError(400, "obsolete line folding in request head")
                size = 0
                if self.raw_head_size > self.max_head_size:  # else the exact size cannot be over the limit
                    size = len(event.target) + sum(len(name) + len(value) + 4 for name, value in headers)
                self.on_request(
                    event.method.decode("ascii"), event.target, event.http_version.decode(), headers, size
                )
            elif event_type is h11.Data:
                assert isinstance(event, h11.Data)
                self.on_body(bytes(event.data))
                _check_chunk_size(conn)
            elif event_type is h11.EndOfMessage:
                self.on_message_complete()
            elif event is h11.NEED_DATA:
                self.parser_paused = False
                _check_chunk_size(conn)
                buffered = len(_received(conn))
                self.head_started = conn.their_state is h11.IDLE and buffered > 0
                if self.head_started and buffered > self.max_head_size:
                    raise HTTPRequestError(431, "Request head too large")
                return
            elif event is h11.PAUSED:
                self.parser_paused = True
                return
            else:  # ConnectionClosed
                return

    def check_head(self, buffer: bytes | bytearray) -> int:
        """Reject, as llhttp does, heads that h11 alone would accept (see :func:`lax_framing`); the
        size of the complete head in ``buffer``, or of ``buffer`` while the head is incomplete."""
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            end = buffer.find(b"\n\n")
            if end < 0:
                return len(buffer)
        head = bytes(buffer[: end + 4]).lstrip(b"\r\n")
        reason = lax_framing(head, folding=False)
        if reason is not None:
            raise HTTPRequestError(400, reason)
        self.head_lines = head.count(b"\n")
        return end + 4

    def prepare_next_request(self) -> None:
        # A fresh h11 connection, fed what the client already sent, is cheaper than walking the old
        # one through a response it would only throw away.
        conn = self.conn
        # MUST_CLOSE: an HTTP/1.0 request, which h11 never keeps alive; with "Connection: keep-alive"
        # the shared connection kept it (as llhttp does), and the request is complete.
        if conn.their_state is not h11.DONE and conn.their_state is not h11.MUST_CLOSE:
            self.closing = True
            return
        leftover, closed = conn.trailing_data
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_head_size)
        if leftover or closed:
            self.conn.receive_data(leftover)
            if closed:
                self.conn.receive_data(b"")
        self.process_events()

    def take_trailing_data(self) -> bytes:
        return bytes(self.conn.trailing_data[0])


# -- h11's private state
#
# To answer like llhttp, this adapter checks the bytes h11 is about to read (see lax_framing and the
# chunk checks below): only h11's receive buffer and chunked-body reader hold them, and h11 has no
# public way to them (``trailing_data`` copies the whole buffer, a request body included). The
# functions below are the only code that reads h11's private attributes; pyproject.toml pins h11 to
# the versions they were tested with (0.16; in 0.14 ``_bytes_to_discard`` was a count, not bytes).


def _received(conn: h11.Connection) -> bytearray:
    """The bytes h11 has received and not parsed yet (its buffer itself, not a copy)."""
    return conn._receive_buffer._data


def _header_pairs(headers: Any) -> list[tuple[bytes, bytes]]:
    """A request's (lower-case name, value) pairs from h11's own list, without the Sequence protocol."""
    return [(name, value) for _, name, value in headers._full_items]


def _check_chunk_line(conn: h11.Connection) -> None:
    """Chunk-size lines and trailers, checked as llhttp checks them before h11 reads them: h11
    accepts any bytes in chunk extensions, sizes past 64 bits and framing headers in trailers."""
    reader = conn._reader
    if type(reader) is not ChunkedReader or reader._bytes_in_chunk:
        return
    data = _received(conn)
    if reader._reading_trailer:
        _check_trailers(data, 0)
        return
    start = len(reader._bytes_to_discard)
    end = data.find(b"\n", start)
    if end < 0:
        return
    match = _CHUNK_LINE.fullmatch(data, start, end + 1)
    if match is None:
        raise HTTPRequestError(400, "Invalid chunk size line")
    size = int(match.group(1), 16)
    if size >= _MAX_CHUNK_SIZE:
        raise HTTPRequestError(400, "Chunk size too large")
    if size == 0:  # h11 reads the trailers in the same step as the last chunk line
        _check_trailers(data, end + 1)


def _check_trailers(data: bytearray, start: int) -> None:
    if data.startswith(b"\r\n", start):
        return
    end = data.find(b"\r\n\r\n", start)
    if end < 0:
        return
    trailers = b"X: y\r\n" + bytes(data[start : end + 4])
    reason = lax_framing(trailers)
    lower = trailers.lower()
    if reason is None and (b"\ncontent-length:" in lower or b"\ntransfer-encoding:" in lower):
        reason = "framing header in trailers"
    if reason is not None:
        raise HTTPRequestError(400, reason)


def _check_chunk_size(conn: h11.Connection) -> None:
    """A chunk size past 64 bits is an attack, not a body: llhttp rejects it, and so does this path."""
    reader = conn._reader
    # A type check, not getattr() with a default: that raises and catches for every other reader.
    if type(reader) is ChunkedReader and reader._bytes_in_chunk >= _MAX_CHUNK_SIZE:
        raise HTTPRequestError(400, "Chunk size too large")
