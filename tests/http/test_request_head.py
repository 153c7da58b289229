"""The request-head checks without I/O (:func:`fulmen.http.request_head.check_request_head`), and the
request targets (:func:`fulmen.http.target.parse_target`): header pairs in, a meaning or an error out."""

from __future__ import annotations

import pytest

from fulmen.http.request_head import HTTPRequestError, check_request_head
from fulmen.http.target import parse_target

Headers = list[tuple[bytes, bytes]]
HOST: Headers = [(b"host", b"example.org")]


def check(headers: Headers, version: str = "1.1", size: int = 0, trusted: bool = False) -> tuple[object, ...]:
    return check_request_head(version, headers, size, 1000, 10, trusted)


def status_of(headers: Headers, version: str = "1.1", size: int = 0) -> int:
    with pytest.raises(HTTPRequestError) as raised:
        check(headers, version, size)
    return raised.value.status


def test_a_plain_request() -> None:
    assert check(HOST) == ("1.1", True, False, None, ())
    assert check([], "1.0") == ("1.0", False, False, None, ())
    assert check(HOST, "HTTP/1.1") == ("1.1", True, False, None, ())  # as h11 gives it


@pytest.mark.parametrize(
    ("value", "keep_alive"),
    [(b"keep-alive", True), (b"close", False), (b"Keep-Alive, Upgrade", True), (b"upgrade, CLOSE", False)],
)
def test_connection_tokens(value: bytes, keep_alive: bool) -> None:
    assert check([*HOST, (b"connection", value)], "1.0")[1] is keep_alive


def test_expect_and_upgrade() -> None:
    assert check([*HOST, (b"expect", b"100-Continue")])[2] is True
    assert check([*HOST, (b"expect", b"something")])[2] is False
    assert check([*HOST, (b"upgrade", b"WebSocket")])[3] == b"websocket"


def test_forwarding_headers_count_only_from_a_trusted_peer() -> None:
    headers = [*HOST, (b"x-forwarded-for", b"203.0.113.7"), (b"forwarded", b"for=1.2.3.4")]
    assert check(headers)[4] == ()
    assert check(headers, trusted=True)[4] == (
        (b"x-forwarded-for", b"203.0.113.7"),
        (b"forwarded", b"for=1.2.3.4"),
    )


@pytest.mark.parametrize(
    ("headers", "version", "status"),
    [
        ([], "1.1", 400),  # no Host
        ([*HOST, *HOST], "1.1", 400),
        ([*HOST, (b"content-length", b"5"), (b"content-length", b"6")], "1.1", 400),
        ([*HOST, (b"content-length", b"-5")], "1.1", 400),
        ([*HOST, (b"content-length", b"5"), (b"transfer-encoding", b"chunked")], "1.1", 400),
        ([*HOST, (b"transfer-encoding", b"gzip, chunked")], "1.1", 400),
        ([*HOST, (b"transfer-encoding", b"chunked"), (b"transfer-encoding", b"chunked")], "1.1", 400),
        ([(b"transfer-encoding", b"chunked")], "1.0", 400),
        (HOST, "2.0", 505),
        (HOST * 11, "1.1", 431),  # more headers than the limit (10 here)
    ],
)
def test_heads_that_are_refused(headers: Headers, version: str, status: int) -> None:
    assert status_of(headers, version) == status


def test_the_same_content_length_twice_is_one() -> None:
    assert check([*HOST, (b"content-length", b"5"), (b"content-length", b"5")])[0] == "1.1"


def test_a_head_over_the_size_limit() -> None:
    assert status_of(HOST, size=1001) == 431
    assert check(HOST, size=1000)[0] == "1.1"


@pytest.mark.parametrize(
    ("target", "parsed"),
    [
        (b"/a%20b?x=1#frag", ("/a b", b"/a%20b", b"x=1")),
        (b"http://example.org/p?q", ("/p", b"/p", b"q")),
        (b"http://example.org?q", ("/", b"/", b"q")),
        (b"*", ("*", b"*", b"")),
    ],
)
def test_targets(target: bytes, parsed: tuple[str, bytes, bytes]) -> None:
    assert parse_target(target) == parsed


@pytest.mark.parametrize("target", [b"example.org", b"/caf\xc3\xa9"])
def test_bad_targets(target: bytes) -> None:
    with pytest.raises(HTTPRequestError) as raised:
        parse_target(target)
    assert raised.value.status == 400
