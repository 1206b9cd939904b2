"""The edge agent's configuration: one YAML or TOML file per gateway, validated on load.

How this works: the file is parsed (YAML if it ends in .yaml/.yml, TOML if .toml), then converted into the
frozen msgspec Structs below with unknown keys refused, so a typo is an error and not a silently ignored
setting. Every error is raised as `ConfigError` naming the file, the key path (e.g. `$.adapters[2].devices`)
and what is wrong. Cross-field rules (unique device ids, no two adapters claiming one topic prefix, the
patrol ceiling of 2 h) are checked after conversion. docs/edge.md documents every key.

The edge is autonomous: it does not read the site directory. What it needs about its devices (ecosystem
name → our device id, kind, expected reporting interval) lives in this file.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

import msgspec
import yaml

from broker.connection import Backoff
from broker.errors import ContractError
from broker.ids import DeviceId, GatewayId, validate_id
from broker.kinds import DeviceKind, EventKind, metric_unit
from broker.topics import PREFIX, TopicFilter
from edge.errors import ConfigError

__all__ = [
    "DEFAULT_INTERVALS_S",
    "DEFAULT_MISSES",
    "AdapterConfig",
    "BrokerEndpoint",
    "DeviceConfig",
    "Dialect",
    "EdgeConfig",
    "EntityConfig",
    "LivenessConfig",
    "LocalActionConfig",
    "OutboxConfig",
    "PatrolConfig",
    "StatusConfig",
    "UplinkConfig",
    "load_config",
    "parse_config",
]

Dialect = Literal["native", "zigbee2mqtt", "tasmota", "shelly", "frigate", "esphome"]

# Expected reporting interval per device class when neither the device nor the file names one. Mirrors the
# site directory's defaults: GB/T 28181 camera keepalive 60 s; battery detectors and buttons check in daily.
DEFAULT_INTERVALS_S: Final[dict[DeviceKind, float]] = {
    DeviceKind.CAMERA: 60.0,
    DeviceKind.SMOKE: 86_400.0,
    DeviceKind.ELECTRICAL: 60.0,
    DeviceKind.SOS: 86_400.0,
    DeviceKind.WATER_LEAK: 86_400.0,
    DeviceKind.OTHER: 3_600.0,
}
# Missed reports before a device is declared offline: 3 for cameras (GB/T 28181) and frequent reporters;
# 2 for daily check-ins, so a detector silent for two days is flagged and not left for three.
DEFAULT_MISSES: Final[dict[DeviceKind, int]] = {
    DeviceKind.CAMERA: 3,
    DeviceKind.SMOKE: 2,
    DeviceKind.ELECTRICAL: 3,
    DeviceKind.SOS: 2,
    DeviceKind.WATER_LEAK: 2,
    DeviceKind.OTHER: 3,
}
_PATROL_CEILING_S: Final = 7200.0  # GB 50440-2007: patrol between centre and site device at most every 2 h


class _Strict(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class BrokerEndpoint(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    client_id: str | None = None  # default: "{gateway}-edge-lan" / "{gateway}-edge-uplink"
    keepalive_s: int = 30
    tls_ca_file: str | None = None  # set to use TLS, verifying the broker against this CA bundle

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port {self.port} is not a TCP port")
        if self.keepalive_s < 5:
            raise ValueError("keepalive_s must be at least 5")


class LanConfig(BrokerEndpoint, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The building's broker the devices publish to. Subscribed with QoS 1 on a persistent session."""

    batch_max: int = 256  # LAN messages adapted and committed to the outbox in one transaction, at most
    reconnect_min_s: float = 0.2  # the building's own broker: back quickly, its devices' alarms wait on it
    reconnect_max_s: float = 10.0
    reconnect_jitter: float = 0.5  # each wait shortened by a random part of up to this fraction

    def __post_init__(self) -> None:
        BrokerEndpoint.__post_init__(self)
        if not 1 <= self.batch_max <= 10_000:
            raise ValueError("batch_max must be in 1..10000")
        self.backoff()  # raises ValueError on impossible numbers

    def backoff(self) -> Backoff:
        return Backoff(initial_s=self.reconnect_min_s, maximum_s=self.reconnect_max_s, jitter=self.reconnect_jitter)


