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
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from broker import connection as connection_module
from broker.connection import HOLD_FREE_S, HOLD_MAX_S, Backoff, BrokerUnreachable, Link, NotConnected, ReconnectingClient, Session, _take_publish
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


# -- the burst reader's own PUBLISH parser and its hold (issue 19) ---------------------------------------------------

def _publish_packet(topic: bytes, payload: bytes, *, qos: int, mid: int = 0, props: bytes | None = None) -> bytes:
    """A PUBLISH as a broker sends it (props None: MQTT 3.1.1; else MQTT 5 with these property bytes)."""
    body = len(topic).to_bytes(2, "big") + topic + (mid.to_bytes(2, "big") if qos else b"")
    if props is not None:
        body += bytes([len(props)]) + props
    body += payload
    length, n = bytearray(), len(body)
    while True:
        length.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            break
    return bytes([0x30 | qos << 1]) + bytes(length) + body


@pytest.mark.parametrize("v5", [False, True], ids=["mqtt311", "mqtt5"])
def test_the_publish_parser_takes_whole_publishes_only_and_leaves_the_rest_to_paho(v5: bool) -> None:
    """A whole QoS 0/1 PUBLISH comes off the buffer as (topic, payload, qos, id); anything else leaves the buffer as it
    was (paho reads it): a packet not all read yet, cut anywhere, a QoS 2 publish, a topic alias, another packet type."""
    props = b"\x01\x01\x03\x00\x04text" if v5 else None  # payload format indicator, content type "text"
    big = bytes(range(256)) * 80  # 20,480 bytes: a three-byte remaining length
    first = _publish_packet("sw/v1/网关-1/dev/烟感/event".encode(), big, qos=1, mid=513, props=props)
    second = _publish_packet(b"a/b", b"", qos=0, props=props)
    buf = bytearray(first + second)
    assert _take_publish(buf, v5) == ("sw/v1/网关-1/dev/烟感/event", big, 1, 513)
    assert _take_publish(buf, v5) == ("a/b", b"", 0, 0)
    assert buf == b""
    for cut in (1, 2, 3, 5, len(first) // 2, len(first) - 1):
        part = bytearray(first[:cut])
        assert _take_publish(part, v5) is None
        assert part == first[:cut], f"a packet cut at {cut} bytes was touched"
    for other in (_publish_packet(b"a/b", b"x", qos=2, mid=7, props=props),  # QoS 2: paho's flow (PUBREC)
                  _publish_packet(b"", b"x", qos=1, mid=7, props=props),  # a topic alias: paho knows the aliases
                  b"\xd0\x00",  # PINGRESP
                  b"\x90\x03\x00\x01\x01"):  # SUBACK
        buf = bytearray(other + second)
        assert _take_publish(buf, v5) is None
        assert buf == other + second


@pytest.mark.parametrize("v5", [False, True], ids=["mqtt311", "mqtt5"])
async def test_the_burst_reader_hands_on_every_publish_as_sent(mosquitto: MosquittoProcess, monkeypatch: pytest.MonkeyPatch, v5: bool) -> None:
    """Through a real Mosquitto, with a backlog queued for a persistent session (so packets arrive many to a read):
    every message reaches the handler once, in order, with its topic, payload and QoS as published, from empty to
    larger than the reader's 256 KiB buffer, MQTT 5 properties included; most of them through the reader's own parser."""
    taken = [0]
    real = connection_module._take_publish

    def counting(buf: bytearray, v5: bool) -> tuple[str, bytes, int, int] | None:
        got = real(buf, v5)
        taken[0] += got is not None
        return got

    monkeypatch.setattr(connection_module, "_take_publish", counting)
    seen: list[tuple[str, bytes, int]] = []

    def on_message(topic: str, payload: bytes, qos: int, mid: int) -> bool:
        seen.append((topic, payload, qos))
        if qos:  # later, as the ingest does (after its journal): a message the session delivers while connecting is no exception
            generation = c.generation
            asyncio.get_running_loop().call_later(0.05, lambda: c.ack([mid], generation=generation))
        return False

    def raw() -> ReconnectingClient:
        return ReconnectingClient(mosquitto.host, mosquitto.port, identifier="t-parse", backoff=FAST, clean_session=False, manual_ack=True,
                                  session_expiry_s=3600 if v5 else None, subscriptions=[("p/#", 1)], read_burst=64, on_message=on_message)

    # a backlog of QoS 1 (a broker queues no QoS 0 for a session away), then QoS 0 and 1 mixed, live
    sent = [(f"p/{i}/烟感", bytes([i % 256]) * size, 1) for i, size in enumerate([0, 1, 127, 128, 16_383, 16_384, 300_000] + [90] * 400)]
    live = [(f"p/live/{i}", bytes([i % 256]) * 90, i % 2) for i in range(200)]
    c = raw()
    async with c:
        await c.wait_ready(10)  # the session exists now
    props = Properties(PacketTypes.PUBLISH) if v5 else None  # type: ignore[no-untyped-call]
    if props is not None:
        props.UserProperty = [("trace", "gw-1/42")]
        props.MessageExpiryInterval = 3600
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="pub",
                              protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311) as pub:
        for topic, payload, qos in sent:
            await pub.publish(topic, payload, qos=qos, properties=props)
    c = raw()
    async with c:
        await until(lambda: len(seen) >= len(sent), 20, "the queued messages")
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="pub",
                                  protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311) as pub:
            for topic, payload, qos in live:
                await pub.publish(topic, payload, qos=qos, properties=props)
        await until(lambda: len(seen) >= len(sent) + len(live), 20, "the live messages")
        await asyncio.sleep(0.2)
    assert seen == sent + live
    assert taken[0] > len(seen) // 2, "the reader's own parser took few of the messages"
    c = raw()
    async with c:
        await c.wait_ready(10)
        await asyncio.sleep(0.5)
    assert len(seen) == len(sent) + len(live), "an acknowledged message came again"


