"""ConnectionOutput, the one output path of an HTTP/1.1 connection, on a recording transport."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from fulmen.protocols.output import CORK_LIMIT, ConnectionOutput
from tests.memory import RecordingTransport


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def output_on(loop: asyncio.AbstractEventLoop) -> tuple[ConnectionOutput, RecordingTransport]:
    transport = RecordingTransport(loop)
    return ConnectionOutput(transport, loop), transport


def end_of_turn(loop: asyncio.AbstractEventLoop) -> None:
    loop.call_soon(loop.stop)
    loop.run_forever()


def respond(output: ConnectionOutput, *parts: bytes) -> None:
    """What a response does: its bytes into ``pending``, corked, then complete."""
    output.pending += parts
    if not output.corked:
        output.cork()
    if not output.batched:
        output.flush()


def test_a_lone_response_is_written_at_once_in_one_write(loop: asyncio.AbstractEventLoop) -> None:
    output, transport = output_on(loop)
    respond(output, b"head", b"body")
    assert transport.writes == [b"headbody"]


def test_responses_of_one_turn_after_the_first_wait_for_its_end(loop: asyncio.AbstractEventLoop) -> None:
    (first, first_transport), (second, second_transport) = output_on(loop), output_on(loop)
    respond(first, b"one")
    respond(second, b"two")
    assert first_transport.writes == [b"one"] and second_transport.writes == []
    end_of_turn(loop)
    assert second_transport.writes == [b"two"]
    respond(second, b"three")  # a new turn: alone in it again
    assert second_transport.writes == [b"two", b"three"]


@pytest.mark.parametrize("then", ["write", "close"])
def test_a_held_response_goes_before_what_follows(loop: asyncio.AbstractEventLoop, then: str) -> None:
    (first, _), (second, transport) = output_on(loop), output_on(loop)
    respond(first, b"one")
    respond(second, b"held")
    if then == "write":
        second.write(b"next")
        assert transport.writes == [b"heldnext"]
    else:
        second.close()
        assert transport.writes == [b"held"] and transport.closed
    end_of_turn(loop)
    assert transport.data in (b"heldnext", b"held")  # nothing written twice


def test_body_chunks_are_written_once_the_cork_limit_is_reached(loop: asyncio.AbstractEventLoop) -> None:
    output, transport = output_on(loop)
    output.add_body((b"x" * (CORK_LIMIT - 1),), CORK_LIMIT - 1)
    assert transport.writes == [] and output.corked
    output.add_body((b"y",), 1)
    assert len(transport.data) == CORK_LIMIT
    output.add_body((b"z",), 1)
    end_of_turn(loop)
    assert transport.data.endswith(b"yz")


def test_nothing_is_written_once_the_connection_is_lost(loop: asyncio.AbstractEventLoop) -> None:
    (first, _), (second, transport) = output_on(loop), output_on(loop)
    respond(first, b"one")
    respond(second, b"held")
    second.connection_lost()
    end_of_turn(loop)
    assert transport.writes == []
