"""Tasmota: `tele/{topic}/LWT|STATE|SENSOR|MARGINS` and `stat/{topic}/RESULT|WARNING|POWER` (default FullTopic).

How this works: the device is found by its Tasmota %topic% (second level). LWT Online/Offline is
availability. STATE is the periodic health heartbeat (uptime, Wi-Fi, relay state). SENSOR carries ENERGY
(Total kWh → energy_wh; Power/Current/... become arrays on multi-channel meters → power_w@1, power_w@2) and
temperature probes (an ANALOG or chip temperature is the device's own: device_temperature_c). WARNING
MaxPowerReached is an overload trip; RESULT PowerMonitor ON is the relay restored after it. MARGINS
PowerHigh/VoltageLow/... ON/OFF are threshold alarms and clears (older firmware sends the inner object only).
Tasmota's "Time" has no time zone, so the gateway's clock stamps the messages.

Checked against the firmware (arendst/Tasmota tasmota/tasmota_xdrv_driver/xdrv_03_energy.ino and, for ESP32,
xdrv_03_esp32_energy.ino): ENERGY values are a scalar or one per phase (Total and ExportActive are summed unless
SetOption129); the ESP32 driver numbers its MARGINS, WARNING and PowerMonitor keys per phase (`PowerHigh1`,
`MaxPowerReached2`, `PowerMonitor1`); PowerDelta in MARGINS is a change in watts, not a threshold; MaxEnergyReached is
the daily energy quota (MaxEnergy), not a hazard; PowerMonitor goes to RESULT, or to its own topic with SetOption4.
"""

from __future__ import annotations

from typing import Any, Final

from broker.kinds import AvailabilityState, EventKind
from edge.adapters.base import Adapter, Context, Emitter, KnownDevice, Outcome, RejectCode, as_number, decode_json, on_off

__all__ = ["TasmotaAdapter"]

# ENERGY key -> (metric, scale); scalars or one value per channel.
_ENERGY: Final[dict[str, tuple[str, float]]] = {
    "Total": ("energy_wh", 1000.0),
    "Power": ("power_w", 1.0),
    "ApparentPower": ("apparent_power_va", 1.0),
    "ReactivePower": ("reactive_power_var", 1.0),
    "Factor": ("power_factor_ratio", 1.0),
    "Voltage": ("voltage_v", 1.0),
    "Current": ("current_a", 1.0),
    "Frequency": ("frequency_hz", 1.0),
    "ExportActive": ("returned_energy_wh", 1000.0),
}
_DEVICE_OWN_SENSORS: Final = frozenset({"ANALOG", "ESP32", "ESP8266"})
_MARGIN_KEYS: Final = frozenset({"PowerLow", "PowerHigh", "VoltageLow", "VoltageHigh", "CurrentLow", "CurrentHigh"})


def _phase_key(key: str) -> tuple[str, str]:
    """`PowerHigh2` -> (`PowerHigh`, `2`): the ESP32 energy driver numbers these keys per phase."""
    base = key.rstrip("0123456789")
    return base, key[len(base):]


def _put(readings: dict[str, float | None], metric: str, value: Any, scale: float = 1.0) -> None:
    if isinstance(value, list):
        for i, v in enumerate(value, start=1):
            n = as_number(v)
            readings[f"{metric}@{i}"] = None if n is None else n * scale
    else:
        n = as_number(value)
        readings[metric] = None if n is None else n * scale


