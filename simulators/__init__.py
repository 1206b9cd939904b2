"""simulators: simulated devices of every class and their gateways, from a site directory.

signals (numpy shapes) → fleet (state, stepping, injections) → native / dialects (encoders) → live (MQTT).
The live loop runs on an injected broker.clock.Clock (a ScaledClock at `speed` by default); pure code reads no clock.
"""

from simulators.fleet import Fleet, UnknownTarget
from simulators.live import CommunitySimulator, publish_event, run_community
from simulators.signals import SimulationProfile

__all__ = [
    "CommunitySimulator",
    "Fleet",
    "SimulationProfile",
    "UnknownTarget",
    "publish_event",
    "run_community",
]
