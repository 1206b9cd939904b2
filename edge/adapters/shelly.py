"""Shelly Gen2/Gen3: `{prefix}/online`, `{prefix}/status/{component:id}`, `{prefix}/events/rpc`.

How this works: each configured device key is its MQTT topic prefix (by default the device id, e.g.
`shellyplus1pm-a8032ab13004`). `status/{component}` and NotifyFullStatus carry whole component statuses;
NotifyStatus carries only what changed, so it is merged into the last known status of that component:
alarms (switch `errors`, smoke `alarm`, flood `alarm`) are judged on the merged status, while readings are
sent only for the keys the delta carried (re-sending a stale voltage with a new timestamp would be a lie).
Energy (`aenergy.total`) is already in Wh. Unknown keys (newer firmware: `tag`, `counts`) are ignored.
Energy meters speak their own fields (Shelly API docs, gen2/ComponentsAndServices/EM, EM1, EMData, EM1Data):
`em1:N` (Pro EM, EM Gen3, 3EM in monophase) has `act_power` / `aprt_power` / `current` / `voltage` / `pf` / `freq`,
one channel per N; `em:0` (Pro 3EM, 3EM Gen3 triphase) has the same per phase with an `a_` / `b_` / `c_` prefix (phase
N is channel @N), `n_current`, and `total_act_power` / `total_aprt_power` / `total_current` for the device; `emdata`
and `em1data` carry energy counters in Wh (`total_act`, `a_total_act_energy`..., `total_act_energy`). The switch-like
`apower` is not in them: reading only `apower` silently dropped a Pro 3EM's power while keeping its voltage.
A full status with uptime below `restart_uptime_s` (or falling) reports RESTARTED: possibly a power blip.
NotifyEvent carries transient events: smoke alarm/alarm_off/alarm_test, button pushes on an SOS device;
anything else (config_changed...) is informational. Shelly's `ts` (epoch seconds, NTP) is the source time.
"""

from __future__ import annotations

from typing import Any, Final

from broker.kinds import AvailabilityState, DeviceKind, EventKind
from edge.adapters.base import Adapter, Context, Emitter, KnownDevice, Outcome, RejectCode, as_bool, as_number, decode_json, on_off

__all__ = ["ShellyAdapter"]

_METERED: Final = frozenset({"switch", "pm1", "cover", "light"})
# EM1 (one channel) and EM (per phase, prefixed a_/b_/c_): status key -> metric stem (Shelly API docs, EM1/EM status)
_EM_FIELDS: Final = (
    ("act_power", "power_w"),
    ("aprt_power", "apparent_power_va"),
    ("current", "current_a"),
    ("voltage", "voltage_v"),
    ("pf", "power_factor_ratio"),
    ("freq", "frequency_hz"),
)
_PHASES: Final = ("a", "b", "c")
_BUTTON_EVENTS: Final = frozenset({"single_push", "double_push", "triple_push", "long_push", "btn_down"})


def _ts_ms(value: object) -> int | None:
    """Shelly's `ts` (seconds) in ms, or None (the gateway's clock is used) unless it is a time the contract
    can carry: a positive int64 of ms. A bogus device clock must not keep a smoke alarm from being sent."""
    n = as_number(value)
    return round(n * 1000) if n is not None and 0 < n * 1000 < 2**63 else None


