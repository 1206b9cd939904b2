"""The site-directory check at intake: is the device listed, behind the gateway it came through?

How this works: with `ingest.known_devices_only` on (the default), the pipeline asks `check_known` about every
message that names a device, after it decoded and before it is journaled. A listed device behind its own
gateway passes. Anything else is rejected with a reason the console shows (`unknown_device`, `wrong_gateway`),
with one exception each way:
- a life-safety event (smoke, SOS, tamper) is never rejected for this: a detector fitted before the directory
  was updated must still raise its alarm. It is counted (`unknown_device_events`) and logged, and its alarm
  shows the unknown device id for the duty officer to sort out;
- a *clear* from a gateway other than the device's own is always rejected, even for a life-safety device: one
  gateway's login must not be able to silence another building's smoke alarm.
"""

from __future__ import annotations

import logging

from backend.ingest.stats import IngestStats
from backend.sites.model import SiteDirectory
from broker.errors import MessageRejected, RejectReason
from broker.kinds import EventKind, Priority
from broker.schemas import DeviceEvent, Uplink

__all__ = ["CLEARING_EVENTS", "check_known"]

log = logging.getLogger(__name__)
CLEARING_EVENTS = frozenset(k for k in EventKind if k.value.endswith("_clear"))  # events that end an alarm


def check_known(sites: SiteDirectory, uplink: Uplink, topic: str, stats: IngestStats) -> None:
    """Raise MessageRejected unless the device is in the site directory behind this gateway (or the message is
    a life-safety event, let through and counted in `stats`)."""
    device = uplink.topic.device
    if device is None:
        return
    known = sites.devices.get(device)
    if known is not None and known.gateway == uplink.topic.gateway:
        return
    message = uplink.message
    if known is not None and isinstance(message, DeviceEvent) and message.event in CLEARING_EVENTS:
        raise MessageRejected(RejectReason.WRONG_GATEWAY,
                              f"gateway {uplink.topic.gateway!r} may not clear device {device!r}, which belongs to gateway {known.gateway!r}", topic)
    if uplink.priority is Priority.LIFE_SAFETY:
        stats.unknown_device_events += 1
        log.warning("life-safety event from %s device %s through gateway %s: raised all the same",
                    "unlisted" if known is None else "misrouted", device, uplink.topic.gateway)
        return
    if known is None:
        raise MessageRejected(RejectReason.UNKNOWN_DEVICE, f"device {device!r} is not in the site directory; add it there first", topic)
    raise MessageRejected(RejectReason.WRONG_GATEWAY,
                          f"device {device!r} belongs to gateway {known.gateway!r}, not {uplink.topic.gateway!r}; fix the edge configuration", topic)
