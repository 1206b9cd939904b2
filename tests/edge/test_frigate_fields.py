"""Frigate, topic by topic as its documentation and source publish them (blakeblackshear/frigate
docs/docs/integrations/mqtt.md; frigate/comms/mqtt.py, frigate/stats/util.py, frigate/video/ffmpeg.py,
frigate/comms/dispatcher.py). The 0.12 stats payload is the sample response of the 0.12 docs/docs/integrations/api.md;
the 0.13+ one has the keys frigate/stats/util.py writes under "cameras". Pure: a Router over a parsed config.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from broker.kinds import AvailabilityState
from broker.schemas import DeviceAvailability, Telemetry
from edge.adapters import Context, Mapped, Router, build_adapters
from edge.config import parse_config

NOW_MS = 1_785_853_200_000
_ids = itertools.count()
A = AvailabilityState


def _router() -> Router:
    cfg = parse_config({
        "gateway": "gw-nvr", "lan": {"host": "127.0.0.1", "port": 1}, "uplink": {"host": "127.0.0.1", "port": 1},
        "outbox": {"path": "/nonexistent/outbox.sqlite3"},
        "adapters": [{"dialect": "frigate", "prefix": "frigate", "devices": {
            "back": {"id": "cam-back", "kind": "camera"},
            "front_door": {"id": "cam-front", "kind": "camera"},
        }}],
    })
    return Router(build_adapters(cfg))


def _route(router: Router, topic: str, body: dict[str, Any] | str) -> Mapped:
    raw = body if isinstance(body, str) else json.dumps(body)
    out = router.route(topic, raw.encode(), True, Context(NOW_MS, lambda: f"m{next(_ids)}"))
    assert isinstance(out, Mapped), out
    return out


def _avail(out: Mapped) -> dict[str, AvailabilityState]:
    return {r.device: r.message.state for r in out.messages if isinstance(r.message, DeviceAvailability)}


def _fps(out: Mapped) -> dict[str, float | None]:
    return {r.device: r.message.readings.get("camera_fps") for r in out.messages if isinstance(r.message, Telemetry)}


def test_stats_0_12_layout_from_the_api_docs_sample() -> None:
    body = {"back": {"camera_fps": 5.0, "detection_fps": 1.5, "capture_pid": 27, "pid": 34, "process_fps": 5.1, "skipped_fps": 0.0},
            "detection_fps": 5.0, "detectors": {"coral": {"detection_start": 0.0, "inference_speed": 10.48, "pid": 25321}},
            "service": {"uptime": 10, "version": "0.10.1-8883709", "latest_version": "0.10.1"}}
    out = _route(_router(), "frigate/stats", body)
    assert _fps(out) == {"cam-back": 5.0}
    assert _avail(out) == {"cam-back": A.ONLINE}


def test_stats_0_13_layout_under_cameras_with_totals_at_the_top() -> None:
    cam = {"camera_fps": 0.0, "process_fps": 0.0, "skipped_fps": 0.0, "detection_fps": 0.0, "detection_enabled": True, "pid": 101,
           "capture_pid": None, "ffmpeg_pid": None, "audio_rms": 0.0, "audio_dBFS": 0.0, "connection_quality": "unusable",
           "expected_fps": 5, "reconnects_last_hour": 4, "stalls_last_hour": 0}
    body = {"cameras": {"front_door": cam, "back": cam | {"camera_fps": 5.02, "process_fps": 5.02, "connection_quality": "excellent"}},
            "detectors": {}, "camera_fps": 5.02, "process_fps": 5.02, "skipped_fps": 0.0, "detection_fps": 0.0,
            "service": {"uptime": 3600, "version": "0.16.0"}}
    out = _route(_router(), "frigate/stats", body)
    assert _fps(out) == {"cam-front": 0.0, "cam-back": 5.02}
    assert _avail(out) == {"cam-front": A.OFFLINE, "cam-back": A.ONLINE}


def test_available_online_stopped_and_the_last_will() -> None:
    router = _router()
    assert set(_route(router, "frigate/available", "online").rearmed) == {"cam-back", "cam-front"}
    assert _avail(_route(router, "frigate/available", "stopped")) == {"cam-back": A.UNKNOWN, "cam-front": A.UNKNOWN}
    assert _avail(_route(router, "frigate/available", "offline")) == {"cam-back": A.UNKNOWN, "cam-front": A.UNKNOWN}


def test_status_roles_and_enabled_state() -> None:
    router = _router()
    assert _avail(_route(router, "frigate/back/status/detect", "offline")) == {"cam-back": A.OFFLINE}
    assert _avail(_route(router, "frigate/back/status/record", "online")) == {}, "only detect decides"
    assert _avail(_route(router, "frigate/back/enabled/state", "OFF")) == {"cam-back": A.DISABLED}
    assert _avail(_route(router, "frigate/back/status/audio", "disabled")) == {"cam-back": A.DISABLED}


def test_global_topics_that_are_not_cameras_are_not_unknown_devices() -> None:
    # "profile/state" is retained (mqtt.md "Frigate topics"), so it arrives on every subscribe; restart is a command
    router = _router()
    for topic, payload in (("frigate/profile/state", "none"), ("frigate/restart", ""), ("frigate/camera_activity", "{}")):
        out = _route(router, topic, payload)
        assert out.messages == ()
        assert "nothing for safety" in (out.note or ""), topic
