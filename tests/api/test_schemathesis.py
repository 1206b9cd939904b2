"""Schemathesis against the OpenAPI document: generated requests to every operation (as an admin, with a few
real alarms in the store) get no 500 and every answer matches its documented status, content type and schema.

The endless SSE stream (/api/feed) is left out: a generated request would never end; its JSON twin
/api/feed/events is covered. One-tap pages (/r/...) are not in the document."""

from __future__ import annotations

import asyncio
import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from backend.alarms.service import AlarmService
from backend.api.app import create_app
from backend.api.deps import ApiDeps
from backend.api.tokens import TokenSigner
from backend.sites import load_site_directory
from backend.store.db import make_engine, sqlite_url
from backend.store.users import UserStore
from broker.clock import VirtualClock
from broker.kinds import EventKind
from broker.schemas import DeviceEvent, decode_uplink, encode
from broker.topics import event_topic
from tests.conftest import SAMPLE_SITE
from tests.escalation.helpers import make_rig

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed in this venv: the lead adds schemathesis==4.32.5 to [dev]")
_checks = pytest.importorskip("schemathesis.checks")
_openapi_checks = pytest.importorskip("schemathesis.specs.openapi.checks")
CHECKS = [_checks.not_a_server_error, _openapi_checks.status_code_conformance, _openapi_checks.content_type_conformance,
          _openapi_checks.response_schema_conformance]


def _build(tmp: Path) -> tuple[Any, str]:
    sites = load_site_directory(SAMPLE_SITE)
    clock = VirtualClock()
    engine = make_engine(sqlite_url(tmp / "alarms.db"))
    service = AlarmService.for_sites(engine, sites, clock)

    async def seed() -> None:
        await service.start()
        for i, d in enumerate([d for d in sites.devices.values() if d.kind == "smoke"][:3]):
            msg = DeviceEvent(msg_id=f"st{i}", source_ts_ms=clock.now_ms(), received_ts_ms=clock.now_ms(), event=EventKind.SMOKE_ALARM)
            await service.on_uplink(decode_uplink(str(event_topic(d.gateway, d.id)), encode(msg)), clock.now_ms())

    asyncio.run(seed())
    users = UserStore(engine)
    users.add("admin", None, "admin")
    signer = TokenSigner(b"s" * 32)
    ladder = make_rig(tmp, sites)  # the escalation service on its own SQLite file and virtual clock (no timers running)
    deps = ApiDeps(alarms=service.store, users=users, signer=signer, clock=clock, ingest_stats=dict, sites=sites, alarm_service=service,
                   escalation=ladder.service, stream=ladder.console)
    return create_app(deps), signer.sign({"sub": "admin"}, clock.now_ms() / 1000, 10 * 365 * 86400)


_tmp = Path(tempfile.mkdtemp(prefix="sw-schemathesis-"))  # the schema is loaded at collection time, before fixtures
atexit.register(shutil.rmtree, _tmp, True)
APP, TOKEN = _build(_tmp)
schema = schemathesis.openapi.from_asgi("/api/openapi.json", APP).exclude(path="/api/feed")


@schema.parametrize()  # type: ignore[untyped-decorator]
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case: Any) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS)