class ShellyAdapter(Adapter):
    dialect = "shelly"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._status: dict[tuple[str, str], dict[str, Any]] = {}
        self._uptime: dict[str, float] = {}

    def _handle(self, topic: str, payload: bytes, retained: bool, ctx: Context) -> Outcome:
        first, _, rest = topic.partition("/")
        dev = self.devices.get(first)
        if dev is None:  # a configured prefix with more than one level
            for key, candidate in self.devices.items():
                if topic.startswith(key + "/"):
                    dev, rest = candidate, topic[len(key) + 1 :]
                    break
        if dev is None:
            return self.unknown_device(topic.split("/", 1)[0], topic)
        out = Emitter(self.name, ctx)
        if rest == "online":
            state = on_off(payload.decode("utf-8", errors="replace"))
            if state is None:
                return self.reject(RejectCode.MALFORMED, "online must be 'true' or 'false'", dev, topic)
            if state:
                out.availability(dev, AvailabilityState.ONLINE, "shelly online")
            else:
                out.availability(dev, AvailabilityState.OFFLINE, "shelly offline (Last Will)")
            return out.done(device=dev)
        if rest.startswith("status/"):
            obj, err = decode_json(payload)
            if err or not isinstance(obj, dict):
                return self.reject(RejectCode.MALFORMED, err or "a component status must be a JSON object", dev, topic)
            out.hear(dev)
            self._component(out, dev, rest[len("status/") :], obj, full=True, ts_ms=None)
            return out.done("no reading or alarm change in this status", dev)
        if rest == "events/rpc":
            return self._rpc(out, dev, topic, payload)
        return out.done(f"shelly topic {rest!r} (commands, RPC requests) carries nothing for safety monitoring", dev)

    def _rpc(self, out: Emitter, dev: KnownDevice, topic: str, payload: bytes) -> Outcome:
        obj, err = decode_json(payload)
        if err or not isinstance(obj, dict) or not isinstance(obj.get("params"), dict):
            return self.reject(RejectCode.MALFORMED, err or "expected a JSON-RPC notification with params", dev, topic)
        method, params = obj.get("method"), obj["params"]
        ts_ms = _ts_ms(params.get("ts"))
        out.hear(dev)
        if method in ("NotifyStatus", "NotifyFullStatus"):
            full = method == "NotifyFullStatus"
            for component, status in params.items():
                if isinstance(status, dict):
                    self._component(out, dev, component, status, full=full, ts_ms=ts_ms)
            return out.done(f"{method}: no reading or alarm change", dev)
        if method == "NotifyEvent":
            events = params.get("events")
            if not isinstance(events, list):
                return self.reject(RejectCode.MALFORMED, "NotifyEvent without an events list", dev, topic)
            names = []
            for ev in events:
                if isinstance(ev, dict):
                    names.append(f"{ev.get('component')}:{ev.get('event')}")
                    self._event(out, dev, ev, ts_ms)
            return out.done(f"NotifyEvent {', '.join(names)}: informational", dev)
        return self.reject(RejectCode.UNKNOWN_TOPIC, f"RPC notification method {method!r} is not one we read", dev, topic)

    def _event(self, out: Emitter, dev: KnownDevice, ev: dict[str, Any], ts_ms: int | None) -> None:
        component = str(ev.get("component", ""))
        name = str(ev.get("event", ""))
        ts = _ts_ms(ev.get("ts")) or ts_ms
        if component.startswith("smoke"):
            if name == "alarm" and self.latches.update(dev.key, f"{component}:alarm", True) == "rise":
                out.event(dev, EventKind.SMOKE_ALARM, detail="shelly smoke alarm", source_ts_ms=ts)
            elif name == "alarm_off" and self.latches.update(dev.key, f"{component}:alarm", False) == "fall":
                out.event(dev, EventKind.SMOKE_CLEAR, detail="shelly smoke alarm off", source_ts_ms=ts)
            elif name == "alarm_test":
                out.event(dev, EventKind.SELF_TEST, detail="shelly smoke test: not a fire", source_ts_ms=ts)
        elif component.startswith("input") and name in _BUTTON_EVENTS and dev.kind is DeviceKind.SOS:
            out.event(dev, EventKind.SOS_PRESS, detail=f"shelly {component} {name}", needs_callback=dev.callback_verify, source_ts_ms=ts)

    def _component(self, out: Emitter, dev: KnownDevice, component: str, status: dict[str, Any], *, full: bool, ts_ms: int | None) -> None:
        kind, _, index = component.partition(":")
        merged = dict(status) if full else {**self._status.get((dev.key, component), {}), **status}
        self._status[(dev.key, component)] = merged
        if kind in _METERED:
            self._metered(out, dev, component=component, index=index, status=status, merged=merged, ts_ms=ts_ms)
        elif kind in ("em1", "em", "em1data", "emdata"):
            self._energy_meter(out, dev, kind=kind, index=index, status=status, ts_ms=ts_ms)
            self._errors(out, dev, component, merged, ts_ms, meter=True)
        elif kind == "smoke":
            edge = self.latches.update(dev.key, f"{component}:alarm", as_bool(merged.get("alarm")))
            if edge == "rise":
                out.event(dev, EventKind.SMOKE_ALARM, detail="shelly smoke alarm=true", source_ts_ms=ts_ms)
            elif edge == "fall":
                out.event(dev, EventKind.SMOKE_CLEAR, detail="shelly smoke alarm=false", source_ts_ms=ts_ms)
        elif kind == "flood":
            edge = self.latches.update(dev.key, f"{component}:alarm", as_bool(merged.get("alarm")))
            if edge is not None:
                out.event(dev, EventKind.WATER_LEAK if edge == "rise" else EventKind.WATER_LEAK_CLEAR, source_ts_ms=ts_ms)
        elif kind == "sys":
            self._sys(out, dev, status, full=full, ts_ms=ts_ms)
        elif kind == "wifi":
            out.readings(dev, {"rssi_dbm": as_number(status.get("rssi"))}, ts_ms)
        elif kind == "temperature":
            out.readings(dev, {"temperature_c": as_number(status.get("tC"))}, ts_ms)
        elif kind == "humidity":
            out.readings(dev, {"humidity_pct": as_number(status.get("rh"))}, ts_ms)
        elif kind == "devicepower":
            battery = status.get("battery")
            if isinstance(battery, dict):
                out.readings(dev, {"battery_pct": as_number(battery.get("percent")), "battery_voltage_v": as_number(battery.get("V"))}, ts_ms)

    def _metered(
        self, out: Emitter, dev: KnownDevice, *, component: str, index: str, status: dict[str, Any], merged: dict[str, Any], ts_ms: int | None
    ) -> None:
        if index.isdigit() and not (index.isascii() and len(index) <= 2):
            return  # no Shelly has such a channel (a Pro 4PM has switch:0..3); int() refuses "²" and 5000 digits
        ch = int(index) if index.isdigit() else 0
        suffix = f"@{ch + 1}" if dev.channels > 1 or ch > 0 else ""
        energy = status.get("aenergy")
        temperature = status.get("temperature")
        output = as_bool(status.get("output"))
        readings: dict[str, float | None] = {
            f"power_w{suffix}": as_number(status.get("apower")),
            f"voltage_v{suffix}": as_number(status.get("voltage")),
            f"current_a{suffix}": as_number(status.get("current")),
            f"frequency_hz{suffix}": as_number(status.get("freq")),
            f"power_factor_ratio{suffix}": as_number(status.get("pf")),
            f"energy_wh{suffix}": as_number(energy.get("total")) if isinstance(energy, dict) else None,
            "device_temperature_c": as_number(temperature.get("tC")) if isinstance(temperature, dict) else None,
            f"relay_on_ratio{suffix}": None if output is None else float(output),
        }
        out.readings(dev, readings, ts_ms)
        self._errors(out, dev, component, merged, ts_ms)

    def _energy_meter(self, out: Emitter, dev: KnownDevice, *, kind: str, index: str, status: dict[str, Any], ts_ms: int | None) -> None:
        """EM1 / EM1Data: channel N is `@N+1`; EM / EMData: phases a, b, c are `@1`..`@3`, totals carry no channel."""
        if index.isdigit() and not (index.isascii() and len(index) <= 2):
            return
        readings: dict[str, float | None] = {}
        if kind in ("em1", "em1data"):
            ch = int(index) if index.isdigit() else 0
            suffix = f"@{ch + 1}" if dev.channels > 1 or ch > 0 else ""
            if kind == "em1":
                readings = {f"{metric}{suffix}": as_number(status.get(key)) for key, metric in _EM_FIELDS}
            else:
                readings = {f"energy_wh{suffix}": as_number(status.get("total_act_energy")),
                            f"returned_energy_wh{suffix}": as_number(status.get("total_act_ret_energy"))}
        elif kind == "em":
            for n, phase in enumerate(_PHASES, start=1):
                readings |= {f"{metric}@{n}": as_number(status.get(f"{phase}_{key}")) for key, metric in _EM_FIELDS}
            readings |= {
                "power_w": as_number(status.get("total_act_power")),
                "apparent_power_va": as_number(status.get("total_aprt_power")),
                "current_a": as_number(status.get("total_current")),
                "neutral_current_a": as_number(status.get("n_current")),
            }
        else:  # emdata
            for n, phase in enumerate(_PHASES, start=1):
                readings |= {f"energy_wh@{n}": as_number(status.get(f"{phase}_total_act_energy")),
                             f"returned_energy_wh@{n}": as_number(status.get(f"{phase}_total_act_ret_energy"))}
            readings |= {"energy_wh": as_number(status.get("total_act")), "returned_energy_wh": as_number(status.get("total_act_ret"))}
        out.readings(dev, readings, ts_ms)

    def _errors(self, out: Emitter, dev: KnownDevice, component: str, merged: dict[str, Any], ts_ms: int | None, *, meter: bool = False) -> None:
        """A switch's `errors` are protections that tripped (overpower, overtemp...): an electrical alarm. An energy
        meter's (`power_meter_failure`, `out_of_range:...`, `phase_sequence`) say the meter cannot be trusted: a fault."""
        errors = merged.get("errors")
        active = sorted(str(e) for e in errors) if isinstance(errors, list) else []
        edge = self.latches.update(dev.key, f"{component}:errors", bool(active))
        if edge == "rise":
            rise, what = (EventKind.FAULT, "meter error") if meter else (EventKind.ELECTRICAL_ALARM, "protection tripped")
            out.event(dev, rise, detail=f"shelly {component} {what}: {', '.join(active)}", source_ts_ms=ts_ms)
        elif edge == "fall":
            out.event(dev, EventKind.FAULT_CLEAR if meter else EventKind.ELECTRICAL_CLEAR, detail=f"shelly {component} errors cleared", source_ts_ms=ts_ms)

    def _sys(self, out: Emitter, dev: KnownDevice, status: dict[str, Any], *, full: bool, ts_ms: int | None) -> None:
        uptime = as_number(status.get("uptime"))
        if uptime is None:
            return
        out.readings(dev, {"uptime_s": uptime}, ts_ms)
        before = self._uptime.get(dev.key)
        self._uptime[dev.key] = uptime
        if (before is not None and uptime < before) or (full and before is None and uptime < self.config.restart_uptime_s):
            out.event(dev, EventKind.RESTARTED, detail=f"shelly restarted (uptime {uptime:g} s): possibly a power blip", value=uptime, source_ts_ms=ts_ms)
