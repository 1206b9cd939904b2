"""simulators: simulated devices of every class and their gateways, from a site directory.

signals (numpy shapes) → fleet (state, stepping, injections) → native / dialects (encoders) → live (MQTT).
"""

from simulators.clock import ScaledClock, SimClock, VirtualClock
from simulators.fleet import Fleet, UnknownTarget
from simulators.live import CommunitySimulator, publish_event, run_community
from simulators.signals import SimulationProfile

__all__ = [
    "CommunitySimulator",
    "Fleet",
    "ScaledClock",
    "SimClock",
    "SimulationProfile",
    "UnknownTarget",
    "VirtualClock",
    "publish_event",
    "run_community",
]