class TasmotaAdapter(Adapter):
    dialect = "tasmota"

    def _handle(self, topic: str, payload: bytes, retained: bool, ctx: Context) -> Outcome:
        levels = topic.split("/")
        if len(levels) != 3:
            return self.reject(RejectCode.UNKNOWN_TOPIC, "expected {prefix}/{topic}/{COMMAND}", topic=topic)
        prefix, key, command = levels
        dev = self.devices.get(key)
        if dev is None:
            return self.unknown_device(key, topic)
        out = Emitter(self.name, ctx)
        text = self.text(payload)
        if text is None:
            return self.reject(RejectCode.MALFORMED, "payload is not UTF-8 text", dev, topic)
        cmd = command.upper()
        if cmd == "LWT":
            state = on_off(text)
            if state is None:
                return self.reject(RejectCode.MALFORMED, f"LWT {text[:40]!r} is neither Online nor Offline", dev, topic)
            if state:
                out.availability(dev, AvailabilityState.ONLINE, "tasmota LWT Online")
            else:
                out.availability(dev, AvailabilityState.OFFLINE, "tasmota LWT Offline (broker published the Last Will)")
            return out.done(device=dev)
        if cmd == "POWER" or (cmd.startswith("POWER") and cmd[5:].isdigit()):
            state = on_off(text)
            if state is None:
                return self.reject(RejectCode.MALFORMED, f"{command} {text[:40]!r} is neither ON nor OFF", dev, topic)
            out.hear(dev)
            out.readings(dev, {self._relay_metric(cmd): 1.0 if state else 0.0})
            return out.done(device=dev)
        if not text.startswith("{"):
            return out.done(f"tasmota {command} is not a report we read", dev)
        obj, err = decode_json(payload)
        if err or not isinstance(obj, dict):
            return self.reject(RejectCode.MALFORMED, err or "expected a JSON object", dev, topic)
        out.hear(dev)
        if cmd == "STATE":
            self._state(out, dev, obj)
        elif cmd == "SENSOR":
            self._sensor(out, dev, obj)
        elif cmd == "MARGINS":
            self._margins(out, dev, obj)
        elif cmd == "WARNING":
            note = self._warning(out, dev, obj)
            if note:
                return out.done(note, dev)
        elif cmd in ("RESULT", "POWERMONITOR"):  # PowerMonitor has its own topic with SetOption4 1
            self._result(out, dev, obj)
        else:
            return out.done(f"tasmota {prefix}/{command} carries nothing for safety monitoring", dev)
        return out.done(f"tasmota {command}: no reading or alarm in this message", dev)

    @staticmethod
    def _relay_metric(cmd: str) -> str:
        n = cmd[5:]
        return f"relay_on_ratio@{n}" if n else "relay_on_ratio"

    def _relays(self, obj: dict[str, Any], readings: dict[str, float | None]) -> None:
        for k, v in obj.items():
            ku = k.upper()
            if (ku == "POWER" or (ku.startswith("POWER") and ku[5:].isdigit())) and isinstance(v, str):
                state = on_off(v)
                if state is not None:
                    readings[self._relay_metric(ku)] = 1.0 if state else 0.0

    def _state(self, out: Emitter, dev: KnownDevice, obj: dict[str, Any]) -> None:
        readings: dict[str, float | None] = {"uptime_s": as_number(obj.get("UptimeSec"))}
        wifi = obj.get("Wifi")
        if isinstance(wifi, dict):
            readings["wifi_signal_pct"] = as_number(wifi.get("RSSI"))  # Tasmota's RSSI is a 0-100 quality
            readings["rssi_dbm"] = as_number(wifi.get("Signal"))
        self._relays(obj, readings)
        out.readings(dev, readings)

    def _sensor(self, out: Emitter, dev: KnownDevice, obj: dict[str, Any]) -> None:
        readings: dict[str, float | None] = {}
        fahrenheit = obj.get("TempUnit") == "F"
        energy = obj.get("ENERGY")
        if isinstance(energy, dict):
            for key, (metric, scale) in _ENERGY.items():
                if key in energy:
                    _put(readings, metric, energy[key], scale)
        probes = 0
        for name, value in obj.items():
            if not isinstance(value, dict) or name == "ENERGY":
                continue
            t = as_number(value.get("Temperature"))
            if t is not None and fahrenheit:
                t = (t - 32.0) * 5.0 / 9.0
            if name in _DEVICE_OWN_SENSORS:
                readings["device_temperature_c"] = t
                continue
            if t is not None:
                probes += 1
                readings["temperature_c" if probes == 1 else f"temperature_c@{probes}"] = t
            h = as_number(value.get("Humidity"))
            if h is not None:
                readings["humidity_pct"] = h
        out.readings(dev, readings)

    def _margins(self, out: Emitter, dev: KnownDevice, obj: dict[str, Any]) -> None:
        inner = obj.get("MARGINS", obj)
        if not isinstance(inner, dict):
            return
        for key, value in inner.items():
            if _phase_key(key)[0] not in _MARGIN_KEYS or not isinstance(value, str):
                continue  # PowerDelta (a change in watts, a number or one per phase) is not a threshold
            edge = self.latches.update(dev.key, f"margin:{key}", on_off(value))
            if edge == "rise":
                out.event(dev, EventKind.ELECTRICAL_ALARM, detail=f"tasmota margin {key} crossed")
            elif edge == "fall":
                out.event(dev, EventKind.ELECTRICAL_CLEAR, detail=f"tasmota margin {key} back within limits")

    def _warning(self, out: Emitter, dev: KnownDevice, obj: dict[str, Any]) -> str | None:
        note = None
        for key, value in obj.items():
            base, phase = _phase_key(key)
            where = f" (phase {phase})" if phase else ""
            if base == "MaxPowerReached" and (watts := as_number(value)) is not None:
                out.event(dev, EventKind.ELECTRICAL_ALARM, value=watts,
                          detail=f"{key} {watts:g} W{where}: overload, relay switched off")
            elif base == "MaxPowerReachedRetry":
                out.event(dev, EventKind.ELECTRICAL_ALARM,
                          detail=f"{key}{where}: overload persisted through every retry, relay kept off")
            elif base == "MaxEnergyReached":
                note = f"tasmota {key} {value} kWh: the daily energy quota (MaxEnergy) switched the relay off; not a hazard"
            elif key.startswith("Max"):
                out.event(dev, EventKind.ELECTRICAL_ALARM, detail=f"tasmota warning {key}={value}")
        return note

    def _result(self, out: Emitter, dev: KnownDevice, obj: dict[str, Any]) -> None:
        for key, value in obj.items():
            base, phase = _phase_key(key)
            if base == "PowerMonitor" and isinstance(value, str) and on_off(value):
                where = f" (phase {phase})" if phase else ""
                out.event(dev, EventKind.ELECTRICAL_CLEAR, detail=f"{key} ON{where}: relay restored after the MaxPower hold")
        readings: dict[str, float | None] = {}
        self._relays(obj, readings)
        out.readings(dev, readings)
