"""ESPHome units are known or refused, never guessed: from the entity's configured metric, from the unit the node
announced in its Home Assistant discovery config, or from an object id that is itself a metric name.

Before: an object id `residual_current` reporting milliamperes became `residual_current_a` with the value unchanged
(1,000 times too large for any rule reading amperes, and invisible to the residual-current rule, which reads mA).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from broker.schemas import Telemetry
from edge.adapters import Context, Mapped, RejectCode, Rejected, Router, build_adapters
from edge.config import parse_config

NOW_MS = 1_785_853_200_000
_ids = itertools.count()


def _router(**adapter: Any) -> Router:
    cfg = parse_config({
        "gateway": "gw-esp", "lan": {"host": "127.0.0.1", "port": 1}, "uplink": {"host": "127.0.0.1", "port": 1},
        "outbox": {"path": "/nonexistent/outbox.sqlite3"},
        "adapters": [{"dialect": "esphome", "devices": {"panel-3": {"id": "rcd-3", "kind": "electrical"}}, **adapter}],
    })
    return Router(build_adapters(cfg))


def _route(router: Router, topic: str, payload: bytes | str) -> Mapped | Rejected:
    body = payload.encode() if isinstance(payload, str) else payload
    return router.route(topic, body, False, Context(NOW_MS, lambda: f"m{next(_ids)}"))


def _readings(out: Mapped | Rejected) -> dict[str, float]:
    assert isinstance(out, Mapped), out
    return {k: v for r in out.messages if isinstance(r.message, Telemetry) for k, v in r.message.readings.items()}


def test_a_sensor_without_a_known_unit_is_refused_with_the_setting_to_add() -> None:
    out = _route(_router(), "panel-3/sensor/residual_current/state", "312.5")
    assert isinstance(out, Rejected)
    assert out.code is RejectCode.UNMAPPED
    assert "entities" in out.detail
    assert "discovery_prefix" in out.detail


def test_an_object_id_that_is_a_metric_name_needs_nothing_more() -> None:
    assert _readings(_route(_router(), "panel-3/sensor/residual_current_ma/state", "312.5")) == {"residual_current_ma": 312.5}


def test_the_unit_announced_by_discovery_is_used_abbreviated_keys_as_esphome_sends_them() -> None:
    router = _router(discovery_prefix="homeassistant")
    config = {"name": "Residual current", "unit_of_meas": "mA", "dev_cla": "current", "stat_t": "panel-3/sensor/residual_current/state",
              "uniq_id": "esphomepanel3residual_current", "dev": {"ids": "panel3", "name": "panel-3"}}
    learnt = _route(router, "homeassistant/sensor/panel-3/residual_current/config", json.dumps(config))
    assert isinstance(learnt, Mapped)
    assert learnt.messages == ()
    assert _readings(_route(router, "panel-3/sensor/residual_current/state", "312.5")) == {"residual_current_ma": 312.5}


def test_kilowatt_hours_are_scaled_and_an_unknown_unit_is_refused() -> None:
    router = _router(discovery_prefix="homeassistant")
    energy = {"unit_of_measurement": "kWh", "state_topic": "panel-3/sensor/energy_today/state"}
    _route(router, "homeassistant/sensor/panel-3/energy_today/config", json.dumps(energy))
    assert _readings(_route(router, "panel-3/sensor/energy_today/state", "0.105")) == {"energy_today_wh": 105.0}
    odd = {"unit_of_measurement": "µg/m³", "state_topic": "panel-3/sensor/pm25/state"}
    refused = _route(router, "homeassistant/sensor/panel-3/pm25/config", json.dumps(odd))
    assert isinstance(refused, Rejected)
    assert refused.code is RejectCode.UNMAPPED
    assert isinstance(_route(router, "panel-3/sensor/pm25/state", "12"), Rejected)


def test_the_configured_metric_wins_over_discovery() -> None:
    router = _router(discovery_prefix="homeassistant", devices={
        "panel-3": {"id": "rcd-3", "kind": "electrical", "entities": {"sensor/leak": {"metric": "residual_current_ma", "scale": 1000}}}})
    _route(router, "homeassistant/sensor/panel-3/leak/config", json.dumps({"unit_of_measurement": "A", "state_topic": "panel-3/sensor/leak/state"}))
    assert _readings(_route(router, "panel-3/sensor/leak/state", "0.3125")) == {"residual_current_ma": 312.5}
