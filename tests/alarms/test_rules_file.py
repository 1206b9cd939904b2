"""A deployment's rules file (issue 15): `alerting.rules_file` is loaded and checked at start with `file:line: what
to fix`, `shouwang config check` reports the same, and a building override in it takes effect in a running system."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from alerting.model import Severity
from backend.alarms.rules import RulesFileError, deployment_rules, load_rules
from backend.settings import Settings, load_settings
from backend.sites import SiteDirectory
from broker.schemas import Telemetry, encode
from broker.topics import telemetry_topic
from shouwang.commands.config import check_settings
from shouwang.system import System
from tests.conftest import SAMPLE_SITE
from tests.waiting import until

GOOD = """\
# one building's distribution boxes are set at 450 mA (GB 50116: 300-500 mA), critical above 480
overrides:
  buildings:
    c01-b01:
      residual_current: {above: 450, critical: 480}
"""


def _settings(tmp_path: Path, rules_file: Path | None, **sections: Any) -> Settings:
    return load_settings(None, api={"port": 0, "admin_password": "test-pass"}, storage={"data_dir": tmp_path / "var"},
                         simulate={"enabled": False, "site_file": SAMPLE_SITE}, alerting={"rules_file": rules_file}, **sections)


@pytest.mark.parametrize(("text", "line", "says"), [
    (GOOD.replace("above: 450", "above: 600"), 5, "600.0 is outside the settable range 300.0-500.0"),
    (GOOD.replace("above: 450", "abvoe: 450"), 5, r"unknown key\(s\) abvoe; this rule takes above, clear, critical"),
    (GOOD.replace("critical: 480", "critical: 400"), 5, "the critical level .400. must be above 450"),
    ("thresholds:\n  residual_current:\n    above: 320\n    levels: {critical: 280}\n", 4, "critical level .280. must be above 320"),
    ("thresholds:\n  overload:\n    for_s: soon\n", 3, "for_s must be a number"),
    ("events:\n  smoke_alarm: {raise: smoke}\n  smoke_alrm: {raise: smoke}\n", 3, "not an event kind"),
    ("\nthreshold:\n  overload: {above: 40}\n", 2, r"unknown key\(s\) threshold"),
    ("overrides:\n  buildings:\n    b1: {residual_current: {above: 400}\n", 4, "not valid YAML"),
    ("- a list\n", 1, "holds a mapping at the top"),
])
def test_a_wrong_rules_file_is_refused_naming_file_line_and_what_to_fix(tmp_path: Path, text: str, line: int, says: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RulesFileError, match=says) as err:
        deployment_rules(_settings(tmp_path, path))
    assert str(err.value).startswith(f"{path}:{line}: "), str(err.value)
    [finding] = [f for f in check_settings(_settings(tmp_path, path)) if "rules_file" in f.text]
    assert finding.level == "error"
    assert f"{path}:{line}: " in finding.text


def test_a_good_rules_file_passes_config_check_and_carries_the_clock_settings(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(GOOD, encoding="utf-8")
    s = _settings(tmp_path, path, **{})
    assert not [f for f in check_settings(s) if "rules_file" in f.text]
    rules = deployment_rules(load_settings(None, alerting={"rules_file": path, "clock_skew_max_s": 2.0}))
    [rc] = [t for t in rules.thresholds if t.name == "residual_current"]
    assert rules.threshold_params(rc, "any-box", "c01-b01").levels == ((480.0, Severity.CRITICAL),)
    assert rules.clock_skew_max_s == 2.0
    missing = tmp_path / "nope.yaml"
    with pytest.raises(RulesFileError, match="cannot read the rules file"):
        load_rules(missing)


async def test_a_wrong_rules_file_stops_the_start(tmp_path: Path, sample_site: SiteDirectory) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(GOOD.replace("above: 450", "above: 600"), encoding="utf-8")
    with pytest.raises(RulesFileError, match=f"{path}:5: "):
        async with System(_settings(tmp_path, path), sample_site):
            pass


@pytest.fixture
async def system(tmp_path: Path, sample_site: SiteDirectory) -> AsyncIterator[System]:
    path = tmp_path / "rules.yaml"
    path.write_text(GOOD, encoding="utf-8")
    async with System(_settings(tmp_path, path), sample_site) as s:
        yield s


async def test_a_building_override_from_the_rules_file_takes_effect_in_the_running_system(system: System, sample_site: SiteDirectory) -> None:
    boxes = [d for d in sample_site.devices.values() if d.kind == "electrical" and d.location == "配电箱"]
    overridden = next(d for d in boxes if d.building == "c01-b01")
    other = next(d for d in boxes if d.building != "c01-b01")
    store = system.backend.alarm_service.store

    def residual(device: str) -> list[Any]:
        return [a for a in store.list(limit=1000) if a.device_id == device and a.alarm_type == "residual_current"]

    async with aiomqtt.Client(system.broker_host, system.broker_port, username=getattr(system, "broker_username", None),
                              password=getattr(system, "broker_password", None)) as mqtt:
        async def send(d: Any, value: float, n: int) -> None:
            for k in range(n):
                now = int(time.time() * 1000)
                msg = Telemetry(msg_id=f"rf-{d.id}-{value:g}-{k}", source_ts_ms=now, received_ts_ms=now, readings={"residual_current_ma": value})
                await mqtt.publish(str(telemetry_topic(d.gateway, d.id)), encode(msg), qos=1)

        await send(overridden, 400, 2)  # under the building's 450 mA: nothing
        await send(other, 400, 2)  # over the default 300 mA: an alarm
        await until(lambda: residual(other.id) or None, 10, "the other building's residual-current alarm at the default level")
        assert residual(overridden.id) == [], "the rules file's 450 mA holds for c01-b01"
        await send(overridden, 460, 2)
        [a] = await until(lambda: residual(overridden.id) or None, 10, "c01-b01's alarm past its own 450 mA")
        assert a.severity == "major"
        await send(overridden, 490, 1)
        await until(lambda: [x for x in residual(overridden.id) if x.severity == "critical"] or None, 10,
                    "critical past the file's 480 mA (the default 500 mA would not be reached)")
