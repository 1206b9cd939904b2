"""The ingest worker: subscribe to every uplink topic and hand each message on, acknowledging it only when told.

How this works: one reconnecting connection (broker.connection.ReconnectingClient) subscribes (QoS 1) to
everything a gateway may publish (broker.topics) — through an MQTT 5 shared subscription when a share group is
configured, so several workers split the stream (the embedded amqtt broker speaks 3.1.1 only: a plain
subscription then). The worker is an async context manager: on entry it is connected and subscribed (ready), on
exit it stops intake and disconnects. A lost connection is retried for ever, with the jittered backoff of the
`[broker]` settings, subscribing again each time; the session is persistent (clean_session false / a session
expiry on MQTT 5) so QoS 1 messages published while the worker was away are delivered when it returns. With a
login, the client id carries a tag derived from the password (broker.mosquitto.login_bound_client_id): stable
across restarts, so the session carries on, and unknown to every gateway, so none can take the session over.

Two connections, life safety first at the broker too: Mosquitto delivers a session's messages in order, so a smoke
alarm published while a gateway's reconnect flood (or any backlog) is queued for ingest would wait behind all of it
in the broker, before ingest could even see it. Device events therefore also come on a second connection of their
own (client id `<id>-alarms`, its own persistent session, subscribed to `broker.topics.uplink_filters()[EVENT]`
only), whose queue holds nothing else. The main connection's broad filters cover events too (so a malformed topic
is still seen): an event usually arrives twice, and the second copy is a duplicate to the pipeline's
de-duplication (acknowledged after the commit that follows it, like any repeat).

Acknowledgements: the sink is an `Intake` (backend.ingest.pipeline.Pipeline, entered as a context manager), and
  the connection runs in manual acknowledgement mode. paho normally sends PUBACK as soon as its on_message callback
  returns, i.e. before anything is durable; here the raw callback hands (topic, payload, token) to the intake and
  returns, and the intake later calls `ack(tokens)` once the message is journaled. A token is (which connection << 31
  | connection generation << 16 | packet id): an acknowledgement meant for a connection that is gone is dropped, because the broker
  redelivers those messages on the new connection anyway (and the intake recognises them as duplicates).
  aiomqtt's own message queue and Message objects are bypassed (that is most of its per-message cost), and packets
  are read in bursts of `read_burst`: both live in broker.connection, the one module that touches paho's insides,
  which also parses each PUBLISH itself. The main connection takes a `hold` (the pipeline's `life_safety_busy`):
  while life-safety messages are queued or being committed it reads nothing, so a flood on it (telemetry, the second
  copy of each event) does not take the event loop and the GIL from the alarms (issue 19).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

from backend.ingest.stats import IngestStats
from broker.connection import Backoff, ReconnectingClient
from broker.mosquitto import login_bound_client_id
from broker.topics import SharedSubscription, TopicFilter, TopicKind, gateway_publish_filters, uplink_filters

__all__ = ["IngestWorker", "Intake"]

log = logging.getLogger(__name__)

_SESSION_EXPIRY_S = 86_400  # MQTT 5: keep the session (subscriptions, queued QoS 1 messages) for a day across reconnects
_ALARMS = 1 << 31  # token bit of the events connection (generation << 16 | mid fits 31 bits: broker.connection)


@runtime_checkable
class Intake(Protocol):
    """A sink that takes raw messages synchronously and acknowledges them itself, later, by token."""

    running: bool
    stats: IngestStats

    def accept(self, topic: str, payload: bytes, token: int, *, events_copy: bool = False) -> bool | None: ...  # True: a life-safety message

    def bind(self, acker: Any) -> None: ...  # Callable[[Sequence[int]], None]


class IngestWorker:
    def __init__(
        self,
        intake: Intake,
        host: str,
        port: int,
        *,
        client_id: str = "shouwang-ingest",
        share_group: str | None = None,
        username: str | None = None,
        password: str | None = None,
        connect_timeout_s: float = 30.0,
        read_burst: int = 64,
        backoff: Backoff | None = None,
        hold: Callable[[], bool] | None = None,
    ) -> None:
        if not intake.running:
            raise RuntimeError("enter the intake (the pipeline) before the worker: it must be ready to journal")
        self._intake = intake
        self.stats = intake.stats
        self._client_id = login_bound_client_id(client_id, password)  # not guessable by a gateway: see broker.mosquitto
        self._connect_timeout_s = connect_timeout_s
        v5 = share_group is not None  # shared subscriptions are MQTT 5; the embedded amqtt broker speaks 3.1.1 only
        def shared(f: TopicFilter) -> str:
            return str(SharedSubscription(share_group, f)) if share_group else str(f)

        def connection(identifier: str, filters: list[str], on_message: Callable[[str, bytes, int, int], bool],
                       hold: Callable[[], bool] | None = None) -> ReconnectingClient:
            return ReconnectingClient(
                host, port, identifier=identifier, username=username, password=password, backoff=backoff or Backoff(),
                name=f"ingest-{identifier}", clean_session=False,
                session_expiry_s=_SESSION_EXPIRY_S if v5 else None, subscriptions=[(f, 1) for f in filters],
                manual_ack=True, on_message=on_message, read_burst=read_burst, hold=hold, on_lost=self._lost,
            )

        self._mqtt = connection(self._client_id, [shared(f) for f in gateway_publish_filters()], self._on_raw_message, hold)
        self._alarms = connection(f"{self._client_id}-alarms", [shared(uplink_filters()[TopicKind.EVENT])], self._on_alarm_message)

    @property
    def connected(self) -> bool:
        return self._mqtt.connected and self._alarms.connected

    @property
    def last_error(self) -> str:
        return "; ".join(e for e in (self._mqtt.last_error, self._alarms.last_error) if e)

    def _on_raw_message(self, topic: str, payload: bytes, qos: int, mid: int) -> bool:
        """On the event loop thread: hand the message on; the intake acknowledges it later. True while a life-safety
        message waits for the uplink lane (this one, or one the events connection took in while this connection drains
        a backlog): the connection's burst reader then lets the loop run the lane before it parses the next packet, so
        the alarm waits for one packet of the backlog, not for a burst of `read_burst`."""
        return self._hand_on(topic, payload, (self._mqtt.generation << 16) | mid if qos > 0 else -1)

    def _on_alarm_message(self, topic: str, payload: bytes, qos: int, mid: int) -> bool:
        """The same, for the events connection. Never urgent: everything on it is an event, and stopping its burst at
        each alarm would take one alarm per turn of the loop (each turn also holds a burst of the main connection),
        so a storm of alarms would queue here; the uplink lane runs right after the burst."""
        self._hand_on(topic, payload, _ALARMS | (self._alarms.generation << 16) | mid if qos > 0 else -1, events_copy=True)
        return False

    def _hand_on(self, topic: str, payload: bytes, token: int, *, events_copy: bool = False) -> bool:
        try:
            return bool(self._intake.accept(topic, payload, token, events_copy=events_copy))
        except Exception:  # never let an intake bug stop the connection's reader
            log.exception("intake failed on %s", topic)
            return False

    def _lost(self, errors: Sequence[BaseException]) -> None:
        self.stats.reconnects += 1

    def ack(self, tokens: Sequence[int]) -> None:
        """Send PUBACK for these tokens, if they belong to a current connection (one write per connection)."""
        gen, alarms_gen = self._mqtt.generation, self._alarms.generation
        main = [t & 0xFFFF for t in tokens if t >> 16 == gen]
        if main:
            self._mqtt.ack(main, generation=gen)
        alarms = [t & 0xFFFF for t in tokens if t >> 16 == (_ALARMS >> 16) | alarms_gen]
        if alarms:
            self._alarms.ack(alarms, generation=alarms_gen)

    async def __aenter__(self) -> Self:
        self._intake.bind(self.ack)
        await self._alarms.__aenter__()
        await self._mqtt.__aenter__()
        try:
            await self._alarms.wait_ready(self._connect_timeout_s)
            await self._mqtt.wait_ready(self._connect_timeout_s)
        except BaseException:
            await self._mqtt.close()
            await self._alarms.close()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._mqtt.close()
        await self._alarms.close()
