"""Property-based fuzzing of the WebSocket frame path, for both engines (``websockets`` and ``wsproto``).

After a real handshake on loopback, valid frame streams (text and binary messages of random sizes and
length encodings, fragmented at random, with pings and pongs between fragments, random masks, then a
close) are split at random points: every message must come back exactly once and in order, every
ping be answered, the close be echoed and the connection end. Mutated streams and random bytes must
only ever get well-formed server frames (unmasked, valid opcodes and close codes, nothing after the
close frame), no ERROR log, no hang, and the server must go on echoing for a new client.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import RunningServer, run_server
from tests.fuzzing import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    STATS,
    TEXT,
    ErrorLog,
    Finding,
    FuzzApp,
    FuzzedServer,
    WSMessage,
    encode_messages,
    fuzz_settings,
    mutate,
    mutations,
    probe_ws,
    random_keys,
    register_stats,
    split,
    split_points,
    ws_data_messages,
    ws_exchange,
    ws_frame,
    ws_messages,
)

pytestmark = pytest.mark.timeout(180)


class WSServer(FuzzedServer):
    def __init__(self, running: RunningServer, log: ErrorLog, name: str) -> None:
        super().__init__(running, log, name, lambda: probe_ws(running.port))


@pytest.fixture(scope="module", params=["websockets", "wsproto"])
def ws_server(request: pytest.FixtureRequest) -> Iterator[WSServer]:
    register_stats(request.config)
    log = ErrorLog().install()
    try:
        with run_server(
            FuzzApp(),
            ws=request.param,
            ws_ping_interval=None,
            ws_max_size=100_000,
            ws_per_message_deflate=False,
        ) as running:
            yield WSServer(running, log, f"ws/{request.param}")
    finally:
        log.uninstall()


def _pings(messages: list[WSMessage]) -> list[bytes]:
    return [payload for message in messages for _, opcode, payload in message.controls if opcode == PING]


def _ordered_pings(messages: list[WSMessage]) -> list[bytes]:
    """Ping payloads in the order :func:`encode_messages` sends them."""
    order = []
    for message in messages:
        last = len(message.fragments) - 1
        for index in range(last):
            order += [p for after, op, p in message.controls if after == index and op == PING]
        order += [p for after, op, p in message.controls if after >= last and op == PING]
    return order


@fuzz_settings(50)
@given(messages=st.lists(ws_messages(), max_size=5), seed=st.binary(min_size=4, max_size=4), data=st.data())
def test_valid_frames_are_echoed_exactly_once(
    ws_server: WSServer, messages: list[WSMessage], seed: bytes, data: st.DataObject
) -> None:
    STATS.count(ws_server.name + "/valid")
    keys = random_keys(seed)
    raw = encode_messages(messages, keys, close=False)
    pieces = split(raw, data.draw(split_points(len(raw)), label="splits"))
    close = ws_frame(CLOSE, struct.pack("!H", 1000) + b"bye", key=next(keys))
    outcome = ws_exchange(
        ws_server.port, pieces, until_close=True, expect_messages=len(messages), close_frame=close
    )
    expected = [(TEXT if m.text else BINARY, m.payload) for m in messages]
    received = ws_data_messages(outcome.frames)
    if received != expected:
        raise Finding(f"echoed {[(o, len(p)) for o, p in received]} for {[(o, len(p)) for o, p in expected]}")
    pongs = [payload for _, opcode, payload in outcome.frames if opcode == PONG]
    if pongs != _ordered_pings(messages):
        raise Finding(f"pongs {pongs} for pings {_ordered_pings(messages)}")
    if (
        not outcome.frames
        or outcome.frames[-1][1] != CLOSE
        or outcome.frames[-1][2][:2] != struct.pack("!H", 1000)
    ):
        raise Finding(f"the close was not echoed: {outcome.frames[-1:]}")
    if not outcome.closed:
        raise Finding("connection still open after the close handshake")
    ws_server.check_health()


@fuzz_settings(60)
@given(
    messages=st.lists(ws_messages(), min_size=1, max_size=3),
    seed=st.binary(min_size=4, max_size=4),
    ops=mutations(),
    data=st.data(),
)
def test_mutated_frames_never_break_the_server(
    ws_server: WSServer, messages: list[WSMessage], seed: bytes, ops: Any, data: st.DataObject
) -> None:
    STATS.count(ws_server.name + "/mutated")
    raw = mutate(encode_messages(messages, random_keys(seed)), ops)
    pieces = split(raw, data.draw(split_points(len(raw)), label="splits"))
    ws_exchange(ws_server.port, pieces, until_close=False)
    ws_server.check_health()


@fuzz_settings(25)
@given(
    prefix=st.sampled_from(
        [b"", ws_frame(TEXT, b"ok", key=b"abcd"), ws_frame(TEXT, b"\xce", fin=False, key=b"abcd")]
    ),
    garbage=st.binary(max_size=200),
)
def test_random_bytes_after_the_handshake(ws_server: WSServer, prefix: bytes, garbage: bytes) -> None:
    STATS.count(ws_server.name + "/random")
    ws_exchange(ws_server.port, [prefix + garbage], until_close=False)
    ws_server.check_health()
