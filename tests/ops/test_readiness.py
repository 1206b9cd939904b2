"""/livez and /readyz of a running backend: /readyz turns unready, naming the check, when its PostgreSQL alarm
database or its Mosquitto broker stops, and ready again when they come back; /livez stays live throughout."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from backend.server import Backend
from backend.store.pg_local import LocalPostgres
from broker.process import MosquittoProcess
from tests.ops.test_metrics import smoke_alarm
from tests.waiting import until

pytestmark = [pytest.mark.postgres, pytest.mark.mosquitto, pytest.mark.slow]


@pytest.fixture
def backend(backend_on_own_postgres: Backend) -> Backend:
    return backend_on_own_postgres


async def _ready(http: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
    r = await http.get("/readyz")
    return r.status_code, r.json()


async def test_readyz_follows_the_database_and_the_broker(backend: Backend, own_postgres: LocalPostgres, mosquitto: MosquittoProcess) -> None:
    async with httpx.AsyncClient(base_url=backend.url, timeout=10) as http:
        code, body = await _ready(http)
        assert code == 200, body
        assert body["status"] == "ready"
        assert {"database", "live_feed", "broker_ingest", "broker_publisher", "ingest"} <= set(body["checks"])
        assert (await http.get("/api/health")).json()["status"] == "ok"

        own_postgres.stop()
        code, body = await until(lambda: _unready(http, "database"), 30, "/readyz to report the database down")
        assert "postgresql" in body["checks"]["database"]["detail"]
        assert body["checks"]["broker_ingest"]["ok"]
        assert (await http.get("/livez")).status_code == 200
        assert (await http.get("/api/health")).json()["status"] == "degraded"
        # A smoke alarm arriving meanwhile waits in ingest's journal: readiness says alerting is down until it is raised.
        smoke = await smoke_alarm(backend.sites, mosquitto.port, "readyz-smoke-1")
        code, body = await until(lambda: _unready(http, "ingest"), 30, "/readyz to report alerting unavailable to ingest")
        assert "alerting unavailable" in body["checks"]["ingest"]["detail"]
        own_postgres.start()
        await until(lambda: _is_ready(http), 60, "/readyz ready again after PostgreSQL came back")
        await until(lambda: any(a.place.device == smoke for a in backend.alarm_service.store.open_alarms()), 30,
                    "the smoke alarm that waited out the outage to be raised")

        mosquitto.stop()
        code, body = await until(lambda: _unready(http, "broker_ingest"), 30, "/readyz to report the broker down")
        assert not body["checks"]["broker_publisher"]["ok"]
        assert body["checks"]["database"]["ok"]
        assert (await http.get("/livez")).status_code == 200
        mosquitto.start()
        await until(lambda: _is_ready(http), 30, "/readyz ready again after Mosquitto came back")


async def _unready(http: httpx.AsyncClient, check: str) -> tuple[int, dict[str, Any]] | None:
    code, body = await _ready(http)
    return (code, body) if code == 503 and not body["checks"][check]["ok"] else None


async def _is_ready(http: httpx.AsyncClient) -> bool:
    code, _ = await _ready(http)
    return code == 200
