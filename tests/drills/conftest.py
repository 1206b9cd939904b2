"""A small site directory for drills: 1 community, 2 grids of 3 buildings (the shipped scenarios resolve in it)."""

from __future__ import annotations

import json

import pytest

from backend.sites import SiteDirectory, generate_site_document
from backend.sites.loader import parse_site_directory


@pytest.fixture(scope="session")
def small_site() -> SiteDirectory:
    return parse_site_directory(json.dumps(generate_site_document(1, grids=2, buildings_per_grid=3), ensure_ascii=False), "small-site")
