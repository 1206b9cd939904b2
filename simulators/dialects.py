"""Ecosystem dialects: simulated devices that speak Zigbee2MQTT, Tasmota, Shelly Gen2, Frigate and ESPHome.

How this works: each device's `dialect` in the site directory picks its encoder; `MixedEncoder` routes every
record of a fleet step to it (native devices, gateways' status and patrol stay on our own contract, and so does
every drill-flagged record, whatever its device's dialect: see the invariants).
Payloads and topics are shaped like the real messages in /work/shared/device-samples/samples.jsonl:

  zigbee2mqtt  {base}/{device}  the device's whole state, keys sorted, resent on every update (so an alarm
               is a false->true change); {base}/{device}/availability {"state":"online"}; {base}/bridge/state
  tasmota      tele/{device}/SENSOR {"Time":..,"ENERGY":{..},"DS18B20":{..},"TempUnit":"C"}, tele/{device}/STATE,
               tele/{device}/LWT Online (retained)
  shelly       {device}/status/switch:0 (apower, voltage, current, aenergy, temperature, errors[]),
               {device}/status/smoke:0 {"id":0,"alarm":..,"mute":false}, {device}/status/devicepower:0,
               {device}/online true
  frigate      {prefix}/stats (one per gateway and minute, every camera under "cameras", camera_fps 0.0 for a
               dead link), {prefix}/{camera}/status/detect online|offline, {prefix}/available online (retained)
  esphome      {device}/binary_sensor/smoke_detector/state ON|OFF, {device}/binary_sensor/tamper/state,
               {device}/sensor/battery_level/state "87.0", {device}/sensor/<metric>/state, {device}/status online

Prefixes come from DialectTopics and may hold "{gateway}" so that many gateways can share one broker.
Invariants: an event a real device of that ecosystem cannot send (a Tasmota meter has no leakage alarm, a
Shelly smoke detector has no self-test topic) is not invented: it is counted in `unsupported`, and its
readings still carry the condition. Dialect messages cannot carry our drill flag, so drills speak native: a drill's
events, availability changes and reading copies go out on the native contract (which carries `drill`) as the
device's gateway, beside the device's real dialect traffic, and never touch a dialect's state (a Zigbee2MQTT
device's resent state, Frigate's per-camera stats): a drill never goes out looking real.
A (dialect, class) pair with no encoder here falls back to native and is counted in `fallback`.
"""

from __future__ import annotations

import json
import math
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from backend.sites.model import Device, SiteDirectory
from broker.kinds import AvailabilityState, DeviceKind, EventKind
from simulators.native import NativeEncoder, Outgoing
from simulators.records import AvailabilityChange, ReadingBatch, SimEvent, Step

__all__ = ["DIALECTS", "DialectTopics", "MixedEncoder"]

DIALECTS = ("native", "zigbee2mqtt", "tasmota", "shelly", "frigate", "esphome")
_SUPPORTED: dict[str, frozenset[DeviceKind]] = {
    "zigbee2mqtt": frozenset({DeviceKind.SMOKE, DeviceKind.SOS, DeviceKind.ELECTRICAL}),
    "tasmota": frozenset({DeviceKind.ELECTRICAL}),
    "shelly": frozenset({DeviceKind.ELECTRICAL, DeviceKind.SMOKE}),
    "frigate": frozenset({DeviceKind.CAMERA}),
    "esphome": frozenset({DeviceKind.SMOKE, DeviceKind.ELECTRICAL}),
}
_FRIGATE_STATS_S = 60.0  # Frigate's default stats interval
_UTC_OFFSET = timedelta(hours=8)  # Tasmota stamps local time without a zone


