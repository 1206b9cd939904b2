"""Device-dialect adapters and the router that hands each LAN message to the adapter owning its prefix.

How this works: every adapter owns one or more topic prefixes (from the configuration); `Router.route`
finds the owner by the longest matching prefix of whole topic levels and returns its `Outcome`. A topic no
adapter owns is rejected by the router itself. The router is pure: no I/O, time from the `Context`.
"""

from __future__ import annotations

from edge.adapters.base import Adapter, Context, KnownDevice, Mapped, Outcome, RejectCode, Rejected, Routed
from edge.adapters.esphome import EspHomeAdapter
from edge.adapters.frigate import FrigateAdapter
from edge.adapters.native import NativeAdapter
from edge.adapters.shelly import ShellyAdapter
from edge.adapters.tasmota import TasmotaAdapter
from edge.adapters.zigbee2mqtt import Zigbee2MqttAdapter
from edge.config import EdgeConfig, adapter_prefixes

__all__ = ["Adapter", "Context", "KnownDevice", "Mapped", "Outcome", "RejectCode", "Rejected", "Routed", "Router", "build_adapters"]

_CLASSES: dict[str, type[Adapter]] = {
    "native": NativeAdapter,
    "zigbee2mqtt": Zigbee2MqttAdapter,
    "tasmota": TasmotaAdapter,
    "shelly": ShellyAdapter,
    "frigate": FrigateAdapter,
    "esphome": EspHomeAdapter,
}


def build_adapters(config: EdgeConfig) -> list[Adapter]:
    return [_CLASSES[a.dialect](a, adapter_prefixes(config, a)) for a in config.adapters]


class Router:
    def __init__(self, adapters: list[Adapter]) -> None:
        self.adapters = adapters
        self._owner: dict[str, Adapter] = {p: a for a in adapters for p in a.prefixes}
        self._max_levels = max((p.count("/") + 1 for p in self._owner), default=1)

    def filters(self) -> list[str]:
        return [f for a in self.adapters for f in a.filters()]

    def owner(self, topic: str) -> Adapter | None:
        levels = topic.split("/")
        for n in range(min(self._max_levels, len(levels) - 1), 0, -1):
            adapter = self._owner.get("/".join(levels[:n]))
            if adapter is not None:
                return adapter
        return None

    def route(self, topic: str, payload: bytes, retained: bool, ctx: Context) -> Outcome:
        adapter = self.owner(topic)
        if adapter is None:
            return Rejected("router", RejectCode.UNKNOWN_TOPIC, "no adapter owns this topic's prefix", topic=topic)
        return adapter.handle(topic, payload, retained, ctx)
