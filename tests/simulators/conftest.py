"""Fixtures of the simulator tests: a fleet on the sample community, on simulated time."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from backend.sites import SiteDirectory
from simulators.fleet import Fleet
from simulators.signals import SimulationProfile
from tests.simulators.helpers import START


@pytest.fixture
def make_fleet(sample_site: SiteDirectory) -> Callable[..., Fleet]:
    def make(seed: int = 7, profile: SimulationProfile | None = None) -> Fleet:
        return Fleet(sample_site, seed=seed, start=START, profile=profile or SimulationProfile.quiet())

    return make
