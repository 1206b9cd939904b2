"""One declaration per device: a gateway's edge configuration written from the site directory.

How this works: every device the directory places behind the gateway becomes an entry of the adapter of its
dialect, keyed by its name on the building's LAN (`lan_name`, default its id), with its id, kind, channels and
(ESPHome) entities. The result is a plain mapping in the edge configuration's own format (docs/edge.md); the
caller validates it with the edge's parser (`shouwang edge config` does), so this module needs nothing of `edge/`.
The uplink points at the centre's broker with the gateway's own login (its id as the user name, as
`shouwang broker config` writes the credentials); the password is left for the installer to fill from the
credentials file, never written here.
"""

from __future__ import annotations

import difflib
from typing import Any

from backend.errors import BackendError
from backend.sites.model import SiteDirectory

__all__ = ["UnknownGateway", "edge_config_of"]

# The LAN topic prefix each dialect uses by default (the ecosystem's own default); shelly and esphome use each
# device's name as its prefix, native the gateway id.
_PREFIX = {"zigbee2mqtt": "zigbee2mqtt", "frigate": "frigate", "tasmota": "tele"}


class UnknownGateway(BackendError, ValueError):
    def __init__(self, gateway: str, known: list[str]) -> None:
        close = difflib.get_close_matches(gateway, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; the directory has {len(known)} gateways (`shouwang sites check` lists problems)"
        super().__init__(f"no gateway {gateway!r} in the site directory{hint}")


def edge_config_of(
    sites: SiteDirectory, gateway: str, *, uplink_host: str, uplink_port: int, lan_host: str = "127.0.0.1", lan_port: int = 1883,
    outbox_path: str | None = None,
) -> dict[str, Any]:
    if gateway not in sites.gateways:
        raise UnknownGateway(gateway, sorted(sites.gateways))
    adapters: dict[str, dict[str, Any]] = {}
    for d in sorted(sites.devices_by_gateway[gateway], key=lambda d: d.id):
        adapter = adapters.setdefault(d.dialect, {"dialect": d.dialect, "devices": {}})
        if d.dialect in _PREFIX:
            adapter["prefix"] = _PREFIX[d.dialect]
        entry: dict[str, Any] = {"id": d.id, "kind": d.kind.value}
        if d.channels > 1:
            entry["channels"] = d.channels
        if d.entities:
            entry["entities"] = {k: dict(v) for k, v in d.entities.items()}
        adapter["devices"][d.lan_name or d.id] = entry
    return {
        "gateway": gateway,
        "lan": {"host": lan_host, "port": lan_port},
        "uplink": {"host": uplink_host, "port": uplink_port, "username": gateway},
        "outbox": {"path": outbox_path or f"var/edge/{gateway}/outbox.sqlite3"},
        "adapters": [adapters[k] for k in sorted(adapters)],
    }
