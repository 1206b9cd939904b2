"""Native: LAN devices that already speak our contract, `sw/v1/gw/{lan gateway}/dev/{device}/{kind}`.

How this works: the payload is decoded by the contract's own decoder (broker.schemas.decode_uplink), so a
native device is held to exactly what the centre accepts. Only telemetry, events and availability are
taken from the LAN (status, patrol and commands are the gateway's own business). The device's msg_id and
source_ts_ms are kept, so the centre de-duplicates a native device's retries too; received_ts_ms is
stamped with our clock. Devices must be listed under `devices` unless `allow_unlisted` is set.
"""

from __future__ import annotations

import msgspec

from broker.errors import MessageRejected
from broker.ids import DeviceId
from broker.kinds import DeviceKind
from broker.schemas import DeviceAvailability, DeviceEvent, Telemetry, decode_uplink
from broker.topics import TopicKind
from edge.adapters.base import Adapter, Context, KnownDevice, Mapped, Outcome, RejectCode, Routed

__all__ = ["NativeAdapter"]

_CODES = {"too_large": RejectCode.TOO_LARGE, "malformed_json": RejectCode.MALFORMED, "bad_topic": RejectCode.UNKNOWN_TOPIC}


class NativeAdapter(Adapter):
    dialect = "native"

    def filters(self) -> list[str]:
        return [f"{p}/dev/+/{kind.value}" for p in self.prefixes for kind in (TopicKind.TELEMETRY, TopicKind.EVENT, TopicKind.AVAILABILITY)]

    def _handle(self, topic: str, payload: bytes, retained: bool, ctx: Context) -> Outcome:
        try:
            uplink = decode_uplink(topic, payload)
        except MessageRejected as exc:
            return self.reject(_CODES.get(exc.reason.value, RejectCode.SCHEMA), exc.detail, topic=topic)
        if uplink.topic.device is None:
            return self.reject(RejectCode.UNKNOWN_TOPIC, "only device telemetry, events and availability are taken from the LAN", topic=topic)
        device = DeviceId(uplink.topic.device)
        dev = self.devices.get(device)
        if dev is None:
            if not self.config.allow_unlisted:
                return self.unknown_device(device, topic)
            dev = KnownDevice(device, device, DeviceKind.OTHER)
        message = uplink.message
        assert isinstance(message, Telemetry | DeviceEvent | DeviceAvailability)
        message = msgspec.structs.replace(message, received_ts_ms=ctx.now_ms, drill=message.drill or dev.drill)
        heard = () if isinstance(message, DeviceAvailability) else (dev.id,)
        return Mapped(self.name, (Routed(dev.id, message),), heard, device=dev.id)
