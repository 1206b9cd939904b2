"""Every line of the device-samples fixture set, mapped to what its `meaning` says (pure: no broker).

The table below is keyed by line index: for each line, exactly the contract messages it must produce (device,
kind, and the values that carry the meaning), or the note that says why it carries nothing for us. Each line
runs on fresh adapter state ("what does this message alone mean"); the stateful traps (transitions, dedupe,
bridge, merge) are tested in file order further down.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from broker.kinds import LIFE_SAFETY_EVENTS, AvailabilityState, EventKind, metric_unit
from broker.schemas import DeviceAvailability, DeviceEvent, Telemetry, decode_message, encode
from broker.topics import TopicKind
from edge.adapters import Context, Mapped, Rejected, Router, build_adapters
from edge.config import parse_config
from tests.conftest import SAMPLES
from tests.edge.sample_config import sample_config

NOW_MS = 1_785_853_200_000
LINES: list[dict[str, Any]] = [json.loads(line) for line in SAMPLES.read_text(encoding="utf-8").splitlines() if line.strip()]

A = AvailabilityState
K = EventKind


@dataclass(frozen=True)
class Tel:
    device: str
    readings: dict[str, float]


@dataclass(frozen=True)
class Ev:
    device: str
    kind: EventKind
    needs_callback: bool = False
    value: float | None = None
    detail_has: str = ""


@dataclass(frozen=True)
class Av:
    device: str
    state: AvailabilityState


@dataclass(frozen=True)
class Expect:
    messages: tuple[Tel | Ev | Av, ...] = ()
    note_has: str = ""  # when no messages: the reason must say this
    heard: tuple[str, ...] | None = None
    rearmed: tuple[str, ...] | None = None
    source_ts_ms: int | None = None  # the device's own timestamp where the dialect carries one


def msgs(*m: Tel | Ev | Av, **kw: Any) -> Expect:
    return Expect(tuple(m), **kw)


def nothing(note_has: str, **kw: Any) -> Expect:
    return Expect((), note_has, **kw)


CAMS = ("cam-front-door", "cam-back-door", "cam-garage", "cam-gates")
Z2M = (
    "z2m-bulb-color",
    "z2m-remote",
    "z2m-bathroom-motion",
    "z2m-washer-plug",
    "z2m-dist-breaker",
    "z2m-garage-motion",
    "z2m-soil-3",
    "z2m-leak-1",
    "z2m-hallway-smoke",
    "z2m-frient-smoke",
    "z2m-kitchen-smoke",
    "z2m-bedroom-smoke",
    "z2m-heiman-smoke",
    "z2m-xiaomi-smoke",
    "z2m-master-sos",
    "z2m-tuya-sos",
    "z2m-ts0215a-sos",
    "z2m-heiman-sos",
)

TABLE: dict[int, Expect] = {
    # --- ESPHome
    0: msgs(Av("esp-livingroom", A.OFFLINE)),
    1: msgs(Av("esp-livingroom", A.ONLINE)),
    2: msgs(Ev("esp-kitchen", K.FAULT, detail_has="no valid value"), heard=("esp-kitchen",)),  # nan: a fault, no 0 V reading
    3: msgs(Tel("esp-attic-powerwall", {"firstfloor_inverter_energy_yesterday_wh": 105.0})),  # 0.105 kWh
    4: msgs(Tel("esp-attic-powerwall", {"attic_powerwall_restart_on_ratio": 0.0})),  # switch OFF
    5: msgs(Tel("esp-presence", {"illuminance_lux": 117.5})),  # unit named in the config
    6: msgs(Ev("esp-kitchen-smoke", K.SMOKE_ALARM)),  # the node's wired smoke detector is its own device
    # --- Frigate
    7: msgs(*(Av(c, A.UNKNOWN) for c in CAMS)),  # NVR died: every camera behind it unknown, not offline
    8: nothing("re-armed", rearmed=CAMS),
    9: msgs(*(Av(c, A.UNKNOWN) for c in CAMS)),  # stopped on purpose: still no analytics
    10: msgs(*(x for c in CAMS[:3] for x in (Tel(c, {"camera_fps": 5.0}), Av(c, A.ONLINE))), heard=CAMS[:3]),
    11: msgs(Av("cam-front-door", A.DISABLED)),  # disabled on purpose: no offline alarm
    12: msgs(
        Tel("cam-gates", {"camera_fps": 25.0, "detection_fps": 16.8, "process_fps": 15.0, "skipped_fps": 10.0}),
        Av("cam-gates", A.ONLINE),
    ),
    13: msgs(
        Tel("cam-front-door", {"camera_fps": 0.0, "detection_fps": 0.0, "process_fps": 0.0, "skipped_fps": 0.0}),
        Av("cam-front-door", A.OFFLINE),  # legacy layout, camera_fps 0
        heard=(),
    ),
    14: msgs(Av("cam-front-door", A.OFFLINE)),
    15: msgs(Av("cam-front-door", A.DISABLED)),
    16: msgs(Av("cam-front-door", A.ONLINE)),
    # --- Shelly Gen2/Gen3
    17: msgs(Av("shelly-1pm-a", A.OFFLINE)),
    18: msgs(
        Tel(
            "shelly-ogemray",
            {"power_w": 0.0, "voltage_v": 224.6, "current_a": 0.0, "frequency_hz": 50.0, "energy_wh": 0.0, "device_temperature_c": 42.6, "relay_on_ratio": 1.0},
        ),
    ),
    19: msgs(Tel("shelly-ogemray", {"power_w": 0.0, "current_a": 0.0, "relay_on_ratio": 0.0}), source_ts_ms=1785853186070),
    20: msgs(
        Ev("shelly-plug-s", K.RESTARTED, value=21.0),
        Tel(
            "shelly-plug-s",
            {
                "power_w": 0.0,
                "voltage_v": 229.1,
                "current_a": 0.0,
                "energy_wh": 30473.355,  # Wh already
                "device_temperature_c": 34.8,
                "relay_on_ratio": 1.0,
                "uptime_s": 21.0,
                "rssi_dbm": -73.0,
            },
        ),
        source_ts_ms=1698999954770,
    ),
    21: msgs(
        Ev("shelly-1pm-d", K.ELECTRICAL_ALARM, detail_has="overpower, overtemp"),
        Tel("shelly-1pm-d", {"power_w": 0.0, "voltage_v": 229.8, "current_a": 0.0, "energy_wh": 14.093, "device_temperature_c": 87.5, "relay_on_ratio": 0.0}),
    ),
    22: nothing("config_changed: informational", heard=("shelly-mini-g3",)),
    23: nothing("no reading or alarm change", heard=("shelly-smoke",)),  # normal: nothing to raise
    24: msgs(Ev("shelly-smoke", K.SMOKE_ALARM)),
    # --- Tasmota
    25: msgs(Av("tas-plug", A.OFFLINE)),
    26: msgs(Av("tas-compressor", A.ONLINE)),
    27: msgs(Tel("tas-adc", {"uptime_s": 66972.0, "wifi_signal_pct": 100.0, "relay_on_ratio": 0.0}), heard=("tas-adc",)),
    28: msgs(Ev("tas-compressor", K.ELECTRICAL_ALARM, value=434.0, detail_has="overload")),
    29: msgs(Tel("tas-cable-probe", {"temperature_c": 20.9})),
    30: msgs(Ev("tas-compressor", K.ELECTRICAL_CLEAR)),
    31: msgs(Ev("tas-adc", K.ELECTRICAL_ALARM, detail_has="PowerHigh")),
    32: msgs(
        Tel(
            "tas-compressor",
            {
                "energy_wh": 6.0,
                "power_w": 435.0,
                "apparent_power_va": 536.0,
                "reactive_power_var": 314.0,
                "power_factor_ratio": 0.81,
                "voltage_v": 234.0,
                "current_a": 2.288,
            },
        ),
    ),
    33: msgs(
        Tel(
            "tas-shelly25",
            {
                "energy_wh": 3262.0,
                "power_w@1": 23.63,
                "power_w@2": 67.17,
                "apparent_power_va@1": 23.63,
                "apparent_power_va@2": 67.17,
                "reactive_power_var@1": 0.0,
                "reactive_power_var@2": 0.0,
                "power_factor_ratio@1": 1.0,
                "power_factor_ratio@2": 1.0,
                "voltage_v": 229.3,
                "current_a@1": 0.103,
                "current_a@2": 0.293,
                "device_temperature_c": 52.5,
            },
        ),
    ),
    34: msgs(
        Tel(
            "tas-pow1",
            {
                "energy_wh": 6294.0,
                "power_w": 2635.0,
                "apparent_power_va": 2650.0,
                "reactive_power_var": 282.0,
                "power_factor_ratio": 0.99,
                "voltage_v": 227.0,
                "current_a": 11.661,
            },
        ),
    ),  # high but normal: no alarm
    # --- Zigbee2MQTT
    35: nothing("bridge online", rearmed=Z2M),
    36: nothing("cleared", heard=()),  # empty retained availability: not offline
    37: msgs(Av("z2m-bulb-color", A.ONLINE)),
    38: msgs(Av("z2m-remote", A.OFFLINE)),
    39: msgs(Av("z2m-bathroom-motion", A.OFFLINE)),
    40: nothing("bridge online", rearmed=("z2m-porch-smoke",)),
    41: msgs(*(Av(d, A.UNKNOWN) for d in Z2M)),  # bridge gone: every device behind it unknown
    42: msgs(
        Tel(
            "z2m-washer-plug",
            {
                "link_quality_lqi": 96.0,
                "power_w": 0.0,
                "current_a": 0.07,
                "energy_wh": 14240.0,  # kWh -> Wh
                "voltage_v": 230.0,
                "relay_on_ratio": 1.0,
            },
        ),
    ),
    43: msgs(
        Ev("z2m-dist-breaker", K.ELECTRICAL_ALARM, value=42.0, detail_has="leakagecurr_alarm"),
        Tel(
            "z2m-dist-breaker",
            {
                "temperature_c": 38.0,
                "link_quality_lqi": 150.0,
                "power_w": 1820.0,
                "current_a": 7.925,
                "energy_wh": 1234560.0,
                "residual_current_ma": 42.0,
                "voltage_v": 229.8,
                "relay_on_ratio": 0.0,
            },
        ),
    ),
    44: msgs(
        Ev("z2m-garage-motion", K.TAMPER),
        Tel(
            "z2m-garage-motion", {"temperature_c": 17.54, "battery_pct": 100.0, "link_quality_lqi": 188.0, "illuminance_lux": 10.0, "battery_voltage_v": 3.0}
        ),  # a battery device's voltage is mV
    ),
    45: msgs(
        Ev("z2m-soil-3", K.LOW_BATTERY, value=20.0),
        Tel("z2m-soil-3", {"temperature_c": 18.0, "battery_pct": 20.0, "link_quality_lqi": 124.0, "soil_moisture_pct": 40.0}),
    ),
    # Alone, "water_leak": false has no earlier leak to clear; the clear after a leak is in the sequence test.
    46: msgs(Tel("z2m-leak-1", {"link_quality_lqi": 97.0})),
    47: msgs(Ev("z2m-leak-1", K.WATER_LEAK), Tel("z2m-leak-1", {"link_quality_lqi": 94.0})),
    48: msgs(Ev("z2m-hallway-smoke", K.SMOKE_ALARM), Tel("z2m-hallway-smoke", {"battery_pct": 100.0, "link_quality_lqi": 87.0})),
    49: msgs(
        Ev("z2m-frient-smoke", K.SELF_TEST),  # the test button: never a fire
        Tel("z2m-frient-smoke", {"temperature_c": 24.06, "battery_pct": 100.0, "link_quality_lqi": 30.0, "battery_voltage_v": 3.1}),
    ),
    50: msgs(Ev("z2m-kitchen-smoke", K.TAMPER), Tel("z2m-kitchen-smoke", {"link_quality_lqi": 120.0})),
    51: msgs(Ev("z2m-hallway-smoke", K.LOW_BATTERY, value=7.5), Tel("z2m-hallway-smoke", {"battery_pct": 7.5, "link_quality_lqi": 80.0})),
    52: msgs(Tel("z2m-bedroom-smoke", {"link_quality_lqi": 72.0})),  # nulls are unknown: no battery 0, no alarm
    53: msgs(Tel("z2m-heiman-smoke", {"link_quality_lqi": 15.0})),
    54: nothing("no reading and no state change", heard=("z2m-xiaomi-smoke",)),
    55: msgs(Ev("z2m-old-smoke", K.SMOKE_ALARM), Tel("z2m-old-smoke", {"link_quality_lqi": 26.0})),
    56: msgs(Ev("z2m-kitchen-smoke", K.SMOKE_ALARM), Tel("z2m-kitchen-smoke", {"link_quality_lqi": 120.0})),
    57: msgs(
        Ev("z2m-master-sos", K.SOS_PRESS, needs_callback=True, detail_has="battery reports 0 %"),
        Ev("z2m-master-sos", K.LOW_BATTERY, value=0.0),
        Tel("z2m-master-sos", {"battery_pct": 0.0, "link_quality_lqi": 156.0}),
    ),
    58: msgs(Ev("z2m-tuya-sos", K.SOS_PRESS, needs_callback=True), Tel("z2m-tuya-sos", {"battery_pct": 100.0, "link_quality_lqi": 18.0})),
    59: msgs(Ev("z2m-ts0215a-sos", K.SOS_PRESS, needs_callback=True), Tel("z2m-ts0215a-sos", {"link_quality_lqi": 90.0})),
    60: msgs(Ev("z2m-heiman-sos", K.SOS_PRESS, needs_callback=True), Tel("z2m-heiman-sos", {"battery_pct": 51.5, "link_quality_lqi": 192.0})),
    61: msgs(Ev("z2m-ts0215a-sos", K.SOS_PRESS, needs_callback=True)),  # alone; deduped after line 59 in the sequence test
    62: msgs(Tel("z2m-ts0215a-sos", {"link_quality_lqi": 90.0})),  # action "" is a reset, not "SOS cleared"
}


def _router() -> Router:
    return Router(build_adapters(parse_config(sample_config())))


def _ctx(now_ms: int = NOW_MS) -> Context:
    counter = itertools.count()
    return Context(now_ms, lambda: f"test-{next(counter)}")


def _normal(m: Telemetry | DeviceEvent | DeviceAvailability, device: str) -> Tel | Ev | Av:
    if isinstance(m, Telemetry):
        return Tel(device, {k: round(v, 6) for k, v in m.readings.items()})
    if isinstance(m, DeviceEvent):
        return Ev(device, m.event, m.needs_callback, m.value)
    return Av(device, m.state)


def test_the_table_covers_every_line() -> None:
    assert len(LINES) == 63
    assert sorted(TABLE) == list(range(len(LINES)))


@pytest.mark.parametrize("index", range(len(LINES)), ids=lambda i: f"line{i:02d}")
def test_sample_line_maps_to_its_meaning(index: int) -> None:
    line = LINES[index]
    expect = TABLE[index]
    outcome = _router().route(line["topic"], line["payload"].encode(), bool(line["retained"]), _ctx())
    assert isinstance(outcome, Mapped), f"{line['meaning']}: rejected {outcome}"
    got = [_normal(r.message, r.device) for r in outcome.messages]
    want = [Ev(e.device, e.kind, e.needs_callback, e.value) if isinstance(e, Ev) else e for e in expect.messages]
    assert sorted(map(repr, got)) == sorted(map(repr, want)), line["meaning"]
    if not expect.messages:
        assert outcome.note is not None
        assert expect.note_has in outcome.note
    for e in expect.messages:
        if isinstance(e, Ev) and e.detail_has:
            details = [r.message.detail or "" for r in outcome.messages if isinstance(r.message, DeviceEvent) and r.message.event is e.kind]
            assert any(e.detail_has in d for d in details), details
    if expect.heard is not None:
        assert set(outcome.heard) == set(expect.heard)
    if expect.rearmed is not None:
        assert set(outcome.rearmed) == set(expect.rearmed)
    for r in outcome.messages:
        m = r.message
        assert m.received_ts_ms == NOW_MS
        assert m.source_ts_ms == (expect.source_ts_ms or NOW_MS)
        if isinstance(m, Telemetry):
            assert all(metric_unit(k) for k in m.readings), m.readings
        # every message survives the contract's own strict decoder
        kind = {Telemetry: TopicKind.TELEMETRY, DeviceEvent: TopicKind.EVENT, DeviceAvailability: TopicKind.AVAILABILITY}[type(m)]
        assert decode_message(kind, encode(m)) == m


@dataclass
class _Run:
    router: Router = field(default_factory=_router)
    now_ms: int = NOW_MS

    def feed(self, index: int, step_ms: int = 1000) -> Mapped:
        self.now_ms += step_ms
        line = LINES[index]
        out = self.router.route(line["topic"], line["payload"].encode(), bool(line["retained"]), _ctx(self.now_ms))
        assert isinstance(out, Mapped)
        return out


def _events(out: Mapped) -> list[tuple[str, EventKind]]:
    return [(r.device, r.message.event) for r in out.messages if isinstance(r.message, DeviceEvent)]


def test_zigbee2mqtt_full_state_resends_raise_an_alarm_once_and_clear_on_false() -> None:
    run = _Run()
    assert _events(run.feed(48)) == [("z2m-hallway-smoke", K.SMOKE_ALARM)]
    assert _events(run.feed(48)) == []  # the same full state again: no second alarm
    assert sorted(_events(run.feed(51))) == sorted([("z2m-hallway-smoke", K.SMOKE_CLEAR), ("z2m-hallway-smoke", K.LOW_BATTERY)])
    assert _events(run.feed(47)) == [("z2m-leak-1", K.WATER_LEAK)]
    assert _events(run.feed(46)) == [("z2m-leak-1", K.WATER_LEAK_CLEAR)]  # line 46's "water leak cleared"
    assert _events(run.feed(50)) == [("z2m-kitchen-smoke", K.TAMPER)]
    assert sorted(_events(run.feed(56))) == sorted([("z2m-kitchen-smoke", K.SMOKE_ALARM), ("z2m-kitchen-smoke", K.TAMPER_CLEAR)])


def test_null_is_unknown_and_changes_no_state() -> None:
    run = _Run()
    router = run.router
    topic = "zigbee2mqtt/Schlafzimmer Rauchmelder"
    ctx = _ctx()
    assert _events(router.route(topic, b'{"smoke": true, "battery": null}', False, ctx)) == [("z2m-bedroom-smoke", K.SMOKE_ALARM)]  # type: ignore[arg-type]
    out = router.route(topic, b'{"smoke": null, "battery": null, "linkquality": 50}', False, ctx)
    assert isinstance(out, Mapped)
    assert _events(out) == []  # null is not false: no clear
    tel = [r.message for r in out.messages if isinstance(r.message, Telemetry)]
    assert tel[0].readings == {"link_quality_lqi": 50.0}  # and no battery 0


def test_self_test_while_smoke_is_reported_is_not_a_fire() -> None:
    router = _router()
    out = router.route("zigbee2mqtt/hallway_smoke", b'{"smoke": true, "test": true}', False, _ctx())
    assert isinstance(out, Mapped)
    assert _events(out) == [("z2m-hallway-smoke", K.SELF_TEST)]
    out = router.route("zigbee2mqtt/hallway_smoke", b'{"smoke": true, "test": false}', False, _ctx())
    assert isinstance(out, Mapped)
    assert _events(out) == [("z2m-hallway-smoke", K.SMOKE_ALARM)]  # smoke still there after the test: real


def test_sos_on_json_state_and_action_topic_is_one_press_within_the_window() -> None:
    run = _Run()
    assert _events(run.feed(59)) == [("z2m-ts0215a-sos", K.SOS_PRESS)]
    assert _events(run.feed(61, step_ms=200)) == []  # the same press on /action
    assert _events(run.feed(62, step_ms=200)) == []  # the reset to "" is not a clear
    assert _events(run.feed(61, step_ms=10_000)) == [("z2m-ts0215a-sos", K.SOS_PRESS)]  # a new press later


def test_bridge_offline_makes_devices_unknown_and_online_rearms_them() -> None:
    run = _Run()
    off = run.feed(41)
    assert {r.device for r in off.messages} == set(Z2M)
    assert all(isinstance(r.message, DeviceAvailability) and r.message.state is A.UNKNOWN for r in off.messages)
    on = run.feed(35)
    assert set(on.rearmed) == set(Z2M)
    assert on.messages == ()


def test_shelly_notify_status_delta_merges_into_the_last_status() -> None:
    router = _router()
    ctx = _ctx()
    tripped = json.loads(LINES[21]["payload"])
    dev = "shellyplus1pm-d4d4da0a4ca0"
    out = router.route(f"{dev}/status/switch:0", json.dumps(tripped).encode(), False, ctx)
    assert _events(out) == [("shelly-1pm-d", K.ELECTRICAL_ALARM)]  # type: ignore[arg-type]
    # a delta that does not mention errors: the trip is still on (merged), only the reading is sent
    delta = {"method": "NotifyStatus", "params": {"ts": 1.0, "switch:0": {"apower": 5.0}}}
    out = router.route(f"{dev}/events/rpc", json.dumps(delta).encode(), False, ctx)
    assert isinstance(out, Mapped)
    assert _events(out) == []
    assert [r.message.readings for r in out.messages if isinstance(r.message, Telemetry)] == [{"power_w": 5.0}]
    # the full status without errors clears it
    ok = {k: v for k, v in tripped.items() if k != "errors"}
    out = router.route(f"{dev}/status/switch:0", json.dumps(ok).encode(), False, ctx)
    assert _events(out) == [("shelly-1pm-d", K.ELECTRICAL_CLEAR)]  # type: ignore[arg-type]


def test_esphome_sensor_fault_clears_when_it_measures_again() -> None:
    router = _router()
    assert _events(router.route("kitchen-node/sensor/mains_voltage/state", b"nan", True, _ctx())) == [("esp-kitchen", K.FAULT)]  # type: ignore[arg-type]
    out = router.route("kitchen-node/sensor/mains_voltage/state", b"229.5", True, _ctx())
    assert isinstance(out, Mapped)
    assert _events(out) == [("esp-kitchen", K.FAULT_CLEAR)]
    assert [r.message.readings for r in out.messages if isinstance(r.message, Telemetry)] == [{"mains_voltage_v": 229.5}]


def test_frigate_disabled_camera_is_not_reported_offline_by_stats() -> None:
    run = _Run()
    run.feed(15)  # enabled/state OFF
    out = run.feed(13)  # legacy stats: front_door 0 fps
    assert not [r for r in out.messages if isinstance(r.message, DeviceAvailability)]


def test_life_safety_events_in_the_samples_are_the_ones_expected() -> None:
    """The fast path carries exactly smoke, SOS and tamper from the fixture set."""
    kinds = {e.kind for x in TABLE.values() for e in x.messages if isinstance(e, Ev) and e.kind in LIFE_SAFETY_EVENTS}
    assert kinds == {K.SMOKE_ALARM, K.SOS_PRESS, K.TAMPER}


@pytest.mark.parametrize(
    ("topic", "payload", "code"),
    [
        ("zigbee2mqtt/hallway_smoke", b'{"smoke": tru', "malformed"),
        ("zigbee2mqtt/hallway_smoke", b"[1, 2]", "malformed"),
        ("zigbee2mqtt/not_configured", b'{"smoke": true}', "unknown_device"),
        ("zigbee2mqtt/remote/availability", b"maybe", "malformed"),
        ("tele/unknown_plug/SENSOR", b"{}", "unknown_device"),
        ("tele/pow1/LWT", b"Sleeping", "malformed"),
        ("shellyplussmoke-80646fd1xxyy/events/rpc", b'{"method": "NotifyStatus"}', "malformed"),
        ("frigate/available", b"dunno", "malformed"),
        ("frigate/unknown_cam/status/detect", b"online", "unknown_device"),
        ("kitchen-node/sensor/mains_voltage/state", b"high", "malformed"),
        ("attic-powerwall/sensor/mystery_value/state", b"3", "unmapped"),
        ("livingroom/binary_sensor/thing/state", b"ON", "unmapped"),
        ("nobody/owns/this", b"x", "unknown_topic"),
        ("zigbee2mqtt/hallway_smoke", b"{" + b" " * 70_000 + b"}", "too_large"),
    ],
)
def test_malformed_or_unknown_messages_are_rejected_with_a_reason(topic: str, payload: bytes, code: str) -> None:
    out = _router().route(topic, payload, False, _ctx())
    assert isinstance(out, Rejected)
    assert out.code.value == code
    assert out.detail
