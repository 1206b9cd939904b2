"""Helpers for the edge integration tests: brokers from the shared factory, a central-side collector, configs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import msgspec

from broker.process import MosquittoProcess, open_config
from broker.topics import TopicKind, uplink_filters


def persistent(broker: MosquittoProcess) -> MosquittoProcess:
    """Restart a factory broker with persistence on, keeping its port: sessions survive its outage."""
    broker.stop()
    broker.config = open_config(broker.port, persistence_dir=broker.workdir)
    broker.start()
    return broker


@dataclass
class Received:
    topic: str
    payload: dict[str, Any]
    retain: bool


@dataclass
class Collector:
    """A centre-side subscriber with a persistent session: it misses nothing queued while it was away."""

    host: str
    port: int
    gateway: str
    messages: list[Received] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    kinds: tuple[TopicKind, ...] = (TopicKind.EVENT, TopicKind.TELEMETRY, TopicKind.AVAILABILITY, TopicKind.PATROL, TopicKind.GATEWAY_STATUS)

    async def run(self) -> None:
        filters = uplink_filters(self.gateway)
        while True:
            try:
                async with aiomqtt.Client(self.host, self.port, identifier=f"collector-{self.gateway}", clean_session=False) as client:
                    await client.subscribe([(str(filters[k]), 1) for k in self.kinds])
                    self.ready.set()
                    async for m in client.messages:
                        assert isinstance(m.payload, bytes)
                        self.messages.append(Received(str(m.topic), msgspec.json.decode(m.payload), m.retain))
            except aiomqtt.MqttError:
                self.ready.clear()
                await asyncio.sleep(0.1)

    def of(self, suffix: str) -> list[Received]:
        return [m for m in self.messages if m.topic.endswith(suffix)]


@contextlib.asynccontextmanager
async def collecting(host: str, port: int, gateway: str) -> AsyncIterator[Collector]:
    collector = Collector(host, port, gateway)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(collector.run(), name="test-collector")
        await asyncio.wait_for(collector.ready.wait(), 10)
        try:
            yield collector
        finally:
            task.cancel()




def edge_config(
    tmp_path: Path, lan: MosquittoProcess, central: MosquittoProcess, *, gateway: str = "gw-test", adapters: list[dict[str, Any]], **sections: Any
) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "gateway": gateway,
        "lan": {"host": lan.host, "port": lan.port},
        "uplink": {"host": central.host, "port": central.port, "reconnect_min_s": 0.1, "reconnect_max_s": 1.0, "publish_timeout_s": 5.0},
        "outbox": {"path": str(tmp_path / "edge" / "outbox.sqlite3")},
        "status": {"every_s": 0.2},
        "adapters": adapters,
    }
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    return cfg
