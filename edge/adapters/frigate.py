"""Frigate NVR: `{prefix}/available`, `{prefix}/stats`, `{prefix}/{camera}/status/{role}`, `.../enabled/state`.

How this works: Frigate is a bridge in front of the cameras. `available` offline (its Last Will) or stopped
makes every configured camera UNKNOWN (cause suppresses effect: one NVR down is not fifty camera alarms);
online re-arms their liveness. `stats` (every stats_interval, 60 s by default) is the cameras' heartbeat:
cameras sit under "cameras" since 0.13 and at the top level before; camera_fps 0 means the camera is
offline (Frigate FAQ), above 0 online. Availability is sent only when it changes; fps readings every time.
`{camera}/status/detect` online/offline (0.17+) is the stream's own state; `disabled` on any role, or
`enabled/state` OFF, means the operator turned the camera off: DISABLED, never an offline alarm. Object
detection topics (events, reviews, person counts) carry nothing for safety monitoring.

Checked against Frigate's own docs/docs/integrations/mqtt.md and source (frigate/comms/mqtt.py: `available` online on
connect, `stopped` on a normal stop since 2026-03 (#22527; `offline` before, like the Last Will); frigate/stats/util.py:
per-camera stats under "cameras" since #8151 (0.13), top-level camera keys before; frigate/video/ffmpeg.py:
`status/detect|record` and frigate/events/audio.py `status/audio`; frigate/comms/dispatcher.py: `enabled/state`).
"""

from __future__ import annotations

from typing import Any, Final

from broker.kinds import AvailabilityState
from edge.adapters.base import Adapter, Context, Emitter, KnownDevice, Outcome, RejectCode, as_number, decode_json, on_off

__all__ = ["FrigateAdapter"]

_GLOBAL_TOPICS: Final = frozenset(
    {"events", "reviews", "tracked_object_update", "camera_activity", "audio_detections", "notifications", "onConnect", "triggers",
     "model_state", "profile", "restart"}
)  # docs/docs/integrations/mqtt.md "Frigate topics": `profile/state` is retained, so it arrives on every subscribe


class FrigateAdapter(Adapter):
    dialect = "frigate"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.base = self.prefixes[0]
        self._state: dict[str, AvailabilityState] = {}

    def _set(self, out: Emitter, cam: KnownDevice, state: AvailabilityState, reason: str, force: bool = False) -> None:
        if self._state.get(cam.key) is AvailabilityState.DISABLED and state is not AvailabilityState.DISABLED and not force:
            return  # an operator's "off" wins until the camera is enabled again
        if force or self._state.get(cam.key) is not state:
            self._state[cam.key] = state
            out.availability(cam, state, reason)

    def _handle(self, topic: str, payload: bytes, retained: bool, ctx: Context) -> Outcome:
        rest = topic[len(self.base) + 1 :]
        out = Emitter(self.name, ctx)
        text = payload.decode("utf-8", errors="replace").strip()
        if rest == "available":
            return self._available(out, text, topic)
        if rest == "stats":
            return self._stats(out, payload, topic)
        cam_key, _, sub = rest.partition("/")
        cam = self.devices.get(cam_key)
        if cam is None:
            if cam_key in _GLOBAL_TOPICS:
                return out.done(f"frigate {cam_key} (object detection) carries nothing for safety monitoring")
            return self.unknown_device(cam_key, topic)
        if sub.startswith("status/"):
            role = sub[len("status/") :]
            value = text.lower()
            if value == "disabled":
                self._set(out, cam, AvailabilityState.DISABLED, f"frigate {role} disabled by the operator", force=True)
                return out.done("camera already disabled", cam)
            if value not in ("online", "offline"):
                return self.reject(RejectCode.MALFORMED, f"status {text[:40]!r} is not online, offline or disabled", cam, topic)
            if role != "detect":
                return out.done(f"only the detect stream decides camera availability; {role} is {value}", cam)
            if value == "online":
                out.hear(cam)
                self._set(out, cam, AvailabilityState.ONLINE, "frigate detect stream online")
            else:
                self._set(out, cam, AvailabilityState.OFFLINE, "frigate detect stream offline (ffmpeg restarting)")
            return out.done("no availability change", cam)
        if sub == "enabled/state":
            state = on_off(text)
            if state is None:
                return self.reject(RejectCode.MALFORMED, f"enabled/state {text[:40]!r} is neither ON nor OFF", cam, topic)
            if not state:
                self._set(out, cam, AvailabilityState.DISABLED, "camera processing turned off by the operator", force=True)
            elif self._state.get(cam.key) is AvailabilityState.DISABLED:
                self._set(out, cam, AvailabilityState.UNKNOWN, "camera re-enabled: waiting for its stream status", force=True)
                out.rearm([cam])
            return out.done("no availability change", cam)
        return out.done(f"frigate {sub or rest} (detection, recording controls) carries nothing for safety monitoring", cam)

    def _available(self, out: Emitter, text: str, topic: str) -> Outcome:
        value = text.lower()
        if value == "online":
            out.rearm(self.devices.values())
            return out.done("frigate online: cameras re-armed, their stats will say whether each stream runs")
        if value in ("offline", "stopped"):
            why = "frigate stopped (planned): no video analytics" if value == "stopped" else "frigate offline (its Last Will)"
            for cam in self.devices.values():
                if self._state.get(cam.key) is not AvailabilityState.DISABLED:
                    self._state[cam.key] = AvailabilityState.UNKNOWN
                    out.availability(cam, AvailabilityState.UNKNOWN, why)
            return out.done(f"{why}; no enabled cameras configured")
        return self.reject(RejectCode.MALFORMED, f"available {text[:40]!r} is not online, offline or stopped", topic=topic)

    def _stats(self, out: Emitter, payload: bytes, topic: str) -> Outcome:
        obj, err = decode_json(payload)
        if err or not isinstance(obj, dict):
            return self.reject(RejectCode.MALFORMED, err or "stats must be a JSON object", topic=topic)
        cameras = obj.get("cameras")
        if not isinstance(cameras, dict):  # Frigate <= 0.12: cameras are top-level keys
            cameras = {k: v for k, v in obj.items() if isinstance(v, dict) and "camera_fps" in v}
        seen = 0
        for key, stats in cameras.items():
            cam = self.devices.get(key)
            if cam is None or not isinstance(stats, dict):
                continue
            seen += 1
            fps = as_number(stats.get("camera_fps"))
            out.readings(
                cam,
                {
                    "camera_fps": fps,
                    "detection_fps": as_number(stats.get("detection_fps")),
                    "process_fps": as_number(stats.get("process_fps")),
                    "skipped_fps": as_number(stats.get("skipped_fps")),
                },
            )
            if fps is None:
                continue
            if fps > 0:
                out.hear(cam)
                self._set(out, cam, AvailabilityState.ONLINE, f"frigate stats: {fps:g} fps")
            else:
                self._set(out, cam, AvailabilityState.OFFLINE, "frigate stats: camera_fps 0 (no frames from the camera)")
        if not seen:
            return out.done("stats name none of the configured cameras")
        return out.done("stats without readings for the configured cameras")
