"""Zigbee2MQTT: `{base}/{friendly name}` JSON state, `/availability`, `/action`, and `{base}/bridge/state`.

How this works: Zigbee2MQTT resends the device's whole state on every update, so every boolean alarm goes
through `Latches` (event on a known false→true change, clear on true→false, `null` changes nothing). A
smoke detector's test button (`test` / `self_test`) is a SELF_TEST, never a fire; while the test is held,
`smoke` is not trusted. `action` is an event, not a state: on an SOS device an emergency/press action raises
SOS_PRESS (with `needs_callback` when the device is configured so, and always when it reports 0 % battery,
the mark of a button that fires by itself), and the same press seen again on the `/action` topic within
`sos_dedupe_s` is one press. An empty retained availability payload is a cleared topic, not "offline".
`{base}/bridge/state` offline makes every device behind the bridge UNKNOWN; online re-arms their liveness.
Friendly names may contain '/', so the device is found by its full remaining topic.

Checked against the exposes of Koenkk/zigbee-herdsman-converters (src/lib/exposes.ts, src/lib/modernExtend.ts
iasZoneAlarm, src/lib/tuya.ts, src/converters/fromZigbee.ts): a metering plug's frequency is `ac_frequency`, its
apparent power `power_apparent`, returned energy `produced_energy` (kWh), phases B and C `…_phase_b`/`…_phase_c`; an
IAS zone with both alarm bits reports `smoke_alarm_1`/`smoke_alarm_2`; an IAS SOS zone reports `sos: true` (an SOS
press whatever the device's kind); Tuya smoke detectors report `self_test` as an enum (`checking`, `check_success`,
`check_failure`), and `fault`, `fault_alarm`, `device_fault` as booleans (a detector that cannot detect).
"""

from __future__ import annotations

from typing import Any, Final

from broker.kinds import AvailabilityState, DeviceKind, EventKind
from edge.adapters.base import (
    Adapter,
    Context,
    Emitter,
    KnownDevice,
    Outcome,
    RejectCode,
    as_bool,
    as_number,
    decode_json,
)

__all__ = ["Zigbee2MqttAdapter"]

# Zigbee2MQTT key -> (our metric, scale). Energy is reported in kWh; we carry Wh.
_METRICS: Final[dict[str, tuple[str, float]]] = {
    "temperature": ("temperature_c", 1.0),
    "device_temperature": ("device_temperature_c", 1.0),
    "humidity": ("humidity_pct", 1.0),
    "battery": ("battery_pct", 1.0),
    "linkquality": ("link_quality_lqi", 1.0),
    "power": ("power_w", 1.0),
    "current": ("current_a", 1.0),
    "energy": ("energy_wh", 1000.0),
    "leakage_current": ("residual_current_ma", 1.0),
    "illuminance_lux": ("illuminance_lux", 1.0),
    "soil_moisture": ("soil_moisture_pct", 1.0),
    "co2": ("co2_ppm", 1.0),
    "frequency": ("frequency_hz", 1.0),
    "ac_frequency": ("frequency_hz", 1.0),  # the exposes' name (e.ac_frequency); `frequency` kept for older converters
    "power_factor": ("power_factor_ratio", 1.0),
    "power_apparent": ("apparent_power_va", 1.0),
    "power_reactive": ("reactive_power_var", 1.0),
    "produced_energy": ("returned_energy_wh", 1000.0),
    # Three-phase meters: the unsuffixed power/current/voltage is phase A (the converter's activePower, rmsCurrent...).
    "power_phase_b": ("power_w@2", 1.0),
    "power_phase_c": ("power_w@3", 1.0),
    "current_phase_b": ("current_a@2", 1.0),
    "current_phase_c": ("current_a@3", 1.0),
    "voltage_phase_b": ("voltage_v@2", 1.0),
    "voltage_phase_c": ("voltage_v@3", 1.0),
}
# Actions that mean "someone pressed the emergency button" on an SOS-class device (Tuya: emergency; Heiman
# HS1EB: single/double/hold; others: sos/panic). "off" and "" are resets, never a press.
_SOS_ACTIONS: Final = frozenset({"emergency", "sos", "panic", "single", "double", "hold", "long", "press"})
_NO_FAULT: Final = frozenset({"", "clear", "none", "normal", "no_fault", "ok"})
# (flag, event on rise, event on fall)
_ALARM_FLAGS: Final = (
    ("tamper", EventKind.TAMPER, EventKind.TAMPER_CLEAR),
    ("water_leak", EventKind.WATER_LEAK, EventKind.WATER_LEAK_CLEAR),
    ("trouble", EventKind.FAULT, EventKind.FAULT_CLEAR),
    ("battery_defect", EventKind.FAULT, EventKind.FAULT_CLEAR),
    ("fault_alarm", EventKind.FAULT, EventKind.FAULT_CLEAR),  # tuya.exposes.faultAlarm
    ("device_fault", EventKind.FAULT, EventKind.FAULT_CLEAR),  # Tuya smoke detectors
)
# Tuya `self_test` enum values (lower-cased, spaces as '_'): checking is the test in progress.
_SELF_TEST_RUNNING: Final = frozenset({"checking"})
_SELF_TEST_FAILED: Final = frozenset({"check_failure", "failure"})


