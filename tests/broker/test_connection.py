"""broker.connection.ReconnectingClient against a real Mosquitto: ready, reconnect with resubscribe after a broker
restart, the jittered backoff, manual acknowledgement holding a QoS 1 message, and the Last Will on a dropped link."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiomqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.connection import Backoff, BrokerUnreachable, Link, NotConnected, ReconnectingClient, Session
from broker.embedded import free_port
from broker.process import MosquittoProcess
from tests.waiting import until

pytestmark = pytest.mark.mosquitto

FAST = Backoff(initial_s=0.05, maximum_s=0.2, jitter=0.5)


@asynccontextmanager
async def observer(m: MosquittoProcess, topic: str) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(m.host, m.port, identifier="observer") as c:
        await c.subscribe(topic, qos=1)
        yield c


def collector(into: list[tuple[str, bytes]], *, ack: bool = False) -> Session:
    async def session(link: Link) -> None:
        async for message in link.messages:
            assert isinstance(message.payload, bytes)
            into.append((str(message.topic), message.payload))
            if ack:
                link.ack([message.mid])
    return session


async def test_ready_is_an_event_set_once_connected_and_subscribed(mosquitto: MosquittoProcess) -> None:
    got: list[tuple[str, bytes]] = []
    c = ReconnectingClient(mosquitto.host, mosquitto.port, identifier="t-ready", backoff=FAST, subscriptions=[("t/#", 1)], session=collector(got))
    assert c.connects == 0
    with pytest.raises(NotConnected):
        await c.publish("t/x", b"too early")
    async with c:
        await c.wait_ready(10)
        assert c.connected
        assert c.connects == 1
        await c.publish("t/x", b"hello")  # published and received on the same connection: subscribed before ready
        await until(lambda: got == [("t/x", b"hello")], 10, "its own message back")
    assert not c.connected


async def test_an_unreachable_broker_is_named_after_the_wait() -> None:
    port = free_port()
    async with ReconnectingClient("127.0.0.1", port, identifier="t-none", backoff=FAST) as c:
        with pytest.raises(BrokerUnreachable, match=f"127.0.0.1:{port}"):
            await c.wait_ready(0.5)
        assert c.losses >= 1


async def test_a_broker_restart_reconnects_and_subscribes_again(mosquitto: MosquittoProcess) -> None:
    """No persistence: the restarted broker forgot every subscription, so receiving again proves the resubscribe."""
    got: list[tuple[str, bytes]] = []
    async with ReconnectingClient(mosquitto.host, mosquitto.port, identifier="t-restart", backoff=FAST, subscriptions=[("t/#", 1)],
                                  session=collector(got)) as c:
        await c.wait_ready(10)
        mosquitto.stop()
        await until(lambda: not c.connected, 10, "the loss to be seen")
        mosquitto.start()
        await c.wait_ready(10)
        assert c.connects == 2
        assert c.losses >= 1
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="pub") as pub:
            await pub.publish("t/after", b"again", qos=1)
        await until(lambda: ("t/after", b"again") in got, 10, "a message after the restart")


@given(attempt=st.integers(0, 200), draw=st.floats(0, 1, exclude_max=True),
       initial=st.floats(0.01, 5), ratio=st.floats(1, 100), jitter=st.floats(0, 0.99))
def test_the_backoff_doubles_to_its_maximum_and_jitter_only_shortens(attempt: int, draw: float, initial: float, ratio: float,
                                                                     jitter: float) -> None:
    b = Backoff(initial_s=initial, maximum_s=initial * ratio, jitter=jitter)
    base = min(initial * 2**min(attempt, 62), b.maximum_s)
    assert base * (1 - jitter) - 1e-9 <= b.delay_s(attempt, draw) <= base + 1e-9


def test_backoff_numbers_are_checked() -> None:
    for bad in ({"initial_s": 0}, {"initial_s": 2, "maximum_s": 1}, {"jitter": 1.0}, {"jitter": -0.1}):
        with pytest.raises(ValueError, match="reconnect"):
            Backoff(**bad)


async def test_the_loop_waits_the_jittered_backoff_between_refused_attempts() -> None:
    """The sleep is injected and records what it was asked to wait: the waits are the behaviour under test, and
    sleeping them for real would only make the test slow (the refusals themselves are real: nothing listens)."""
    waits: list[float] = []
    enough = asyncio.Event()

    async def fake_sleep(s: float) -> None:
        waits.append(s)
        if len(waits) >= 8:
            enough.set()
        await asyncio.sleep(0)

    b = Backoff(initial_s=0.1, maximum_s=1.0, jitter=0.5)
    async with ReconnectingClient("127.0.0.1", free_port(), identifier="t-backoff", backoff=b, sleep=fake_sleep, rng=random.Random(7)):
        await asyncio.wait_for(enough.wait(), 30)
    for attempt, w in enumerate(waits[:8]):
        base = min(0.1 * 2**attempt, 1.0)
        assert base * 0.5 <= w <= base, (attempt, w)
    assert len({round(w / min(0.1 * 2**i, 1.0), 6) for i, w in enumerate(waits[:8])}) > 1, "no jitter: every wait the same share of its base"


async def test_manual_ack_holds_a_qos1_message_until_it_is_acked(mosquitto: MosquittoProcess) -> None:
    """Unacknowledged, the broker delivers the message again on the next connection of the persistent session;
    acknowledged, it does not (the marker published after it arrives first)."""
    def client(got: list[tuple[str, bytes]], ack: bool) -> ReconnectingClient:
        return ReconnectingClient(mosquitto.host, mosquitto.port, identifier="t-ack", backoff=FAST, clean_session=False, manual_ack=True,
                                  subscriptions=[("j/#", 1)], session=collector(got, ack=ack))

    first: list[tuple[str, bytes]] = []
    async with client(first, ack=False) as c, aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="pub") as pub:
        await c.wait_ready(10)
        await pub.publish("j/1", b"journal me", qos=1)
        await until(lambda: first, 10, "the message")
    second: list[tuple[str, bytes]] = []
    async with client(second, ack=True) as c:
        await c.wait_ready(10)
        await until(lambda: second, 10, "the redelivery")
        assert second[0] == ("j/1", b"journal me")
    third: list[tuple[str, bytes]] = []
    async with client(third, ack=True) as c, aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="pub") as pub:
        await c.wait_ready(10)
        await pub.publish("j/2", b"marker", qos=1)
        await until(lambda: third, 10, "the marker")
        assert third == [("j/2", b"marker")]


async def test_an_aborted_link_leaves_through_its_last_will_and_a_clean_close_does_not(mosquitto: MosquittoProcess) -> None:
    will = aiomqtt.Will("gw/status", b"offline", qos=1)
    async with observer(mosquitto, "gw/status") as obs:
        async with ReconnectingClient(mosquitto.host, mosquitto.port, identifier="t-will", backoff=FAST, will=will) as c:
            await c.wait_ready(10)
            c.abort()
            message = await asyncio.wait_for(anext(obs.messages), 10)
            assert message.payload == b"offline"
            await c.wait_ready(10)  # and it comes back by itself
            assert c.connects == 2
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="pub") as pub:
            await pub.publish("gw/status", b"marker", qos=1)
        message = await asyncio.wait_for(anext(obs.messages), 10)
        assert message.payload == b"marker", "a clean close sent the Last Will"


async def test_the_raw_burst_path_drops_an_ack_of_a_connection_that_is_gone(mosquitto: MosquittoProcess) -> None:
    """The ingest's path (raw callback, burst reader, manual ack by generation): a message received on a connection
    that dropped before its ack comes again on the next one, and the late ack is dropped rather than sent on the new
    connection (where the same packet id now names the redelivered copy, which is not journaled yet)."""
    seen: list[tuple[str, int, int]] = []  # (topic, mid, generation it came on)

    def raw() -> ReconnectingClient:
        return ReconnectingClient(mosquitto.host, mosquitto.port, identifier="t-raw", backoff=FAST, clean_session=False, manual_ack=True,
                                  subscriptions=[("r/#", 1)], read_burst=8, on_message=lambda t, p, q, mid: seen.append((t, mid, c.generation)))

    c = raw()
    async with c, aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="pub") as pub:
        await c.wait_ready(10)
        await pub.publish("r/1", b"journal me", qos=1)
        await until(lambda: seen, 10, "the message")
        (_, mid, first_generation) = seen[0]
        c.abort()  # dropped before the journal acknowledged it
        await until(lambda: len(seen) == 2, 10, "the redelivery on the new connection")
        assert seen[1][0] == "r/1"
        assert seen[1][2] == c.generation != first_generation
        c.ack([mid], generation=first_generation)  # the late ack, for a connection that is gone: dropped
    c = raw()  # a clean close would have sent that PUBACK before its DISCONNECT: r/1 must still be owed
    async with c:
        await c.wait_ready(10)
        await until(lambda: len(seen) == 3, 10, "r/1 again: the late ack was dropped")
        assert seen[2][0] == "r/1"
        c.ack([seen[2][1]], generation=seen[2][2])
    c = raw()
    async with c, aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="pub") as pub:
        await c.wait_ready(10)
        await pub.publish("r/2", b"marker", qos=1)
        await until(lambda: len(seen) >= 4, 10, "the marker")
        assert [t for t, _, _ in seen[3:]] == ["r/2"], "an acknowledged message came again"


async def test_the_burst_reader_yields_right_after_a_message_its_handler_calls_urgent(mosquitto: MosquittoProcess) -> None:
    """A life-safety message in the middle of a read burst: the handler says so (returns True) and the loop runs what
    it set going (the ingest's uplink lane) before the next packet is parsed, not after the rest of the burst of 64.
    300 messages wait for a persistent session, so the reader finds many packets buffered at once."""
    seen: list[str] = []
    marks: dict[str, int] = {}  # urgent topic -> messages handled when the loop next ran a callback
    urgent = {"r/100", "r/150"}

    def on_message(topic: str, payload: bytes, qos: int, mid: int) -> bool:
        seen.append(topic)
        c.ack([mid], generation=c.generation)
        if topic in urgent:
            asyncio.get_running_loop().call_soon(lambda: marks.setdefault(topic, len(seen)))
            return True
        return False

    def raw() -> ReconnectingClient:
        return ReconnectingClient(mosquitto.host, mosquitto.port, identifier="t-urgent", backoff=FAST, clean_session=False, manual_ack=True,
                                  subscriptions=[("r/#", 1)], read_burst=64, on_message=on_message)

    c = raw()
    async with c:
        await c.wait_ready(10)  # the session exists now
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="pub") as pub:
        for i in range(300):
            await pub.publish(f"r/{i}", b"x" * 100, qos=1)
    c = raw()
    async with c:
        await until(lambda: len(seen) >= 300, 10, "the queued messages")
    assert marks == {"r/100": 101, "r/150": 151}, "the burst went on past a message its handler called urgent"