@dataclass(frozen=True, slots=True)
class DialectTopics:
    """Topic prefixes, as each ecosystem lets its owner configure them. '{gateway}' is replaced per gateway."""

    zigbee2mqtt: str = "zigbee2mqtt"  # base_topic
    tasmota_full_topic: str = "%prefix%/%topic%/"  # Tasmota FullTopic; %topic% is the device id
    shelly: str = "{device}"  # Shelly topic prefix (a real device defaults to <model>-<mac>)
    frigate: str = "frigate"  # Frigate mqtt.topic_prefix
    esphome: str = "{device}"  # ESPHome topic_prefix (defaults to the node name)

    @classmethod
    def per_gateway(cls) -> DialectTopics:
        """Prefixes that keep many gateways' ecosystems apart on one broker (street-scale runs)."""
        return cls(zigbee2mqtt="zigbee2mqtt/{gateway}", frigate="frigate/{gateway}")


def _z2m_json(state: dict[str, Any]) -> bytes:
    return json.dumps(state, sort_keys=True, separators=(",", ":")).encode()


def _compact(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _stable(text: str) -> int:
    """A per-device constant that is the same in every process (str hash is salted per process)."""
    return zlib.crc32(text.encode())


def _r(x: float, digits: int) -> float:
    return round(float(x), digits)


class MixedEncoder:
    """Routes each device to its dialect's encoder; native devices and gateway traffic go to `native`."""

    def __init__(self, native: NativeEncoder, sites: SiteDirectory, topics: DialectTopics | None = None) -> None:
        self.native = native
        self.topics = topics or DialectTopics()
        self.devices = native.devices
        self.unsupported: Counter[str] = Counter()
        self.fallback: Counter[str] = Counter()
        self._dialect: list[str] = []
        for d in self.devices:
            dialect = "shelly" if d.dialect in ("shelly", "shelly_gen2") else d.dialect
            if dialect != "native" and d.kind not in _SUPPORTED.get(dialect, frozenset()):
                self.fallback[f"{dialect}/{d.kind.value}"] += 1
                dialect = "native"
            self._dialect.append(dialect)
        self._code = np.array([DIALECTS.index(x) for x in self._dialect], dtype=np.int64)
        self._z2m_state: dict[str, dict[str, Any]] = {}
        self._frigate_last_stats: dict[str, float] = {}
        self._frigate_cams: dict[str, dict[str, tuple[float, float]]] = {}  # gateway -> camera -> (last t, fps)
        self._frigate_boot: dict[str, float] = {}
        self._gateways_with: dict[str, set[str]] = {}
        for d, dialect in zip(self.devices, self._dialect, strict=True):
            self._gateways_with.setdefault(dialect, set()).add(d.gateway)
            if dialect == "frigate":
                self._frigate_cams.setdefault(d.gateway, {})[d.id] = (-math.inf, 0.0)
        self._index = {d.id: i for i, d in enumerate(self.devices)}
        self._by_gateway: dict[str, list[int]] = {}
        for i, d in enumerate(self.devices):
            if self._dialect[i] != "native":
                self._by_gateway.setdefault(d.gateway, []).append(i)

    def dialect_of(self, device_id: str) -> str:
        return self._dialect[self._index[device_id]]

    # ------------------------------------------------------------------ prefixes

    def _z2m(self, d: Device) -> str:
        return self.topics.zigbee2mqtt.format(gateway=d.gateway)

    def _tasmota(self, prefix: str, d: Device, suffix: str) -> str:
        full = self.topics.tasmota_full_topic.replace("%prefix%", prefix).replace("%topic%", d.id).format(gateway=d.gateway)
        return full + suffix

    def _shelly(self, d: Device) -> str:
        return self.topics.shelly.format(device=d.id, gateway=d.gateway)

    def _frigate(self, gateway: str) -> str:
        return self.topics.frigate.format(gateway=gateway)

    def _esphome(self, d: Device) -> str:
        return self.topics.esphome.format(device=d.id, gateway=d.gateway)

    # ------------------------------------------------------------------ routing

    def birth(self, gateway: str, t: float) -> list[Outgoing]:
        """What a gateway's ecosystems publish when they (re)connect: bridge and device availability, retained."""
        out: list[Outgoing] = []
        if gateway in self._gateways_with.get("zigbee2mqtt", ()):
            base = self.topics.zigbee2mqtt.format(gateway=gateway)
            out.append(Outgoing(gateway, f"{base}/bridge/state", b'{"state":"online"}', 1, True, "zigbee2mqtt"))
        if gateway in self._gateways_with.get("frigate", ()):
            out.append(Outgoing(gateway, f"{self._frigate(gateway)}/available", b"online", 1, True, "frigate"))
        for i in self._by_gateway.get(gateway, ()):
            d = self.devices[i]
            match self._dialect[i]:
                case "zigbee2mqtt":
                    out.append(Outgoing(gateway, f"{self._z2m(d)}/{d.id}/availability", b'{"state":"online"}', 1, True, "zigbee2mqtt"))
                case "tasmota":
                    out.append(Outgoing(gateway, self._tasmota("tele", d, "LWT"), b"Online", 1, True, "tasmota"))
                case "shelly":
                    out.append(Outgoing(gateway, f"{self._shelly(d)}/online", b"true", 1, True, "shelly"))
                case "esphome":
                    out.append(Outgoing(gateway, f"{self._esphome(d)}/status", b"online", 1, True, "esphome"))
                case "frigate":
                    out.append(Outgoing(gateway, f"{self._frigate(gateway)}/{d.id}/status/detect", b"online", 0, False, "frigate"))
        return out

    def step(self, step: Step, by_device: dict[str, Device]) -> Iterator[Outgoing]:
        """Each record in its device's dialect; native devices' records and every drill-flagged one on the native contract."""
        for ev in step.events:
            d = by_device[ev.device]
            if ev.drill or self._dialect[self._index[d.id]] == "native":
                yield self.native.event(ev, d)
            else:
                yield from self.event(ev, d)
        for ch in step.availability:
            d = by_device[ch.device]
            if ch.drill or self._dialect[self._index[d.id]] == "native":
                yield self.native.availability(ch, d)
            else:
                yield from self.availability(ch, d)
        for batch in step.readings:
            native = (self._code[batch.devices] == 0) | batch.drill
            native_rows = np.flatnonzero(native)
            if len(native_rows):
                yield from self.native.readings(batch, native_rows.tolist())
            if len(native_rows) < len(batch):
                yield from self.readings(batch, np.flatnonzero(~native).tolist())
        for p in step.patrols:
            yield self.native.patrol(p)

    # ------------------------------------------------------------------ readings

    def readings(self, batch: ReadingBatch, rows: list[int]) -> Iterator[Outgoing]:
        names = list(batch.readings)
        columns = [batch.readings[n] for n in names]
        touched_frigate: dict[str, float] = {}
        for row in rows:
            i = int(batch.devices[row])
            d, dialect, t = self.devices[i], self._dialect[i], float(batch.t[row])
            values = {n: float(c[row]) for n, c in zip(names, columns, strict=True) if not math.isnan(c[row])}
            match dialect, d.kind:
                case "zigbee2mqtt", _:
                    yield self._z2m_update(d, t, self._z2m_readings(d, values))
                case "tasmota", _:
                    yield from self._tasmota_sensor(d, t, values)
                case "shelly", DeviceKind.ELECTRICAL:
                    yield self._shelly_switch(d, t, values)
                case "shelly", _:
                    pct = values.get("battery_pct", 100.0)
                    payload = {"id": 0, "battery": {"V": _r(2.6 + 0.4 * pct / 100, 2), "percent": round(pct)}, "external": {"present": False}}
                    yield Outgoing(d.gateway, f"{self._shelly(d)}/status/devicepower:0", _compact(payload), 0, False, "shelly")
                case "frigate", _:
                    cams = self._frigate_cams[d.gateway]
                    if d.gateway not in self._frigate_boot:  # first sight: every camera counts as alive until it misses
                        self._frigate_boot[d.gateway] = t
                        cams.update(dict.fromkeys(cams, (t, 25.0)))
                    cams[d.id] = (t, values.get("frame_rate_fps", 0.0))
                    touched_frigate[d.gateway] = max(touched_frigate.get(d.gateway, t), t)
                case "esphome", _:
                    for name, v in values.items():
                        obj = "battery_level" if name == "battery_pct" else name.rsplit("_", 1)[0].replace("@", "_")
                        yield Outgoing(d.gateway, f"{self._esphome(d)}/sensor/{obj}/state", f"{v:.1f}".encode(), 0, True, "esphome")
        for gateway, t in touched_frigate.items():
            if t - self._frigate_last_stats.get(gateway, -math.inf) >= _FRIGATE_STATS_S - 1e-6:
                self._frigate_last_stats[gateway] = t
                yield self._frigate_stats(gateway, t)

    def _z2m_readings(self, d: Device, v: dict[str, float]) -> dict[str, Any]:
        lq = 60 + (_stable(d.id) % 120)
        if d.kind is DeviceKind.ELECTRICAL:
            return {
                "current": _r(v.get("current_a", 0.0), 3),
                "energy": _r(v.get("energy_wh", 0.0) / 1000.0, 2),
                "leakage_current": round(v.get("residual_current_ma", 0.0)),
                "linkquality": lq,
                "power": round(v.get("power_w", 0.0)),
                "temperature": round(v.get("temperature_c", 0.0)),
                "voltage": _r(v.get("voltage_v", 0.0), 1),
            }
        pct = v.get("battery_pct")
        out: dict[str, Any] = {"linkquality": lq}
        if pct is not None:
            out["battery"] = round(pct)
            if d.kind is DeviceKind.SMOKE:
                out["battery_low"] = pct < 15.0
        return out

    def _z2m_update(self, d: Device, t: float, changes: dict[str, Any]) -> Outgoing:
        state = self._z2m_state.get(d.id)
        if state is None:
            state = self._z2m_state[d.id] = self._z2m_initial(d)
        state.update(changes)
        payload = _z2m_json(state)
        state.pop("action", None)  # an action is an event, not a state: it is not resent
        if "test" in state:
            state["test"] = False  # the test button springs back
        return Outgoing(d.gateway, f"{self._z2m(d)}/{d.id}", payload, 1 if ("smoke" in changes or "action" in changes) else 0, False, "zigbee2mqtt")

    @staticmethod
    def _z2m_initial(d: Device) -> dict[str, Any]:
        if d.kind is DeviceKind.SMOKE:  # Heiman HS1SA-E: fz.ias_smoke_alarm_1 + fz.battery
            return {
                "ac_status": False,
                "battery": 100,
                "battery_defect": False,
                "battery_low": False,
                "restore_reports": False,
                "smoke": False,
                "supervision_reports": False,
                "tamper": False,
                "test": False,
                "trouble": False,
            }
        if d.kind is DeviceKind.ELECTRICAL:  # Tuya ZBN-DJ-63 smart breaker
            return {"fault": "clear", "state": "ON"}
        return {}

    def _tasmota_sensor(self, d: Device, t: float, v: dict[str, float]) -> Iterator[Outgoing]:
        local = datetime.fromtimestamp(t, UTC) + _UTC_OFFSET
        stamp = local.strftime("%Y-%m-%dT%H:%M:%S")
        power, volts, amps = v.get("power_w", 0.0), v.get("voltage_v", 0.0), v.get("current_a", 0.0)
        apparent = volts * amps
        factor = min(1.0, power / apparent) if apparent > 0 else 0.0
        total_kwh = v.get("energy_wh", 0.0) / 1000.0
        energy = {
            "TotalStartTime": "2024-01-01T00:00:00",
            "Total": _r(total_kwh, 3),
            "Yesterday": _r(8.0 + (_stable(d.id) % 50) / 10, 3),
            "Today": _r((local.hour * 3600 + local.minute * 60) * power / 3.6e6 * 0.6, 3),
            "Period": round(power * d.report_interval_s / 3600.0),
            "Power": round(power),
            "ApparentPower": round(apparent),
            "ReactivePower": round(math.sqrt(max(apparent**2 - power**2, 0.0))),
            "Factor": _r(factor, 2),
            "Voltage": round(volts),
            "Current": _r(amps, 3),
        }
        sensor: dict[str, Any] = {"Time": stamp, "ENERGY": energy}
        if "temperature_c" in v:
            sensor["DS18B20"] = {"Id": f"{_stable(d.id) % 16**12:012X}", "Temperature": _r(v["temperature_c"], 1)}
            sensor["TempUnit"] = "C"
        yield Outgoing(d.gateway, self._tasmota("tele", d, "SENSOR"), _compact(sensor), 0, False, "tasmota")
        uptime = int(t) % 2_000_000
        state = {
            "Time": stamp,
            "Uptime": f"{uptime // 86400}T{uptime % 86400 // 3600:02d}:{uptime % 3600 // 60:02d}:{uptime % 60:02d}",
            "UptimeSec": uptime,
            "Heap": 28,
            "SleepMode": "Dynamic",
            "Sleep": 50,
            "LoadAvg": 19,
            "MqttCount": 1,
            "POWER": "ON",
            "Wifi": {"AP": 1, "SSId": "community-iot", "BSSId": "00:00:00:00:00:00", "Channel": 6, "RSSI": 80, "LinkCount": 1, "Downtime": "0T00:00:03"},
        }
        yield Outgoing(d.gateway, self._tasmota("tele", d, "STATE"), _compact(state), 0, False, "tasmota")

    def _shelly_switch(self, d: Device, t: float, v: dict[str, float], errors: list[str] | None = None) -> Outgoing:
        temp = v.get("temperature_c", 30.0)
        minute_ts = int(t) // 60 * 60
        per_min = _r(v.get("power_w", 0.0) / 60.0, 3)
        status: dict[str, Any] = {
            "id": 0,
            "source": "timer",
            "output": not errors,
            "apower": _r(v.get("power_w", 0.0), 1) if not errors else 0.0,
            "voltage": _r(v.get("voltage_v", 0.0), 1),
            "freq": 50.0,
            "current": _r(v.get("current_a", 0.0), 3) if not errors else 0.0,
            "aenergy": {"total": _r(v.get("energy_wh", 0.0), 3), "by_minute": [per_min, per_min, per_min], "minute_ts": minute_ts},
            "temperature": {"tC": _r(temp, 1), "tF": _r(temp * 9 / 5 + 32, 1)},
        }
        if errors:
            status["errors"] = errors
        return Outgoing(d.gateway, f"{self._shelly(d)}/status/switch:0", _compact(status), 1 if errors else 0, False, "shelly")

    def _frigate_stats(self, gateway: str, t: float) -> Outgoing:
        cams: dict[str, Any] = {}
        for n, (cam, (last, fps)) in enumerate(sorted(self._frigate_cams[gateway].items())):
            alive = t - last <= 1.5 * _FRIGATE_STATS_S
            rate = fps if alive else 0.0
            cams[cam] = {
                "camera_fps": rate,
                "capture_pid": 400 + 3 * n,
                "detection_fps": _r(rate * 0.2, 1),
                "pid": 401 + 3 * n,
                "process_fps": rate,
                "skipped_fps": 0.0,
            }
        stats = {
            "cameras": cams,
            "camera_fps": _r(sum(c["camera_fps"] for c in cams.values()), 1),
            "detection_fps": _r(sum(c["detection_fps"] for c in cams.values()), 1),
            "service": {"uptime": int(t - self._frigate_boot.get(gateway, t)), "version": "0.16.0"},
        }
        return Outgoing(gateway, f"{self._frigate(gateway)}/stats", json.dumps(stats).encode(), 0, False, "frigate")

    # ------------------------------------------------------------------ events and availability

    def event(self, ev: SimEvent, d: Device) -> Iterator[Outgoing]:
        dialect = self._dialect[self._index[d.id]]
        e = ev.event
        if dialect == "zigbee2mqtt":
            changes: dict[EventKind, dict[str, Any]] = {
                EventKind.SMOKE_ALARM: {"smoke": True},
                EventKind.SMOKE_CLEAR: {"smoke": False},
                EventKind.SELF_TEST: {"test": True},
                EventKind.TAMPER: {"tamper": True},
                EventKind.TAMPER_CLEAR: {"tamper": False},
                EventKind.SOS_PRESS: {"action": "emergency"},
            }
            change = changes.get(e)
            if e is EventKind.LOW_BATTERY:
                change = {"battery": round(ev.value or 10.0)} | ({"battery_low": True} if d.kind is DeviceKind.SMOKE else {})
            if d.kind is DeviceKind.ELECTRICAL and ev.detail and ev.detail.startswith("residual current"):
                change = {"fault": "leakagecurr_alarm", "state": "OFF"} if e is EventKind.ELECTRICAL_ALARM else {"fault": "clear", "state": "ON"}
            if change is not None and (d.kind is DeviceKind.SMOKE or "smoke" not in change):
                yield self._z2m_update(d, ev.t, change)
                return
        elif dialect == "shelly":
            if e in (EventKind.SMOKE_ALARM, EventKind.SMOKE_CLEAR):
                smoke = {"id": 0, "alarm": e is EventKind.SMOKE_ALARM, "mute": False}
                yield Outgoing(d.gateway, f"{self._shelly(d)}/status/smoke:0", _compact(smoke), 1, False, "shelly")
                return
            if e is EventKind.LOW_BATTERY:
                payload: dict[str, Any] = {"id": 0, "battery": {"V": 2.65, "percent": round(ev.value or 10.0)}, "external": {"present": False}}
                yield Outgoing(d.gateway, f"{self._shelly(d)}/status/devicepower:0", _compact(payload), 1, False, "shelly")
                return
            if e is EventKind.ELECTRICAL_ALARM and ev.detail and ev.detail.startswith("cable temperature"):
                yield self._shelly_switch(d, ev.t, {"temperature_c": ev.value or 90.0, "voltage_v": 220.0}, errors=["overtemp"])
                return
        elif dialect == "esphome":
            binary = {
                EventKind.SMOKE_ALARM: ("smoke_detector", b"ON"),
                EventKind.SMOKE_CLEAR: ("smoke_detector", b"OFF"),
                EventKind.TAMPER: ("tamper", b"ON"),
                EventKind.TAMPER_CLEAR: ("tamper", b"OFF"),
            }.get(e)
            if binary is not None:
                yield Outgoing(d.gateway, f"{self._esphome(d)}/binary_sensor/{binary[0]}/state", binary[1], 1, True, "esphome")
                return
            if e is EventKind.LOW_BATTERY:
                yield Outgoing(d.gateway, f"{self._esphome(d)}/sensor/battery_level/state", f"{ev.value or 10.0:.1f}".encode(), 1, True, "esphome")
                return
        self.unsupported[f"{dialect}/{e.value}"] += 1

    def availability(self, ch: AvailabilityChange, d: Device) -> Iterator[Outgoing]:
        dialect = self._dialect[self._index[d.id]]
        if dialect == "frigate":
            state = b"online" if ch.state is AvailabilityState.ONLINE else b"offline"
            yield Outgoing(d.gateway, f"{self._frigate(d.gateway)}/{d.id}/status/detect", state, 1, False, "frigate")
        else:
            self.unsupported[f"{dialect}/availability"] += 1