def _any_true(*values: object) -> bool | None:
    """True if any is true, False if all known ones are false, None if none is known."""
    known = [v for v in values if isinstance(v, bool)]
    return any(known) if known else None


def _word(value: object) -> str | None:
    return value.strip().lower().replace(" ", "_") if isinstance(value, str) else None


def _availability(payload: bytes) -> tuple[str | None, str | None]:
    """('online'|'offline', None), (None, None) for an empty (cleared) payload, or (None, why)."""
    text = payload.decode("utf-8", errors="replace").strip()
    if text == "":
        return None, None
    if text.startswith("{"):
        obj, err = decode_json(payload)
        if err or not isinstance(obj, dict) or not isinstance(obj.get("state"), str):
            return None, 'expected {"state": "online"|"offline"}'
        text = obj["state"]
    if text.lower() in ("online", "offline"):
        return text.lower(), None
    return None, f"availability {text[:40]!r} is neither online nor offline"


class Zigbee2MqttAdapter(Adapter):
    dialect = "zigbee2mqtt"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.base = self.prefixes[0]
        self._last_sos_ms: dict[str, int] = {}

    def _handle(self, topic: str, payload: bytes, retained: bool, ctx: Context) -> Outcome:
        rest = topic[len(self.base) + 1 :]
        if rest == "bridge/state":
            return self._bridge(topic, payload, ctx)
        if rest.startswith("bridge/"):
            return Emitter(self.name, ctx).done("bridge housekeeping topic (logging, devices, info): nothing for safety monitoring")
        dev = self.devices.get(rest)
        if dev is not None:
            return self._state(dev, topic, payload, ctx)
        key, _, leaf = rest.rpartition("/")
        dev = self.devices.get(key)
        if dev is None:
            return self.unknown_device(rest, topic)
        if leaf == "availability":
            return self._device_availability(dev, topic, payload, ctx)
        if leaf == "action":
            return self._action_topic(dev, topic, payload, ctx)
        if leaf in ("set", "get"):
            return Emitter(self.name, ctx).done(f"a command to the device ({leaf}), not a report from it", dev)
        return self.reject(RejectCode.UNKNOWN_TOPIC, f"zigbee2mqtt topic {leaf!r} under device {key!r} is not one we read", dev, topic)

    def _bridge(self, topic: str, payload: bytes, ctx: Context) -> Outcome:
        state, err = _availability(payload)
        out = Emitter(self.name, ctx)
        if err:
            return self.reject(RejectCode.MALFORMED, err, topic=topic)
        if state is None:
            return out.done("bridge state cleared (empty retained payload): nothing to conclude")
        if state == "offline":
            for dev in self.devices.values():
                out.availability(dev, AvailabilityState.UNKNOWN, f"zigbee2mqtt bridge {self.base!r} is offline")
            return out.done(f"bridge offline, no devices configured behind {self.base!r}")
        out.rearm(self.devices.values())
        return out.done("bridge online: devices behind it are trusted again when they report (liveness re-armed)")

    def _device_availability(self, dev: KnownDevice, topic: str, payload: bytes, ctx: Context) -> Outcome:
        state, err = _availability(payload)
        out = Emitter(self.name, ctx)
        if err:
            return self.reject(RejectCode.MALFORMED, err, dev, topic)
        if state is None:
            return out.done("retained availability cleared (device renamed or removed): not offline", dev)
        if state == "online":
            out.availability(dev, AvailabilityState.ONLINE, "zigbee2mqtt availability online")
        else:
            out.availability(dev, AvailabilityState.OFFLINE, "zigbee2mqtt availability offline (missed check-in)")
        return out.done(device=dev)

    def _action_topic(self, dev: KnownDevice, topic: str, payload: bytes, ctx: Context) -> Outcome:
        out = Emitter(self.name, ctx)
        action = payload.decode("utf-8", errors="replace").strip()
        out.hear(dev)
        self._sos(out, dev, action, None)
        return out.done("no SOS press in this action (reset, non-SOS device, or the same press already seen)", dev)

    def _sos(self, out: Emitter, dev: KnownDevice, action: object, battery: float | None) -> None:
        if dev.kind is not DeviceKind.SOS or not isinstance(action, str) or action.lower() not in _SOS_ACTIONS:
            return
        self._press(out, dev, f"zigbee2mqtt action {action!r}", battery)

    def _press(self, out: Emitter, dev: KnownDevice, detail: str, battery: float | None) -> None:
        now = out.ctx.now_ms
        last = self._last_sos_ms.get(dev.key)
        self._last_sos_ms[dev.key] = now
        if last is not None and now - last < self.config.sos_dedupe_s * 1000:
            return
        needs_callback = dev.callback_verify
        if battery == 0:
            detail += "; battery reports 0 %: possibly a spurious trigger, verify by call-back"
            needs_callback = True
        out.event(dev, EventKind.SOS_PRESS, detail=detail, needs_callback=needs_callback)

    def _state(self, dev: KnownDevice, topic: str, payload: bytes, ctx: Context) -> Outcome:
        obj, err = decode_json(payload)
        if err:
            return self.reject(RejectCode.MALFORMED, err, dev, topic)
        if not isinstance(obj, dict):
            return self.reject(RejectCode.MALFORMED, "a zigbee2mqtt device state must be a JSON object", dev, topic)
        out = Emitter(self.name, ctx)
        out.hear(dev)
        self._events(out, dev, obj)
        out.readings(dev, self._readings(dev, obj))
        return out.done("no reading and no state change in this report", dev)

    def _readings(self, dev: KnownDevice, obj: dict[str, Any]) -> dict[str, float | None]:
        readings: dict[str, float | None] = {}
        for key, (metric, scale) in _METRICS.items():
            v = as_number(obj.get(key))
            if v is not None:
                readings[metric] = v * scale
        volts = as_number(obj.get("voltage"))
        if volts is not None:
            # Metering plugs and breakers report mains volts; battery devices report their battery in mV.
            if dev.kind is DeviceKind.ELECTRICAL:
                readings["voltage_v"] = volts
            else:
                readings["battery_voltage_v"] = volts / 1000.0
        state = obj.get("state")
        if dev.kind is DeviceKind.ELECTRICAL and isinstance(state, str) and state.upper() in ("ON", "OFF"):
            readings["relay_on_ratio"] = 1.0 if state.upper() == "ON" else 0.0
        return readings

    def _events(self, out: Emitter, dev: KnownDevice, obj: dict[str, Any]) -> None:
        latches, key = self.latches, dev.key
        testing = as_bool(obj.get("test"))
        self_test = obj.get("self_test")
        if testing is None:
            testing = as_bool(self_test)
        if testing is None and (word := _word(self_test)) is not None:
            testing = word in _SELF_TEST_RUNNING
        if latches.update(key, "test", testing) == "rise":
            out.event(dev, EventKind.SELF_TEST, detail="test button pressed: a self-test, not a fire")
        failed = [w for w in (_word(self_test), _word(obj.get("self_test_result"))) if w is not None]
        edge = latches.update(key, "self_test_failed", any(w in _SELF_TEST_FAILED for w in failed) if failed else None)
        if edge is not None:
            out.event(dev, EventKind.FAULT if edge == "rise" else EventKind.FAULT_CLEAR,
                      detail="self-test failed: the detector cannot be trusted" if edge == "rise" else "self-test passed")
        smoke = _any_true(obj.get("smoke"), obj.get("smoke_alarm_1"), obj.get("smoke_alarm_2"))
        if testing is not True:  # while the test is held, the detector's smoke report is the test itself
            edge = latches.update(key, "smoke", smoke)
            if edge == "rise":
                out.event(dev, EventKind.SMOKE_ALARM, detail="zigbee2mqtt smoke=true")
            elif edge == "fall":
                out.event(dev, EventKind.SMOKE_CLEAR, detail="zigbee2mqtt smoke=false")
        for flag, rise, fall in _ALARM_FLAGS:
            edge = latches.update(key, flag, as_bool(obj.get(flag)))
            if edge is not None:
                out.event(dev, rise if edge == "rise" else fall, detail=f"zigbee2mqtt {flag}={edge == 'rise'}".lower())
        if isinstance(obj.get("fault"), bool):  # tuya.exposes.fault: a detector's own fault (a breaker's is a string)
            edge = latches.update(key, "fault_flag", obj["fault"])
            if edge is not None:
                out.event(dev, EventKind.FAULT if edge == "rise" else EventKind.FAULT_CLEAR, detail=f"zigbee2mqtt fault={edge == 'rise'}".lower())
        battery = as_number(obj.get("battery"))
        if latches.update(key, "sos", as_bool(obj.get("sos"))) == "rise":  # IAS SOS zone: a press on any device
            self._press(out, dev, "zigbee2mqtt sos=true", battery)
        low = as_bool(obj.get("battery_low"))
        if low is None and isinstance(obj.get("battery_state"), str):
            low = obj["battery_state"].lower() == "low"
        if low is None and battery is not None:
            low = battery <= 0
        edge = latches.update(key, "battery_low", low)
        if edge == "rise":
            out.event(dev, EventKind.LOW_BATTERY, detail="battery low", value=battery)
        elif edge == "fall":
            out.event(dev, EventKind.BATTERY_OK, value=battery)
        fault = obj.get("fault")
        if isinstance(fault, str):
            edge = latches.update(key, "fault", fault.lower() not in _NO_FAULT)
            leak = as_number(obj.get("leakage_current"))
            if edge == "rise":
                out.event(dev, EventKind.ELECTRICAL_ALARM, detail=f"breaker fault {fault!r}", value=leak if "leak" in fault.lower() else None)
            elif edge == "fall":
                out.event(dev, EventKind.ELECTRICAL_CLEAR, detail="breaker fault cleared")
        self._sos(out, dev, obj.get("action"), battery)
