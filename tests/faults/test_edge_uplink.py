"""The edge agent's uplink outage with its outbox at the disk bound, end to end into the backend subprocess.

A real edge agent (LAN Mosquitto, zigbee2mqtt dialect smoke detectors and native-contract meters) loses its
central broker. While it is cut off, the LAN delivers 1,000 telemetry messages (five times the outbox's
telemetry bound, so the outbox evicts the oldest) and ten smoke alarms; the agent's clock (a virtual clock:
patrol, liveness and status timers) moves 10 minutes. When the uplink returns, every smoke alarm reaches the
backend and becomes an alarm that pages the grid worker (life safety never evicted, zero loss), the evictions
are counted, and the telemetry that survived the bound arrives. The outage in wall time is a few seconds:
the agent's store-and-forward does not depend on wall time, only its timers do, and those run on the
virtual clock (docs/reliability.md).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from broker.clock import VirtualClock
from broker.kinds import Priority
from broker.process import MosquittoProcess
from broker.schemas import Telemetry, encode
from broker.topics import telemetry_topic
from edge import EdgeAgent, parse_config
from tests.edge.conftest import edge_config
from tests.edge.test_store_and_forward import publish_all
from tests.faults.helpers import GATEWAY, BackendProcess, listening, smoke_id, until, write_fixture_files

pytestmark = pytest.mark.mosquitto

TELEMETRY, SMOKES, BOUND = 1_000, 10, 200


async def test_uplink_outage_at_the_outbox_bound_loses_no_smoke_alarm(tmp_path: Path, mosquitto_factory: Callable[..., MosquittoProcess]) -> None:
    lan = mosquitto_factory("lan")
    central = mosquitto_factory("central", persistence=True)
    site, policy = write_fixture_files(tmp_path)
    # Rate limit raised: past 6 notices a minute the rest fold into a storm summary sent when the minute ends,
    # which is the rate limiter's business (tests/notify), not this outage's.
    backend = BackendProcess(tmp_path / "var", central.url, site, policy, env={"SHOUWANG_ESCALATION__RATE_LIMIT": "100"}).start()
    smokes = {f"smoke_{k}": {"id": smoke_id(k), "kind": "smoke"} for k in range(SMOKES)}
    meters = {f"meter-{i}": {"id": f"meter-{i}", "kind": "electrical"} for i in range(5)}
    config = parse_config(edge_config(
        tmp_path, lan, central, gateway=GATEWAY,
        adapters=[{"dialect": "native", "devices": meters}, {"dialect": "zigbee2mqtt", "prefix": "zigbee2mqtt", "devices": smokes}],
        outbox={"max_telemetry_rows": BOUND}, patrol={"period_s": 60}, liveness={"check_every_s": 5},
    ))
    items: list[tuple[str, bytes]] = []
    for i in range(TELEMETRY):
        msg = Telemetry(msg_id=f"ut-{i}", source_ts_ms=1_700_000_000_000 + i, received_ts_ms=1_700_000_000_000 + i, readings={"residual_current_ma": 3.0})
        items.append((str(telemetry_topic(GATEWAY, f"meter-{i % 5}")), encode(msg)))
        if i % (TELEMETRY // SMOKES) == 50:
            items.append((f"zigbee2mqtt/smoke_{i // (TELEMETRY // SMOKES)}", b'{"smoke": true}'))
    clock = VirtualClock(1_767_225_600_000)
    try:
        async with listening(central.host, central.port) as apps, EdgeAgent(config, clock=clock) as agent:
            await until(lambda: agent.lan_ready.is_set() and agent.uplink.connected.is_set(), 15, "the agent to connect")
            central.stop()
            await until(lambda: not agent.uplink.connected.is_set(), 15, "the agent to notice the outage")
            await publish_all(lan, items)
            await until(lambda: agent.ledger.lan_messages >= len(items), 60, "the agent to take every LAN message")
            for _ in range(20):  # ten minutes of the agent's timers while cut off
                await clock.run_for(30)
            stats = agent.outbox.stats()
            assert stats.depth[Priority.LIFE_SAFETY] == SMOKES, "life safety is never evicted"
            assert stats.depth[Priority.TELEMETRY] == BOUND
            assert stats.evicted_total == TELEMETRY - BOUND
            central.start()
            await until(lambda: agent.outbox.depth() == 0, 60, "the outbox to drain")
            rows = await until(lambda: _smoke_alarms(backend, SMOKES), 60, "an alarm for every smoke detector")
            assert set(rows) == {smoke_id(k) for k in range(SMOKES)}
            await until(lambda: {n.alarm_id for n, _ in apps.to("gw1")} >= set(rows.values()), 30, "a page per smoke alarm")
    finally:
        backend.stop()


async def _smoke_alarms(backend: BackendProcess, n: int) -> dict[str, str] | None:
    rows = {r["device_id"]: r["id"] for r in await backend.alarms(open="true") if r["alarm_type"] == "smoke"}
    return rows if len(rows) >= n else None

