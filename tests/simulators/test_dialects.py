"""Dialect payloads and topics have the shapes of the real messages in device-samples/samples.jsonl."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from backend.sites import SiteDirectory
from broker.kinds import DeviceKind
from broker.schemas import decode_uplink
from simulators.dialects import DialectTopics, MixedEncoder
from simulators.fleet import Fleet
from simulators.native import NativeEncoder, Outgoing
from simulators.signals import SimulationProfile
from tests.conftest import SAMPLES
from tests.simulators.helpers import START, run

MakeFleet = Callable[..., Fleet]
ECOSYSTEM = {"zigbee2mqtt": "zigbee2mqtt", "tasmota": "tasmota", "shelly": "shelly_gen2", "frigate": "frigate", "esphome": "esphome"}
# Real topics of these ecosystems that the samples happen not to hold, each with why it is real.
EXTRA_SHAPES = {
    ("shelly_gen2", "{dev}/status/devicepower:0"),  # Shelly Plus Smoke's battery component (DevicePower.GetStatus)
}


def topic_shape(ecosystem: str, topic: str) -> str:
    """The topic with the user-chosen parts (prefix, device name, object id) replaced by placeholders."""
    levels = topic.split("/")
    match ecosystem:
        case "zigbee2mqtt":
            rest = "/".join(levels[1:])
            if rest == "bridge/state":
                return "{base}/bridge/state"
            if len(levels) > 2 and levels[-1] in ("availability", "action"):
                return "{base}/{dev}/" + levels[-1]
            return "{base}/{dev}"
        case "tasmota":
            return f"{levels[0]}/{{dev}}/{levels[-1]}"
        case "frigate":
            if len(levels) == 2:
                return "{prefix}/" + levels[1]
            return "{prefix}/{cam}/" + "/".join(levels[2:])
        case "esphome":
            if len(levels) == 4:
                return f"{{dev}}/{levels[1]}/{{object}}/state"
            return "{dev}/" + "/".join(levels[1:])
        case _:
            return "{dev}/" + "/".join(levels[1:])


def key_tree(value: Any, depth: int = 0) -> set[str]:
    """Dotted key paths of a JSON object (two levels), with camera names and similar ids folded."""
    out: set[str] = set()
    if isinstance(value, dict) and depth < 3:
        for k, v in value.items():
            out.add(k)
            out |= {f"{k}.{sub}" for sub in key_tree(v, depth + 1)}
    return out


def fold_frigate(stats: dict[str, Any]) -> dict[str, Any]:
    """Frigate stats name cameras as keys; fold them into one '<camera>' entry (both layouts)."""
    cams = stats.get("cameras")
    if cams is None:  # legacy layout: camera entries at top level
        cams = {k: v for k, v in stats.items() if isinstance(v, dict) and "camera_fps" in v}
    folded: dict[str, Any] = {}
    for entry in cams.values():
        folded.update(entry)
    rest = {k: v for k, v in stats.items() if k != "cameras" and k not in cams}
    return rest | {"cameras": {"<camera>": folded}}


def sample_shapes() -> tuple[dict[tuple[str, str], set[str]], dict[tuple[str, str], set[bool]]]:
    keys: dict[tuple[str, str], set[str]] = defaultdict(set)
    is_json: dict[tuple[str, str], set[bool]] = defaultdict(set)
    for line in SAMPLES.read_text().splitlines():
        s = json.loads(line)
        shape = (s["ecosystem"], topic_shape(s["ecosystem"], s["topic"]))
        try:
            body = json.loads(s["payload"])
        except ValueError:
            body = None
        is_json[shape].add(isinstance(body, dict))
        if isinstance(body, dict):
            if shape[1].endswith("/stats"):
                body = fold_frigate(body)
            keys[shape] |= key_tree(body)
    return keys, is_json


@pytest.fixture(scope="module")
def samples() -> tuple[dict[tuple[str, str], set[str]], dict[tuple[str, str], set[bool]]]:
    return sample_shapes()


def mixed_run(fleet: Fleet, sites: SiteDirectory, seconds: float = 3600) -> tuple[MixedEncoder, list[Outgoing]]:
    native = NativeEncoder(fleet.devices, "d1")
    encoder = MixedEncoder(native, sites)
    by_device = {d.id: d for d in fleet.devices}
    out: list[Outgoing] = []
    for g in fleet.gateways[:3]:
        out += encoder.birth(g, fleet.t)
    for step in run(fleet, seconds):
        out += encoder.step(step, by_device)
    return encoder, out


@pytest.fixture
def busy_fleet(make_fleet: MakeFleet) -> Fleet:
    profile = replace(SimulationProfile.quiet(), camera_flaps_per_day=20.0, self_tests_per_day=2.0, tampers_per_day=1.0)
    fleet = make_fleet(profile=profile)
    by_dialect: dict[tuple[str, DeviceKind], list[str]] = defaultdict(list)
    for d in fleet.devices:
        by_dialect[d.dialect, d.kind].append(d.id)
    for dialect in ("zigbee2mqtt", "shelly", "esphome", "native"):
        for dev in by_dialect[dialect, DeviceKind.SMOKE][:3]:
            fleet.smoke_alarm(dev, at=START + 100, duration_s=300)
            fleet.low_battery(dev, at=START + 200)
    for dev in by_dialect["zigbee2mqtt", DeviceKind.SOS][:3]:
        fleet.sos_press(dev, at=START + 50)
    for dialect in ("shelly", "tasmota"):
        for dev in by_dialect[dialect, DeviceKind.ELECTRICAL][:2]:
            fleet.heating(dev, at=START, c_per_min=3.0, duration_s=1800)
    return fleet


def test_dialect_topics_and_payload_keys_match_the_samples(busy_fleet: Fleet, sample_site: SiteDirectory, samples: Any) -> None:
    keys, is_json = samples
    encoder, out = mixed_run(busy_fleet, sample_site)
    seen: Counter[tuple[str, str]] = Counter()
    for o in out:
        if o.label not in ECOSYSTEM:
            decode_uplink(o.topic, o.payload)  # native traffic stays on the contract
            continue
        eco = ECOSYSTEM[o.label]
        shape = (eco, topic_shape(eco, o.topic))
        seen[shape] += 1
        assert shape in is_json or shape in EXTRA_SHAPES, f"{o.topic} has no counterpart in the samples"
        if shape in EXTRA_SHAPES:
            continue
        form = o.payload.startswith(b"{")
        assert form in is_json[shape], f"{o.topic}: the samples never carry {'JSON' if form else 'plain text'} here"
        if form:
            body = json.loads(o.payload)
            if shape[1].endswith("/stats"):
                body = fold_frigate(body)
            extra = key_tree(body) - keys[shape]
            assert not extra, f"{o.topic}: keys {sorted(extra)} are in none of the samples of {shape}"
    # every ecosystem of the sample community is exercised, with alarms and availability
    for shape in [
        ("zigbee2mqtt", "{base}/{dev}"),
        ("zigbee2mqtt", "{base}/{dev}/availability"),
        ("zigbee2mqtt", "{base}/bridge/state"),
        ("tasmota", "tele/{dev}/SENSOR"),
        ("tasmota", "tele/{dev}/LWT"),
        ("shelly_gen2", "{dev}/status/switch:0"),
        ("shelly_gen2", "{dev}/status/smoke:0"),
        ("frigate", "{prefix}/stats"),
        ("frigate", "{prefix}/{cam}/status/detect"),
        ("esphome", "{dev}/binary_sensor/{object}/state"),
    ]:
        assert seen[shape] > 0, shape
    assert encoder.fallback == Counter()  # the sample community has no pair without an encoder


def test_zigbee2mqtt_resends_the_whole_state_and_alarms_are_false_to_true(busy_fleet: Fleet, sample_site: SiteDirectory) -> None:
    _, out = mixed_run(busy_fleet, sample_site, 900)
    dev = next(d.id for d in busy_fleet.devices if d.dialect == "zigbee2mqtt" and d.kind is DeviceKind.SMOKE)
    states = [json.loads(o.payload) for o in out if o.topic == f"zigbee2mqtt/{dev}"]
    assert [s["smoke"] for s in states][:2] == [True, True]  # alarm, then the low-battery update still says smoke
    assert states[1]["battery_low"] is True
    assert states[-1]["smoke"] is False
    assert all(list(s) == sorted(s) for s in states)  # Z2M sorts keys
    sos = next(d.id for d in busy_fleet.devices if d.dialect == "zigbee2mqtt" and d.kind is DeviceKind.SOS)
    presses = [json.loads(o.payload) for o in out if o.topic == f"zigbee2mqtt/{sos}"]
    assert presses[0]["action"] == "emergency"


def test_frigate_stats_show_a_dead_link_as_zero_fps(make_fleet: MakeFleet, sample_site: SiteDirectory) -> None:
    fleet = make_fleet()
    cam = next(d for d in fleet.devices if d.dialect == "frigate")
    fleet.camera_outage(cam.id, at=START + 30, duration_s=1200)
    _, out = mixed_run(fleet, sample_site, 900)
    stats = [json.loads(o.payload) for o in out if o.topic == "frigate/stats" and o.gateway == cam.gateway]
    assert stats[0]["cameras"][cam.id]["camera_fps"] > 20
    assert stats[-1]["cameras"][cam.id]["camera_fps"] == 0.0
    assert any(o.topic == f"frigate/{cam.id}/status/detect" and o.payload == b"offline" for o in out)


def test_prefixes_are_configurable_per_gateway(make_fleet: MakeFleet, sample_site: SiteDirectory) -> None:
    fleet = make_fleet()
    topics = DialectTopics.per_gateway()
    encoder = MixedEncoder(NativeEncoder(fleet.devices, "p"), sample_site, topics)
    birth = encoder.birth("c01-gw-b01", START)
    assert any(o.topic == "zigbee2mqtt/c01-gw-b01/bridge/state" for o in birth)
    assert any(o.topic == "frigate/c01-gw-b01/available" for o in birth)
    tasmota = DialectTopics(tasmota_full_topic="%prefix%/{gateway}/%topic%/")
    encoder = MixedEncoder(NativeEncoder(fleet.devices, "p"), sample_site, tasmota)
    assert any(o.topic.startswith("tele/c01-gw-b01/") and o.topic.endswith("/LWT") for o in encoder.birth("c01-gw-b01", START))


def test_drills_on_dialect_devices_go_out_native_with_the_drill_flag_and_their_dialect_traffic_stays_real(
    make_fleet: MakeFleet, sample_site: SiteDirectory,
) -> None:
    """A real device of those ecosystems cannot carry our drill flag: a drill of a dialect device goes out on the
    native contract (drill: true), beside its real dialect traffic, which goes on healthy and never shows the drill."""
    fleet = make_fleet()
    first = {(d.dialect, d.kind): d.id for d in reversed(fleet.devices)}
    cam, meter = first["frigate", DeviceKind.CAMERA], first["shelly", DeviceKind.ELECTRICAL]
    z2m, shelly, esphome = (first[dialect, DeviceKind.SMOKE] for dialect in ("zigbee2mqtt", "shelly", "esphome"))
    sos = first["zigbee2mqtt", DeviceKind.SOS]
    fleet.camera_outage(cam, at=START + 100, duration_s=600, drill=True)
    for smoke in (z2m, shelly, esphome):
        fleet.smoke_alarm(smoke, at=START + 60, duration_s=300, drill=True)
        fleet.low_battery(smoke, at=START + 120, drill=True)
    fleet.tamper(esphome, at=START + 400, duration_s=60, drill=True)
    fleet.sos_press(sos, at=START + 50, drill=True)
    fleet.heating(meter, at=START + 30, c_per_min=6.0, duration_s=1800, drill=True)
    encoder = MixedEncoder(NativeEncoder(fleet.devices, "d1"), sample_site)
    by_device = {d.id: d for d in fleet.devices}
    steps = run(fleet, 3600)
    out = [o for step in steps for o in encoder.step(step, by_device)]
    dialect_device = {d.id for d in fleet.devices if encoder.dialect_of(d.id) != "native"}

    # every drill record of a dialect device went out native, drill-flagged; nothing else of theirs did
    native = [decode_uplink(o.topic, o.payload) for o in out if o.label not in ECOSYSTEM]
    native = [u for u in native if u.topic.device in dialect_device]
    assert native
    assert all(u.message.drill for u in native)
    drill_events = sorted((e.device, e.event.value) for s in steps for e in s.events if e.drill)
    assert sorted((str(u.topic.device), getattr(u.message, "event", "")) for u in native if u.topic.kind.value == "event") == drill_events
    assert {(c.device, c.state) for s in steps for c in s.availability if c.drill} == \
        {(str(u.topic.device), getattr(u.message, "state", None)) for u in native if u.topic.kind.value == "availability"}
    copies = sum(int(b.drill[k]) for s in steps for b in s.readings for k in range(len(b)) if fleet.devices[int(b.devices[k])].id in dialect_device)
    assert copies > 0
    assert len([u for u in native if u.topic.kind.value == "telemetry"]) == copies

    # the devices' own dialect traffic goes on, and never shows the drill's pretend faults
    z2m_states = [json.loads(o.payload) for o in out if o.topic == f"zigbee2mqtt/{z2m}"]  # (its daily check-in, if due)
    assert not [s for s in z2m_states if s["smoke"] or s["battery_low"]]
    assert not [o for o in out if o.topic == f"zigbee2mqtt/{sos}" and b"emergency" in o.payload]
    assert not [o for o in out if o.topic == f"{shelly}/status/smoke:0"]
    assert not [o for o in out if o.topic.startswith(f"{esphome}/binary_sensor/") and o.payload == b"ON"]
    assert not [o for o in out if o.topic.startswith(f"{esphome}/sensor/battery_level/") and float(o.payload) <= 15]
    assert not [o for o in out if o.topic == f"frigate/{cam}/status/detect"], "its real link never went down"
    stats = [json.loads(o.payload) for o in out if o.topic == "frigate/stats" and o.gateway == by_device[cam].gateway]
    assert len(stats) >= 50
    assert min(s["cameras"][cam]["camera_fps"] for s in stats) > 20
    switch = [json.loads(o.payload) for o in out if o.topic == f"{meter}/status/switch:0"]
    assert len(switch) >= 10
    assert not [s for s in switch if "errors" in s or s["temperature"]["tC"] >= 70]
    assert max(float(u.message.readings["temperature_c"]) for u in native  # type: ignore[union-attr]
               if u.topic.device == meter and u.topic.kind.value == "telemetry") >= 70, "the drill's copies carry the heat"
