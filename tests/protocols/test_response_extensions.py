"""The ASGI response extensions' rules in memory: what their messages must hold
(:mod:`fulmen.protocols.response_rules`), their place in the order of messages, and the HTTP/1.1
bytes the cycle frames them as (a recording transport: no socket, so files go out in reads)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from fulmen.caches import HTTPCaches
from fulmen.protocols import response_rules as rules
from tests.memory import MemoryConnection

Message = dict[str, Any]
TE_TRAILERS = b"GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n"


def start(**extra: Any) -> Message:
    return {"type": "http.response.start", "status": 200, "headers": [], **extra}


def body(data: bytes = b"", more: bool = False) -> Message:
    return {"type": "http.response.body", "body": data, "more_body": more}


def trailers(*fields: tuple[bytes, bytes], more: bool = False) -> Message:
    return {"type": "http.response.trailers", "headers": list(fields), "more_trailers": more}


def serve(*messages: Message, request: bytes = TE_TRAILERS) -> tuple[bytes, bool, list[BaseException]]:
    """The bytes written for ``request`` by an app sending ``messages``, whether the connection was
    closed, and what ``send`` raised (the app stops at the first error)."""
    errors: list[BaseException] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            for message in messages:
                await send(message)
        except Exception as exc:
            errors.append(exc)
            raise

    connection = MemoryConnection(app)
    try:
        return connection.feed(request), connection.transport.closed, errors
    finally:
        connection.close()


# -- the messages' contents


def test_scope_extensions_are_fresh_empty_dicts() -> None:
    extensions = rules.scope_extensions(rules.RESPONSE_EXTENSIONS)
    assert list(extensions) == list(rules.RESPONSE_EXTENSIONS) and all(
        value == {} for value in extensions.values()
    )
    assert extensions != rules.scope_extensions(()) and rules.scope_extensions(()) == {}


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        (b"trailers", True),
        (b"gzip, Trailers", True),
        (b"trailers;q=0.5", True),
        (b"gzip", False),
        (b"x-trailers", False),
    ],
)
def test_which_requests_accept_trailers(value: bytes, accepted: bool) -> None:
    assert rules.accepts_trailers([(b"host", b"x"), (b"te", value)]) is accepted
    assert rules.accepts_trailers([(b"host", b"trailers")]) is False


def test_early_hint_links() -> None:
    caches = HTTPCaches()
    message = {"links": [b"</a.css>; rel=preload ", bytearray(b"</b.js>")]}
    assert rules.early_hint_headers(message, caches) == [
        (b"link", b"</a.css>; rel=preload"),
        (b"link", b"</b.js>"),
    ]
    for bad in ({}, {"links": b"</a.css>"}, {"links": ["</a.css>"]}):
        with pytest.raises(TypeError):
            rules.early_hint_headers(bad, caches)
    with pytest.raises(RuntimeError, match="Invalid HTTP header value"):
        rules.early_hint_headers({"links": [b"</a>\r\nset-cookie: x"]}, caches)


def test_trailer_fields() -> None:
    caches = HTTPCaches()
    assert rules.trailer_fields({"headers": [(b"X-Sum", b"1"), [b"server-timing", b"db;dur=5"]]}, caches) == [
        (b"x-sum", b"1"),
        (b"server-timing", b"db;dur=5"),
    ]
    assert rules.trailer_fields({}, caches) == []
    for name in (b":status", b"content-length", b"Transfer-Encoding", b"trailer", b"host"):
        with pytest.raises(RuntimeError):
            rules.trailer_fields({"headers": [(name, b"1")]}, caches)
    with pytest.raises(RuntimeError, match="Invalid HTTP header value"):
        rules.trailer_fields({"headers": [(b"x-sum", b"1\n2")]}, caches)


def test_path_body(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    file_body = rules.path_body({"path": str(path)})
    assert (file_body.offset, file_body.count, file_body.owned) == (0, 10, True)
    assert b"".join(rules.file_chunks(file_body, 3)) == b"0123456789"
    file_body.close()
    assert file_body.file.closed
    with pytest.raises(TypeError):
        rules.path_body({"path": b"/x"})
    with pytest.raises(RuntimeError, match="absolute path"):
        rules.path_body({"path": "f"})
    with pytest.raises(RuntimeError, match="regular file"):
        rules.path_body({"path": os.devnull})
    with pytest.raises(IsADirectoryError):
        rules.path_body({"path": str(tmp_path)})
    with pytest.raises(FileNotFoundError):
        rules.path_body({"path": str(tmp_path / "missing")})


def test_zerocopy_body(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    with open(path, "rb") as file:
        file.seek(4)
        whole = rules.zerocopy_body({"file": file})
        assert (whole.offset, whole.count) == (4, 6)
        assert b"".join(rules.file_chunks(whole)) == b"456789"
        part = rules.zerocopy_body({"file": file.fileno(), "offset": 1, "count": 2})
        assert b"".join(rules.file_chunks(part)) == b"12"
        whole.close()
        part.close()
        assert not file.closed and os.read(file.fileno(), 1) == b"4"  # left open, where it was
        short = rules.zerocopy_body({"file": file, "offset": 8, "count": 5})
        assert b"".join(rules.file_chunks(short)) == b"89"  # the file is shorter: fewer bytes
        for bad in ({"file": file, "offset": -1}, {"file": file, "count": "3"}):
            with pytest.raises(RuntimeError):
                rules.zerocopy_body(bad)
    for bad_file in (None, "name", file):  # file is closed now
        with pytest.raises(TypeError):
            rules.zerocopy_body({"file": bad_file})


# -- the order of messages, framed by the HTTP/1.1 cycle


def test_trailers_framed_after_the_last_chunk() -> None:
    data, closed, errors = serve(
        start(trailers=True),
        body(b"ab", more=True),
        body(b"c"),
        trailers((b"x-a", b"1"), more=True),
        trailers(),
    )
    assert data.endswith(b"\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\nx-a: 1\r\n\r\n") and not closed and not errors


def test_trailers_without_te_or_fields_end_the_body_plainly() -> None:
    plain = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    data = serve(start(trailers=True), body(b"ab"), trailers((b"x-a", b"1")), request=plain)[0]
    assert data.endswith(b"\r\n\r\n2\r\nab\r\n0\r\n\r\n")
    data = serve(start(trailers=True), body(b"ab"), trailers())[0]
    assert data.endswith(b"\r\n\r\n2\r\nab\r\n0\r\n\r\n")


def test_a_response_declaring_trailers_waits_for_them() -> None:
    data, closed, errors = serve(start(trailers=True), body(b"ab"))
    assert data.endswith(b"\r\n\r\n2\r\nab\r\n") and closed and not errors  # cut: never completed


@pytest.mark.parametrize(
    "messages",
    [
        (start(), body(b"a"), trailers()),  # not declared
        (start(trailers=True), trailers()),  # before the body is complete
        (start(trailers=True), body(b"a"), body(b"b")),
        (start(trailers=True), body(b"a"), {"type": "http.response.zerocopysend", "file": 0}),
        (start(trailers=True), body(b"a"), trailers(), trailers()),
    ],
)
def test_trailers_out_of_place(messages: tuple[Message, ...]) -> None:
    errors = serve(*messages)[2]
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)


def test_early_hints_before_the_response_only() -> None:
    hint = {"type": "http.response.early_hint", "links": [b"</a.css>"]}
    data, closed, errors = serve(hint, hint, start(), hint, body(b"ok"))
    assert data.startswith(2 * b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n" + b"HTTP/1.1 200 OK\r\n")
    assert data.count(b"103") == 2 and not errors
    errors = serve(start(), body(b"ok"), hint)[2]
    assert len(errors) == 1 and "after response already completed" in str(errors[0])


def test_pathsend_is_the_whole_body(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    pathsend = {"type": "http.response.pathsend", "path": str(path)}
    data, closed, errors = serve(start(), body(b"", more=True), pathsend)
    assert data.endswith(b"\r\n\r\n64\r\n" + b"x" * 100 + b"\r\n0\r\n\r\n") and not errors
    data, closed, errors = serve(start(headers=[(b"content-length", b"99")]), pathsend)
    assert closed and isinstance(errors[0], RuntimeError) and "longer than Content-Length" in str(errors[0])
    data, closed, errors = serve(start(), pathsend, body(b"more"))
    assert "after response already completed" in str(errors[0])
    data, closed, errors = serve(start(trailers=True), pathsend, trailers((b"x-a", b"1")))
    assert data.endswith(b"\r\n\r\n64\r\n" + b"x" * 100 + b"\r\n0\r\nx-a: 1\r\n\r\n") and not errors


def test_a_file_shorter_than_it_said_cuts_the_response(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"0123")
    with open(path, "rb") as file:
        message = {"type": "http.response.zerocopysend", "file": file, "offset": 2, "count": 10}
        data, closed, errors = serve(start(), message)
    assert closed and "short" in str(errors[0])