async def test_a_held_reader_reads_nothing_until_its_hold_lifts_and_at_most_a_second_at_a_time(mosquitto: MosquittoProcess) -> None:
    """`hold` true: the connection parses nothing (the messages wait); false again: everything comes, in order, at once.
    A hold that never lifts holds for HOLD_MAX_S, then lets the connection read for HOLD_FREE_S (keep-alive replies,
    and what the connection carries is not starved by a flood of alarms that never ends)."""
    held = [False]
    seen: list[str] = []

    def on_message(topic: str, payload: bytes, qos: int, mid: int) -> bool:
        seen.append(topic)
        c.ack([mid], generation=c.generation)
        return False

    c = ReconnectingClient(mosquitto.host, mosquitto.port, identifier="t-hold", backoff=FAST, clean_session=False, manual_ack=True,
                           subscriptions=[("h/#", 1)], read_burst=8, on_message=on_message, hold=lambda: held[0])
    loop = asyncio.get_running_loop()
    async with c, aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="pub") as pub:
        await c.wait_ready(10)
        held[0] = True
        for i in range(20):
            await pub.publish(f"h/{i}", b"x", qos=1)
        await asyncio.sleep(0.3)
        assert seen == [], "a held reader parsed a message"
        held[0] = False
        t0 = loop.time()
        await until(lambda: len(seen) == 20, 5, "the messages once the hold lifted")
        assert loop.time() - t0 < HOLD_MAX_S / 2, "the messages waited for more than the hold"
        await asyncio.sleep(HOLD_FREE_S)  # a hold that lifted of itself gives no free time after it: the next one holds at once
        held[0] = True
        t0 = loop.time()
        for i in range(20, 40):
            await pub.publish(f"h/{i}", b"x", qos=1)
        await asyncio.sleep(0.3)
        assert len(seen) == 20, "a held reader parsed a message"
        await until(lambda: len(seen) == 40, 5, "the messages after HOLD_MAX_S held, the hold still on")
        assert loop.time() - t0 >= HOLD_MAX_S * 0.9
    assert seen == [f"h/{i}" for i in range(40)]
