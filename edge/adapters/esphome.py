"""ESPHome: `{node}/status` and `{node}/{component}/{object_id}/state`, plain-text payloads.

How this works: each configured device key is a node's topic prefix (the node name by default). `status`
online/offline is the node's birth message and Last Will: every device the node carries changes together.
A `sensor` state is a number as text; "nan" (or "None" with publish_nan_as_none) means the sensor cannot
measure: a FAULT, never 0 V; the next number clears it. The topic carries no unit, so the metric comes from
the entity's `metric` in the configuration, or from the `unit_of_measurement` the node announced in its Home
Assistant discovery config (`{discovery_prefix}/sensor/{node}/{object_id}/config`, full or abbreviated keys,
read when the adapter sets `discovery_prefix`), or from an object id that is itself a metric name
(`residual_current_ma`). Nothing else: a unit is known or the message is rejected as unmapped with the setting
to add, never guessed from a word (an id `residual_current` reporting mA once became `residual_current_a` with
the milliampere value unchanged, and no rule saw it). A `binary_sensor`
ON/OFF is an alarm by the entity's `event`, a word in its id (smoke, leak, tamper...) or the device's kind;
`switch` ON/OFF is a relay state. An entity may name another device (`device:`), e.g. the smoke detector
wired to a kitchen node.

Checked against ESPHome's source (esphome/components/mqtt: mqtt_component.cpp `{topic_prefix}/{component}/{object_id}/
state` and the discovery topic `{prefix}/{component}/{node}/{object_id}/config`; mqtt_sensor.cpp: the value at its
accuracy, "nan" for NaN, "None" with publish_nan_as_none; mqtt_binary_sensor.cpp: ON/OFF; mqtt_const.h: the
abbreviated discovery keys `unit_of_meas`, `stat_t`, `dev_cla`; mqtt/__init__.py: birth "online" and will "offline" on
`{topic_prefix}/status`) and esphome/const.py for the unit spellings.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from broker.ids import DeviceId
from broker.kinds import AvailabilityState, DeviceKind, EventKind, metric_unit
from edge.adapters.base import Adapter, Context, Emitter, KnownDevice, Outcome, RejectCode, on_off
from edge.config import EntityConfig

__all__ = ["EspHomeAdapter"]

# Home Assistant `unit_of_measurement` -> (our unit suffix, scale to it). Units not here are refused, not guessed.
# ESPHome's own spellings (esphome/const.py UNIT_*) differ from Home Assistant's for some: reactive power is "VAR" and
# "kVAR" there, "var" and "kvar" in Home Assistant; both are read. "°F" and "K" need an offset, not a scale: refused.
_HA_UNITS: Final = {
    "µA": ("ma", 0.001), "mA": ("ma", 1.0), "A": ("a", 1.0), "mV": ("v", 0.001), "V": ("v", 1.0),
    "W": ("w", 1.0), "kW": ("w", 1000.0), "VA": ("va", 1.0), "kVA": ("va", 1000.0),
    "var": ("var", 1.0), "VAR": ("var", 1.0), "kvar": ("var", 1000.0), "kVAR": ("var", 1000.0),
    "Wh": ("wh", 1.0), "kWh": ("wh", 1000.0), "Hz": ("hz", 1.0), "°C": ("c", 1.0), "%": ("pct", 1.0), "dBm": ("dbm", 1.0),
    "lx": ("lux", 1.0), "ms": ("s", 0.001), "s": ("s", 1.0), "ppm": ("ppm", 1.0),
}
_EVENT_WORDS: Final = (
    ("smoke", "smoke"),
    ("leak", "water_leak"),
    ("water", "water_leak"),
    ("flood", "water_leak"),
    ("tamper", "tamper"),
    ("sos", "sos"),
    ("panic", "sos"),
    ("emergency", "sos"),
)
_KIND_EVENT: Final = {DeviceKind.SMOKE: "smoke", DeviceKind.WATER_LEAK: "water_leak", DeviceKind.SOS: "sos"}
_EVENTS: Final[dict[str, tuple[EventKind, EventKind | None]]] = {
    "smoke": (EventKind.SMOKE_ALARM, EventKind.SMOKE_CLEAR),
    "water_leak": (EventKind.WATER_LEAK, EventKind.WATER_LEAK_CLEAR),
    "tamper": (EventKind.TAMPER, EventKind.TAMPER_CLEAR),
    "sos": (EventKind.SOS_PRESS, None),
    "fault": (EventKind.FAULT, EventKind.FAULT_CLEAR),
    "electrical": (EventKind.ELECTRICAL_ALARM, EventKind.ELECTRICAL_CLEAR),
}
_NAN: Final = frozenset({"nan", "none", "-nan", "unknown", "unavailable"})


def _snake(object_id: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "_", object_id.lower()).strip("_")
    if not s:  # an id of punctuation only (or empty): "sensor_" would end a metric name in "__"
        return "sensor"
    return s if s[0].isalpha() else f"sensor_{s}"


class EspHomeAdapter(Adapter):
    dialect = "esphome"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._by_node: dict[str, list[KnownDevice]] = {}
        self._carried: dict[str, KnownDevice] = {}
        for key, dev in self.devices.items():
            members = [dev]
            for e in dev.entities.values():
                if e.device is not None and e.kind is not None:
                    carried = self._carried.get(e.device) or KnownDevice(f"{key}/{e.device}", DeviceId(e.device), e.kind, dev.drill, e.kind is DeviceKind.SOS)
                    self._carried[e.device] = carried
                    members.append(carried)
            self._by_node[key] = list(dict.fromkeys(members))
        self._discovered: dict[tuple[str, str], tuple[str, float]] = {}  # (node, "sensor/object_id") -> (unit suffix, scale)
        self._discovery = self.config.discovery_prefix

    def _target(self, node: KnownDevice, entity: EntityConfig | None) -> KnownDevice:
        if entity is not None and entity.device is not None:
            return self._carried[entity.device]
        return node

    def _handle(self, topic: str, payload: bytes, retained: bool, ctx: Context) -> Outcome:
        if self._discovery and topic.startswith(self._discovery + "/"):
            return self._learn(topic, payload, ctx)
        first, _, rest = topic.partition("/")
        node = self.devices.get(first)
        if node is None:
            for key, candidate in self.devices.items():
                if topic.startswith(key + "/"):
                    node, rest = candidate, topic[len(key) + 1 :]
                    break
        if node is None:
            return self.unknown_device(first, topic)
        out = Emitter(self.name, ctx)
        text = payload.decode("utf-8", errors="replace").strip()
        if rest == "status":
            state = on_off(text)
            if state is None:
                return self.reject(RejectCode.MALFORMED, f"status {text[:40]!r} is neither online nor offline", node, topic)
            for dev in self._by_node[node.key]:
                if state:
                    out.availability(dev, AvailabilityState.ONLINE, "esphome node online (birth message)")
                else:
                    out.availability(dev, AvailabilityState.OFFLINE, "esphome node offline (Last Will or shutdown)")
            return out.done(device=node)
        levels = rest.split("/")
        if len(levels) != 3 or levels[2] != "state":
            return out.done(f"esphome topic {rest!r} (commands, debug) carries nothing for safety monitoring", node)
        component, object_id = levels[0], levels[1]
        entity = node.entities.get(f"{component}/{object_id}")
        dev = self._target(node, entity)
        if component == "sensor":
            return self._sensor(out, node, dev, object_id=object_id, entity=entity, text=text, topic=topic)
        if component == "binary_sensor":
            return self._binary(out, dev, object_id=object_id, entity=entity, text=text, topic=topic)
        if component == "switch":
            state = on_off(text)
            if state is None:
                return self.reject(RejectCode.MALFORMED, f"switch state {text[:40]!r} is neither ON nor OFF", dev, topic)
            out.hear(dev)
            metric = entity.metric if entity and entity.metric else f"{_snake(object_id)}_on_ratio"
            out.readings(dev, {metric: 1.0 if state else 0.0})
            return out.done(device=dev)
        out.hear(dev)
        return out.done(f"esphome {component} states carry nothing for safety monitoring", dev)

    def _sensor(self, out: Emitter, node: KnownDevice, dev: KnownDevice, *, object_id: str, entity: EntityConfig | None, text: str, topic: str) -> Outcome:
        flag = f"fault:{object_id}"
        if text.lower() in _NAN:
            out.hear(dev)
            if self.latches.update(dev.key, flag, True) == "rise":
                out.event(dev, EventKind.FAULT, detail=f"esphome sensor {object_id!r} has no valid value ({text!r}): sensor fault, not a zero reading")
            return out.done(f"sensor {object_id!r} still reports no valid value", dev)
        try:
            value = float(text)
        except ValueError:
            return self.reject(RejectCode.MALFORMED, f"sensor state {text[:40]!r} is not a number", dev, topic)
        metric, scale = self._metric(object_id, entity, self._discovered.get((node.key, f"sensor/{object_id}")))
        if metric is None:
            learn = "" if self._discovery else ", or set discovery_prefix: homeassistant on this adapter so the node's announced unit is used"
            return self.reject(
                RejectCode.UNMAPPED,
                f"sensor {object_id!r}: its unit is not known: add entities: {{'sensor/{object_id}': {{metric: <name_unit>}}}} to device {node.key!r}{learn}",
                dev,
                topic,
            )
        out.hear(dev)
        if self.latches.update(dev.key, flag, False) == "fall":
            out.event(dev, EventKind.FAULT_CLEAR, detail=f"esphome sensor {object_id!r} measures again")
        out.readings(dev, {metric: value * scale})
        return out.done(device=dev)

    @staticmethod
    def _metric(object_id: str, entity: EntityConfig | None, announced: tuple[str, float] | None) -> tuple[str | None, float]:
        if entity is not None and entity.metric is not None:
            return entity.metric, entity.scale
        name = _snake(object_id)
        if announced is not None:
            unit, scale = announced
            metric = name if metric_unit(name) == unit else f"{name}_{unit}"
            return metric, entity.scale if entity and entity.scale != 1.0 else scale
        if metric_unit(name) is not None:
            return name, entity.scale if entity else 1.0
        return None, 1.0

    def _learn(self, topic: str, payload: bytes, ctx: Context) -> Outcome:
        """A Home Assistant discovery config: remember the unit of a sensor whose state topic is one of our nodes'."""
        out = Emitter(self.name, ctx)
        levels = topic.split("/")
        if len(levels) < 4 or levels[-1] != "config" or levels[1] != "sensor":
            return out.done("discovery config of a component other than sensor: no unit to learn")
        if not payload:
            return out.done("discovery config cleared (entity removed): nothing to learn")
        try:
            obj = json.loads(payload)
        except ValueError as exc:
            return self.reject(RejectCode.MALFORMED, f"discovery config is not JSON: {exc}", topic=topic)
        if not isinstance(obj, dict):
            return self.reject(RejectCode.MALFORMED, "discovery config must be a JSON object", topic=topic)
        state_topic = obj.get("state_topic", obj.get("stat_t"))
        base = obj.get("~")
        if isinstance(state_topic, str) and isinstance(base, str):
            state_topic = state_topic.replace("~", base)
        parts = state_topic.split("/") if isinstance(state_topic, str) else []
        if len(parts) != 4 or parts[1] != "sensor" or parts[3] != "state" or parts[0] not in self.devices:
            return out.done("discovery config of an entity not on a configured node: ignored")
        unit = obj.get("unit_of_measurement", obj.get("unit_of_meas"))
        known = _HA_UNITS.get(unit) if isinstance(unit, str) else None
        if known is None:
            return self.reject(RejectCode.UNMAPPED, f"sensor {parts[2]!r} announces the unit {unit!r}, which has no metric unit here: "
                                                    f"set its metric in entities", self.devices[parts[0]], topic)
        self._discovered[(parts[0], f"sensor/{parts[2]}")] = known
        return out.done(f"learnt the unit of sensor {parts[2]!r}: {unit}")

    def _binary(self, out: Emitter, dev: KnownDevice, *, object_id: str, entity: EntityConfig | None, text: str, topic: str) -> Outcome:
        state = on_off(text)
        if state is None:
            return self.reject(RejectCode.MALFORMED, f"binary_sensor state {text[:40]!r} is neither ON nor OFF", dev, topic)
        event: str | None = entity.event if entity and entity.event else None
        if event is None:
            name = object_id.lower()
            event = next((e for w, e in _EVENT_WORDS if w in name), None) or _KIND_EVENT.get(dev.kind)
        if event is None:
            return self.reject(
                RejectCode.UNMAPPED, f"binary_sensor {object_id!r}: say what it means with entities: {{event: smoke|water_leak|tamper|sos|fault}}", dev, topic
            )
        out.hear(dev)
        rise, fall = _EVENTS[event]
        edge = self.latches.update(dev.key, f"{event}:{object_id}", state)
        if edge == "rise":
            out.event(dev, rise, detail=f"esphome {object_id} ON", needs_callback=rise is EventKind.SOS_PRESS and dev.callback_verify)
        elif edge == "fall" and fall is not None:
            out.event(dev, fall, detail=f"esphome {object_id} OFF")
        return out.done(f"binary_sensor {object_id} {text}: no change", dev)
