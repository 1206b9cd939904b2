"""Render docs/contract.md from the code, so the document cannot drift: `python -m broker.contract_doc`.

A test regenerates it and compares with the file in the repository.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import msgspec

from broker.kinds import LIFE_SAFETY_EVENTS, UNITS, AvailabilityState, DeviceKind, EventKind, GatewayState
from broker.notices import Notice
from broker.schemas import (
    MAX_PAYLOAD_BYTES,
    DeviceAvailability,
    DeviceEvent,
    GatewayCommand,
    GatewayStatus,
    Message,
    PatrolHeartbeat,
    Telemetry,
    decode_uplink,
    encode,
    priority_of,
)
from broker.topics import (
    BUILDING_OUTPUTS,
    NOTIFY_PREFIX,
    PREFIX,
    availability_topic,
    command_topic,
    event_topic,
    gateway_status_topic,
    patrol_topic,
    telemetry_topic,
)

__all__ = ["render"]

_GW, _DEV = "c01-gw-b03", "c01-b03-2-501-smoke"
_T0 = 1_767_254_400_000  # 2026-01-01T08:00:00Z

EXAMPLES: list[tuple[str, str, Message, str]] = [
    ("Device readings", str(telemetry_topic(_GW, "c01-b03-u2-box")),
     Telemetry(msg_id=f"{_GW}:1042", source_ts_ms=_T0, received_ts_ms=_T0 + 12,
               readings={"residual_current_ma": 38.0, "temperature_c": 41.5, "voltage_v": 221.3, "current_a": 12.4}),
     "QoS 1. One message per device per sample. Unknown values are left out, never sent as 0 or null. "
     "A multi-channel meter names its channels `power_w@1`, `power_w@2`."),
    ("Device event: smoke alarm", str(event_topic(_GW, _DEV)),
     DeviceEvent(msg_id=f"{_GW}:1043", source_ts_ms=_T0 + 1000, received_ts_ms=_T0 + 1004, event=EventKind.SMOKE_ALARM),
     "QoS 1, life-safety: never batched behind telemetry, never evicted. Clears are events too (`smoke_clear`)."),
    ("Device event: SOS press needing a call-back", str(event_topic(_GW, "c01-b03-2-501-sos")),
     DeviceEvent(msg_id=f"{_GW}:1044", source_ts_ms=_T0 + 2000, received_ts_ms=_T0 + 2003, event=EventKind.SOS_PRESS,
                 needs_callback=True, detail="button model known to fire by itself; battery 0 %"),
     "`needs_callback` asks the duty officer to call the resident back before treating it as real or false."),
    ("Drill event", str(event_topic(_GW, _DEV)),
     DeviceEvent(msg_id="drill-7:0001", source_ts_ms=_T0 + 3000, received_ts_ms=_T0 + 3000, event=EventKind.SMOKE_ALARM, drill=True),
     "The drill flag travels end to end; drill alarms never mix with real ones."),
    ("Device availability", str(availability_topic(_GW, "c01-b03-cam04")),
     DeviceAvailability(msg_id=f"{_GW}:1045", source_ts_ms=_T0 + 4000, received_ts_ms=_T0 + 4000,
                        state=AvailabilityState.UNKNOWN, reason="zigbee2mqtt bridge offline"),
     "Retained, QoS 1. `unknown` when the bridge in front of the device is gone; `disabled` when switched off on purpose."),
    ("Gateway status (retained; the Last Will carries state offline)", str(gateway_status_topic(_GW)),
     GatewayStatus(msg_id=f"{_GW}:boot-3", source_ts_ms=_T0, received_ts_ms=_T0, state=GatewayState.ONLINE, software="shouwang-edge 0.1.0"),
     "Retained, QoS 1. Published as `online` on connect; the broker publishes the same payload with `offline` as the Last Will."),
    ("Gateway patrol heartbeat (巡检)", str(patrol_topic(_GW)),
     PatrolHeartbeat(msg_id=f"{_GW}:patrol-88", source_ts_ms=_T0 + 60_000, received_ts_ms=_T0 + 60_000, seq=88, period_s=60.0,
                     outbox_depth=0, rejected_total=3),
     "QoS 1, every `period_s` (default 60 s; the standard's ceiling is 2 h)."),
]
COMMAND_EXAMPLE = (str(command_topic(_GW, "patrol")),
                   GatewayCommand(cmd_id="centre:patrol-2026010108", issued_ts_ms=_T0, args={"patrol_id": "p-2026010108"}))


def _fields(struct: type[msgspec.Struct]) -> list[str]:
    rows = []
    for f in msgspec.structs.fields(struct):
        required = f.required
        default = "" if required else f" (default `{json.dumps(f.default) if f.default is not msgspec.NODEFAULT else '{}'}`)"
        rows.append(f"| `{f.name}` | `{_type_name(f.type)}` | {'yes' if required else 'no'}{default} |")
    return rows


def _type_name(t: Any) -> str:
    name = str(t) if getattr(t, "__args__", None) else str(getattr(t, "__name__", t))
    return name.replace("broker.kinds.", "").replace("typing.", "").replace("|", "\\|")


def render() -> str:
    out = [
        "# The wire contract (version 1)",
        "",
        "Generated from `broker/` by `python -m broker.contract_doc > docs/contract.md`; a test fails when it drifts.",
        "",
        "## Topics",
        "",
        "| topic | payload | direction |",
        "| --- | --- | --- |",
        f"| `{PREFIX}/{{gateway}}/status` | GatewayStatus (retained, Last Will) | gateway → centre |",
        f"| `{PREFIX}/{{gateway}}/patrol` | PatrolHeartbeat | gateway → centre |",
        f"| `{PREFIX}/{{gateway}}/dev/{{device}}/telemetry` | Telemetry | gateway → centre |",
        f"| `{PREFIX}/{{gateway}}/dev/{{device}}/event` | DeviceEvent | gateway → centre |",
        f"| `{PREFIX}/{{gateway}}/dev/{{device}}/availability` | DeviceAvailability (retained) | gateway → centre |",
        f"| `{PREFIX}/{{gateway}}/cmd/{{command}}` | GatewayCommand | centre → gateway |",
        f"| `{NOTIFY_PREFIX}/responder/{{responder}}` | Notice | centre → responder app |",
        f"| `{NOTIFY_PREFIX}/building/{{building}}/{{output}}` | Notice (output: {' or '.join(BUILDING_OUTPUTS)}) | centre → building sounders, displays |",
        "",
        "A gateway publishes only under its own prefix (never `cmd/`) and reads only its own `cmd/` and the notices of",
        "the buildings it serves; only the centre publishes commands and notices. The generated Mosquitto ACL",
        "(`shouwang broker config`) and the embedded broker (logins in `broker-access.json`, no anonymous client)",
        "enforce it. Ids are 1–64 characters of letters, digits, `.`, `_`, `-`.",
        f"Payloads are JSON, at most {MAX_PAYLOAD_BYTES} bytes; unknown fields are refused.",
        "",
        "Every uplink payload carries `msg_id` (unique, kept through retries and replays: the centre de-duplicates by",
        "it), `source_ts_ms` (when the device produced it, Unix ms), `received_ts_ms` (when the gateway received it)",
        "and `drill` (true for drill traffic).",
        "",
        "## Examples",
    ]
    for title, topic, msg, note in EXAMPLES:
        decoded = decode_uplink(topic, encode(msg))  # every example is valid by construction of this document
        out += ["", f"### {title}", "", f"`{topic}` (priority: {priority_of(decoded.message).name.lower()})", "",
                "```json", json.dumps(msgspec.to_builtins(msg), ensure_ascii=False, indent=2), "```", "", note]
    ctopic, cmd = COMMAND_EXAMPLE
    out += ["", "### Command to a gateway", "", f"`{ctopic}`", "", "```json",
            json.dumps(msgspec.to_builtins(cmd), ensure_ascii=False, indent=2), "```"]
    out += ["", "## Schemas"]
    for struct in (Telemetry, DeviceEvent, DeviceAvailability, GatewayStatus, PatrolHeartbeat, GatewayCommand, Notice):
        out += ["", f"### {struct.__name__}", "", (struct.__doc__ or "").strip().split("\n")[0], "",
                "| field | type | required |", "| --- | --- | --- |", *_fields(struct)]
    out += ["", "## Vocabulary", "", "Device kinds: " + ", ".join(f"`{k.value}`" for k in DeviceKind) + ".", "",
            "Event kinds: " + ", ".join(f"`{k.value}`" for k in EventKind) + ".", "",
            "Life-safety events (never evicted, never batched): " + ", ".join(f"`{k.value}`" for k in sorted(LIFE_SAFETY_EVENTS)) + ".", "",
            "Availability states: " + ", ".join(f"`{k.value}`" for k in AvailabilityState) + ".", "",
            "Metric names are snake_case and end in a unit suffix, optionally followed by `@N` for a channel:", "",
            "| suffix | unit |", "| --- | --- |", *[f"| `_{k}` | {v} |" for k, v in UNITS.items()], ""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(render())
