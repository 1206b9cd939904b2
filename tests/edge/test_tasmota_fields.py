"""Tasmota, field by field as the firmware writes them (arendst/Tasmota tasmota/tasmota_xdrv_driver/xdrv_03_energy.ino
for ESP8266, xdrv_03_esp32_energy.ino for ESP32; the STATE Wifi object in tasmota_support/support_tasmota.ino).

Payloads are the firmware's own example (the comment above EnergyMqttShow) or built from its format strings: the ESP32
driver numbers MARGINS, WARNING and PowerMonitor keys per phase (`PowerHigh2`, `MaxPowerReached1`, `PowerMonitor1`),
ENERGY values become one per phase, ExportActive is in kWh. Pure: a Router over a parsed config, no broker.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from broker.kinds import EventKind, metric_unit
from broker.schemas import DeviceEvent, Telemetry
from edge.adapters import Context, Mapped, Router, build_adapters
from edge.config import parse_config

NOW_MS = 1_785_853_200_000
_ids = itertools.count()


def _router() -> Router:
    cfg = parse_config({
        "gateway": "gw-tas", "lan": {"host": "127.0.0.1", "port": 1}, "uplink": {"host": "127.0.0.1", "port": 1},
        "outbox": {"path": "/nonexistent/outbox.sqlite3"},
        "adapters": [{"dialect": "tasmota", "devices": {
            "pow": {"id": "tas-pow", "kind": "electrical"},
            "pzem3": {"id": "tas-3phase", "kind": "electrical", "channels": 3},
        }}],
    })
    return Router(build_adapters(cfg))


def _route(router: Router, topic: str, body: dict[str, Any] | str) -> Mapped:
    raw = body if isinstance(body, str) else json.dumps(body)
    out = router.route(topic, raw.encode(), False, Context(NOW_MS, lambda: f"m{next(_ids)}"))
    assert isinstance(out, Mapped), out
    return out


def _readings(out: Mapped) -> dict[str, float]:
    got: dict[str, float] = {}
    for routed in out.messages:
        if isinstance(routed.message, Telemetry):
            got |= {k: v for k, v in routed.message.readings.items() if v is not None}
    assert all(metric_unit(k.partition("@")[0]) for k in got)
    return {k: round(v, 6) for k, v in got.items()}


def _events(out: Mapped) -> list[DeviceEvent]:
    return [r.message for r in out.messages if isinstance(r.message, DeviceEvent)]


def test_the_firmware_comment_example_energy_in_wh() -> None:
    # xdrv_03_energy.ino, EnergyMqttShow: "Total" is kWh, "Period" Wh of this tele period (not read), Today/Yesterday kWh
    body = {"Time": "2017-12-16T11:48:55", "ENERGY": {"Total": 0.212, "Yesterday": 0.000, "Today": 0.014, "Period": 2.0,
                                                      "Power": 22.0, "Factor": 1.00, "Voltage": 213.6, "Current": 0.100}}
    got = _readings(_route(_router(), "tele/pow/SENSOR", body))
    assert got == {"energy_wh": 212.0, "power_w": 22.0, "power_factor_ratio": 1.0, "voltage_v": 213.6, "current_a": 0.1}


def test_three_phase_arrays_and_export_active() -> None:
    # EnergyShow: Power/Voltage/Current one per phase, Total summed (SetOption129 0), ExportActive one per phase in kWh
    body = {"Time": "2024-03-01T10:00:00", "ENERGY": {
        "TotalStartTime": "2023-01-01T00:00:00", "Total": 1523.456, "Yesterday": 12.1, "Today": 3.2,
        "TodaySumImport": 3.2, "TodaySumExport": 0.5, "ExportActive": [0.0, 0.0, 2.5],
        "Power": [1200, 800, -300], "ApparentPower": [1250, 820, 310], "ReactivePower": [350, 180, 80],
        "Factor": [0.96, 0.98, 0.97], "Frequency": 50, "Voltage": [230.1, 231.0, 229.5], "Current": [5.43, 3.55, 1.35]}}
    got = _readings(_route(_router(), "tele/pzem3/SENSOR", body))
    assert {k: got.get(k) for k in ("energy_wh", "power_w@3", "voltage_v@2", "current_a@1", "frequency_hz",
                                     "returned_energy_wh@3", "returned_energy_wh@1")} == {
        "energy_wh": 1523456.0, "power_w@3": -300.0, "voltage_v@2": 231.0, "current_a@1": 5.43, "frequency_hz": 50.0,
        "returned_energy_wh@3": 2500.0, "returned_energy_wh@1": 0.0}


def test_esp32_per_phase_margins_alarm_and_clear_and_power_delta_is_not_an_alarm() -> None:
    router = _router()
    # EnergyMarginCheck (ESP32): "PowerHigh%d" per phase; PowerDelta is the change in watts, one per phase
    assert _events(_route(router, "tele/pzem3/MARGINS", {"MARGINS": {"PowerDelta": [0, 1350, 0]}})) == []
    up = _events(_route(router, "tele/pzem3/MARGINS", {"MARGINS": {"PowerHigh2": "ON", "VoltageLow3": "ON"}}))
    assert [(e.event, "PowerHigh2" in (e.detail or "")) for e in up][:1] == [(EventKind.ELECTRICAL_ALARM, True)]
    assert len(up) == 2
    down = _events(_route(router, "tele/pzem3/MARGINS", {"MARGINS": {"PowerHigh2": "OFF"}}))
    assert [e.event for e in down] == [EventKind.ELECTRICAL_CLEAR]


def test_esp32_per_phase_max_power_warning_carries_the_watts() -> None:
    router = _router()
    out = _route(router, "stat/pzem3/WARNING", {"Time": "2024-03-01T10:00:05", "MaxPowerReached1": 2310})
    [ev] = _events(out)
    assert (ev.event, ev.value) == (EventKind.ELECTRICAL_ALARM, 2310.0)
    assert "overload" in (ev.detail or "")
    [retry] = _events(_route(router, "stat/pzem3/WARNING", {"Time": "2024-03-01T10:01:05", "MaxPowerReachedRetry1": "OFF"}))
    assert retry.event == EventKind.ELECTRICAL_ALARM


def test_max_energy_reached_is_a_quota_not_an_electrical_alarm() -> None:
    out = _route(_router(), "stat/pow/WARNING", {"Time": "2024-03-01T18:00:00", "MaxEnergyReached": 5.002})
    assert _events(out) == []
    assert "quota" in (out.note or "")


def test_power_monitor_on_its_own_topic_and_per_phase_clears_the_overload() -> None:
    router = _router()
    # MqttPublishPrefixTopicRulesProcess_P(RESULT_OR_STAT, "PowerMonitor"): stat/%topic%/POWERMONITOR with SetOption4 1
    own = _events(_route(router, "stat/pow/POWERMONITOR", {"Time": "2024-03-01T10:02:00", "PowerMonitor": "ON"}))
    assert [e.event for e in own] == [EventKind.ELECTRICAL_CLEAR]
    phase = _events(_route(router, "stat/pzem3/RESULT", {"Time": "2024-03-01T10:02:00", "PowerMonitor1": "ON"}))
    assert [e.event for e in phase] == [EventKind.ELECTRICAL_CLEAR]


def test_state_wifi_quality_and_signal_dbm() -> None:
    # MqttShowState: "RSSI" is WifiGetRssiAsQuality (0-100 %), "Signal" the dBm
    body = {"Time": "2024-03-01T10:00:00", "Uptime": "0T18:36:12", "UptimeSec": 66972, "POWER": "ON",
            "Wifi": {"AP": 1, "SSId": "x", "BSSId": "00:00:00:00:00:00", "Channel": 6, "Mode": "11n", "RSSI": 76, "Signal": -62,
                     "LinkCount": 1, "Downtime": "0T00:00:03"}}
    got = _readings(_route(_router(), "tele/pow/STATE", body))
    assert got == {"uptime_s": 66972.0, "wifi_signal_pct": 76.0, "rssi_dbm": -62.0, "relay_on_ratio": 1.0}
