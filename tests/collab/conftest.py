"""The API rig of tests/api (the real alarm service, a live feed, the sample site and a login per role) for the
collaboration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend.sites import SiteDirectory
from tests.api.conftest import ApiRig, make_rig


@pytest.fixture
async def rig(tmp_path: Path, sample_site: SiteDirectory) -> AsyncIterator[ApiRig]:
    async with make_rig(tmp_path, sample_site) as r:
        yield r