class UplinkConfig(BrokerEndpoint, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The central broker. QoS 1; a row leaves the outbox only after its PUBACK."""

    inflight_window: int = 32  # telemetry/status messages awaiting PUBACK at once: bounds what an alarm queues behind
    alarm_batch: int = 64
    publish_timeout_s: float = 10.0  # no PUBACK within this: the connection is treated as broken
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    reconnect_jitter: float = 0.5  # each wait shortened by a random part of up to this fraction: gateways do not return at once
    tcp_nodelay: bool = True  # the alarm path: do not let Nagle hold a smoke event for 40 ms
    shutdown_drain_s: float = 2.0  # on a clean stop, time given to empty the outbox before disconnecting

    def __post_init__(self) -> None:
        BrokerEndpoint.__post_init__(self)
        if not 1 <= self.inflight_window <= 10_000 or not 1 <= self.alarm_batch <= 10_000:
            raise ValueError("inflight_window and alarm_batch must be in 1..10000")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise ValueError("need 0 < reconnect_min_s <= reconnect_max_s")
        self.backoff()  # the jitter too
        if self.publish_timeout_s <= 0 or self.shutdown_drain_s < 0:
            raise ValueError("publish_timeout_s must be positive and shutdown_drain_s not negative")

    def backoff(self) -> Backoff:
        return Backoff(initial_s=self.reconnect_min_s, maximum_s=self.reconnect_max_s, jitter=self.reconnect_jitter)


class OutboxConfig(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    path: str = "var/edge/outbox.sqlite3"
    max_telemetry_rows: int = 500_000  # past this, the oldest telemetry is evicted (counted); alarms never are
    max_bytes: int = 256 * 1024 * 1024  # bound on stored topic+payload bytes; only telemetry is evicted for it
    synchronous: Literal["normal", "full"] = "normal"  # normal survives kill -9; full also survives power loss

    def __post_init__(self) -> None:
        if self.max_telemetry_rows < 1 or self.max_bytes < 4096:
            raise ValueError("max_telemetry_rows must be >= 1 and max_bytes >= 4096")


class PatrolConfig(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    period_s: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.period_s <= _PATROL_CEILING_S:
            raise ValueError(f"period_s must be in (0, {_PATROL_CEILING_S:g}]: the standard's patrol ceiling is 2 h")


class LivenessConfig(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    check_every_s: float = 5.0
    intervals_s: dict[DeviceKind, float] = msgspec.field(default_factory=dict)  # overrides DEFAULT_INTERVALS_S
    misses: dict[DeviceKind, int] = msgspec.field(default_factory=dict)  # overrides DEFAULT_MISSES

    def __post_init__(self) -> None:
        if self.check_every_s <= 0:
            raise ValueError("check_every_s must be positive")
        if any(v <= 0 for v in self.intervals_s.values()) or any(v < 1 for v in self.misses.values()):
            raise ValueError("intervals must be positive and misses at least 1")

    def interval_for(self, kind: DeviceKind) -> float:
        return self.intervals_s.get(kind, DEFAULT_INTERVALS_S[kind])

    def misses_for(self, kind: DeviceKind) -> int:
        return self.misses.get(kind, DEFAULT_MISSES[kind])


class LocalActionConfig(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """While the uplink is down, a life-safety event publishes this to the LAN broker (a sounder or relay)."""

    topic: str
    payload: str = '{"state":"ON"}'  # "{device}" and "{event}" are replaced with the device id and event kind
    qos: int = 1
    retain: bool = False
    events: list[EventKind] = msgspec.field(default_factory=lambda: [EventKind.SMOKE_ALARM, EventKind.SOS_PRESS])

    def __post_init__(self) -> None:
        if self.qos not in (0, 1, 2):
            raise ValueError("qos must be 0, 1 or 2")


class StatusConfig(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    path: str | None = None  # default: status.json beside the outbox
    every_s: float = 5.0

    def __post_init__(self) -> None:
        if self.every_s <= 0:
            raise ValueError("every_s must be positive")


class EntityConfig(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One entity of a multi-entity device (an ESPHome node's sensor): where it goes and what it means."""

    device: str | None = None  # a device of its own carried by the node (e.g. a wired smoke detector): our id
    kind: DeviceKind | None = None  # required with `device`
    metric: str | None = None  # metric name, ending in a unit (broker/kinds.py)
    scale: float = 1.0  # multiply the reading by this (kWh -> Wh is 1000)
    event: Literal["smoke", "water_leak", "tamper", "sos", "fault", "electrical"] | None = None

    def __post_init__(self) -> None:
        if self.device is not None:
            validate_id("device id", self.device)
            if self.kind is None:
                raise ValueError(f"entity device {self.device!r} needs a `kind`")
        if self.metric is not None and metric_unit(self.metric) is None:
            raise ValueError(f"metric {self.metric!r} must be snake_case ending in a unit, e.g. voltage_v")


class DeviceConfig(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    id: str
    kind: DeviceKind
    interval_s: float | None = None  # expected reporting interval; default by kind
    offline_after_misses: int | None = None
    callback_verify: bool | None = None  # SOS presses need a human call-back; default true for SOS devices
    drill: bool = False  # a simulator's device: everything it sends is drill traffic
    channels: int = 1  # metering channels; >1 names readings power_w@1, power_w@2...
    entities: dict[str, EntityConfig] = msgspec.field(default_factory=dict)  # ESPHome: "sensor/mains_voltage"

    def __post_init__(self) -> None:
        validate_id("device id", self.id)
        if self.interval_s is not None and self.interval_s <= 0:
            raise ValueError("interval_s must be positive")
        if self.offline_after_misses is not None and self.offline_after_misses < 1:
            raise ValueError("offline_after_misses must be at least 1")
        if not 1 <= self.channels <= 99:
            raise ValueError("channels must be in 1..99")


class AdapterConfig(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    dialect: Dialect
    name: str | None = None  # shown in status and rejection counts; default "{dialect}:{prefix}"
    # zigbee2mqtt: base_topic; frigate: topic_prefix; tasmota: the tele prefix; native: the gateway id devices
    # publish under on the LAN (default: ours). shelly and esphome use each device's key as its topic prefix.
    prefix: str | None = None
    stat_prefix: str = "stat"  # tasmota only
    devices: dict[str, DeviceConfig] = msgspec.field(default_factory=dict)  # ecosystem name -> our device
    sos_dedupe_s: float = 3.0  # zigbee2mqtt: one press seen on the JSON state and the /action topic is one SOS
    restart_uptime_s: float = 120.0  # shelly: a full status with uptime below this reports a restart
    allow_unlisted: bool = False  # native: accept devices not listed under devices
    # esphome: the Home Assistant MQTT discovery prefix the nodes publish their entities' configs under (units and
    # device classes are learnt from them); None: not read, so a sensor needs its metric in `entities`.
    discovery_prefix: str | None = None

    @property
    def display_name(self) -> str:
        return self.name or f"{self.dialect}:{self.prefix or '*'}"


class EdgeConfig(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    gateway: str
    lan: LanConfig = msgspec.field(default_factory=LanConfig)
    uplink: UplinkConfig = msgspec.field(default_factory=UplinkConfig)
    outbox: OutboxConfig = msgspec.field(default_factory=OutboxConfig)
    patrol: PatrolConfig = msgspec.field(default_factory=PatrolConfig)
    liveness: LivenessConfig = msgspec.field(default_factory=LivenessConfig)
    local_action: LocalActionConfig | None = None
    status: StatusConfig = msgspec.field(default_factory=StatusConfig)
    adapters: list[AdapterConfig] = msgspec.field(default_factory=list)
    software: str = "shouwang-edge/0.1"

    def __post_init__(self) -> None:
        validate_id("gateway id", self.gateway)

    @property
    def gateway_id(self) -> GatewayId:
        return GatewayId(self.gateway)

    @property
    def status_path(self) -> Path:
        return Path(self.status.path) if self.status.path else Path(self.outbox.path).with_name("status.json")

    def lan_client_id(self) -> str:
        return self.lan.client_id or f"{self.gateway}-edge-lan"

    def uplink_client_id(self) -> str:
        return self.uplink.client_id or f"{self.gateway}-edge-uplink"


def _adapter_prefixes(gateway: str, a: AdapterConfig) -> list[str]:
    if a.dialect == "native":
        return [f"{PREFIX}/{a.prefix or gateway}"]
    if a.dialect == "esphome" and a.discovery_prefix:
        return [*a.devices, a.discovery_prefix]
    if a.dialect in ("shelly", "esphome"):
        return list(a.devices)
    if a.dialect == "tasmota":
        return [a.prefix or "tele", a.stat_prefix]
    default = {"zigbee2mqtt": "zigbee2mqtt", "frigate": "frigate"}[a.dialect]
    return [a.prefix or default]


def adapter_prefixes(config: EdgeConfig, a: AdapterConfig) -> list[str]:
    """The topic prefixes an adapter owns on the LAN broker (it is subscribed to `{prefix}/#`)."""
    return _adapter_prefixes(config.gateway, a)


def _check(config: EdgeConfig) -> None:
    ids: dict[str, str] = {}
    owners: dict[str, str] = {}
    names: set[str] = set()
    for i, a in enumerate(config.adapters):
        where = f"$.adapters[{i}]"
        if a.display_name in names:
            raise ValueError(f"{where}: two adapters are named {a.display_name!r}; give one a `name`")
        names.add(a.display_name)
        if a.dialect == "native" and a.prefix is not None:
            GatewayId(a.prefix)
        for p in _adapter_prefixes(config.gateway, a):
            try:
                TopicFilter(f"{p}/#")
            except ContractError as exc:
                raise ValueError(f"{where}: topic prefix {p!r} is not usable: {exc}") from exc
            if p in owners:
                raise ValueError(f"{where}: topic prefix {p!r} is already owned by adapter {owners[p]!r}")
            owners[p] = a.display_name
        for key, d in a.devices.items():
            if d.id in ids:
                raise ValueError(f"{where}.devices[{key!r}]: device id {d.id!r} is already used by {ids[d.id]}")
            ids[d.id] = f"{a.display_name} {key!r}"
            for ent, e in d.entities.items():
                if e.device is not None and ids.get(e.device, f"{a.display_name} {key!r}") != f"{a.display_name} {key!r}":
                    raise ValueError(f"{where}.devices[{key!r}].entities[{ent!r}]: device id {e.device!r} is already used by {ids[e.device]}")
                if e.device is not None:
                    ids[e.device] = f"{a.display_name} {key!r}"
    if config.local_action is not None:
        TopicFilter(config.local_action.topic)


def parse_config(data: Mapping[str, Any], source: Path | str = "<memory>") -> EdgeConfig:
    """Validate already-parsed configuration data (for tests and for files)."""
    try:
        config = msgspec.convert(dict(data), type=EdgeConfig, strict=True)
        _check(config)
    except msgspec.ValidationError as exc:
        raise ConfigError(source, str(exc)) from None
    except (ValueError, ContractError) as exc:
        raise ConfigError(source, str(exc)) from None
    return config


def load_config(path: Path | str) -> EdgeConfig:
    """Read and validate an edge configuration file (.yaml, .yml or .toml)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, f"cannot read: {exc.strerror or exc}") from None
    try:
        if path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        elif path.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            raise ConfigError(path, "use a .yaml, .yml or .toml file")
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(path, f"not valid {path.suffix[1:].upper()}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(path, "the top level must be a mapping with at least `gateway`")
    return parse_config(data, path)


def device_interval_s(config: LivenessConfig, device: DeviceConfig) -> float:
    return device.interval_s if device.interval_s is not None else config.interval_for(device.kind)


def device_misses(config: LivenessConfig, device: DeviceConfig) -> int:
    return device.offline_after_misses if device.offline_after_misses is not None else config.misses_for(device.kind)


def device_ids(config: EdgeConfig) -> list[DeviceId]:
    out = [DeviceId(d.id) for a in config.adapters for d in a.devices.values()]
    out += [DeviceId(e.device) for a in config.adapters for d in a.devices.values() for e in d.entities.values() if e.device]
    return list(dict.fromkeys(out))
