"""The ASGI response rules as plain functions (:mod:`fulmen.protocols.response_rules`): what every
framing (HTTP/1.1, HTTP/2, a WebSocket denial) asks before it frames a response."""

from __future__ import annotations

from typing import Any

import pytest

from fulmen.caches import MAX_ENTRIES, MAX_KEY_SIZE, HTTPCaches
from fulmen.protocols import response_rules as rules


@pytest.mark.parametrize("status", [100, 200, 599])
def test_valid_statuses(status: int) -> None:
    assert rules.check_status(status) == status


@pytest.mark.parametrize("status", [99, 600, "200", 200.0, None, True])
def test_invalid_statuses(status: Any) -> None:
    with pytest.raises(RuntimeError, match="Invalid HTTP status code"):
        rules.check_status(status)


def test_a_final_status_where_informational_ones_cannot_be() -> None:
    with pytest.raises(RuntimeError):
        rules.check_status(103, lowest=200)


@pytest.mark.parametrize(
    ("status", "head", "allowed"),
    [(200, False, True), (200, True, False), (101, False, False), (204, False, False), (304, False, False)],
)
def test_which_responses_carry_a_body(status: int, head: bool, allowed: bool) -> None:
    assert rules.body_allowed(status, head) is allowed


def test_body_types() -> None:
    assert rules.body_bytes(b"a") == b"a"
    assert rules.body_bytes(bytearray(b"a")) == b"a"
    assert rules.body_bytes(memoryview(b"a")) == b"a"
    with pytest.raises(TypeError):
        rules.body_bytes("a")


def test_header_names_are_checked_and_lowered() -> None:
    caches = HTTPCaches()
    assert rules.header_name(b"X-Thing", caches) == b"x-thing"
    assert caches.header_names == {b"X-Thing": b"x-thing"}
    for bad in (b"", b"bad name", b"colon:", b"caf\xc3\xa9"):
        with pytest.raises(RuntimeError, match="Invalid HTTP header name"):
            rules.header_name(bad, caches)
    assert caches.header_names == {b"X-Thing": b"x-thing"}


@pytest.mark.parametrize("value", [b"a\rb", b"a\nb", b"a\0b"])
def test_header_values_that_would_break_the_line(value: bytes) -> None:
    caches = HTTPCaches()
    with pytest.raises(RuntimeError, match="Invalid HTTP header value"):
        rules.check_header_value(value, caches)
    assert not caches.header_values
    rules.check_header_value(b"a b", caches)
    assert caches.header_values == {b"a b"}


def test_content_length_values() -> None:
    caches = HTTPCaches()
    assert rules.content_length(b"42", caches) == 42 and caches.content_lengths == {b"42": 42}
    for bad in (b"-1", b"1.0", b"", b" 1"):
        with pytest.raises(RuntimeError, match="Invalid Content-Length"):
            rules.content_length(bad, caches)
    assert caches.content_lengths == {b"42": 42}


def test_the_caches_stay_bounded() -> None:
    caches = HTTPCaches()
    for number in range(MAX_ENTRIES + 10):
        rules.check_header_value(b"v%d" % number, caches)
        rules.header_name(b"X-%d" % number, caches)
        assert len(caches.header_values) <= MAX_ENTRIES and len(caches.header_names) <= MAX_ENTRIES
    long_value = b"v" * (MAX_KEY_SIZE + 1)
    rules.check_header_value(long_value, caches)
    assert long_value not in caches.header_values


def test_checked_headers_add_the_defaults_the_app_did_not_set() -> None:
    defaults = [(b"date", b"today"), (b"server", b"fulmen")]
    headers = [(b"Server", b"mine"), (bytearray(b"X"), b"1")]
    assert rules.checked_headers(headers, defaults, HTTPCaches()) == [
        (b"server", b"mine"),
        (b"x", b"1"),
        (b"date", b"today"),
    ]
