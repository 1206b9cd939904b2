"""The site directory's memory: a generated community is read without holding every record parsed at once, and repeated
values (gateway, building, location...) are one string each; a fast-path line that is not JSON still reads right."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from backend.sites import SiteDirectoryInvalid, generate_site_document, parse_site_directory, write_site_document


@pytest.fixture(scope="module")
def community(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("site") / "community.yaml"
    write_site_document(generate_site_document(1, seed=7), path)
    return path, path.read_text(encoding="utf-8")


def test_a_community_is_read_at_a_fraction_of_its_records_parsed(community: tuple[Path, str]) -> None:
    # Before issue 19 every record was held parsed (a dict, its key lines, its strings) until all sections were
    # checked: ~3,250 B a device at the peak and ~710 B kept; the process kept much of the peak (RSS ~3.2 KB a device).
    path, text = community
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        sites = parse_site_directory(text, str(path))
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    n = len(sites.devices)
    assert n > 5_000
    assert (peak - before) / n < 2_000
    assert (kept - before) / n < 600


def test_repeated_values_are_one_string(community: tuple[Path, str]) -> None:
    path, text = community
    sites = parse_site_directory(text, str(path))
    by_gateway = sites.devices_by_gateway
    for devices in list(by_gateway.values())[:3]:
        assert len({id(d.gateway) for d in devices}) == 1
        assert len({id(d.building) for d in devices}) == 1
    household = next(d.household for d in sites.devices.values() if d.household is not None)
    assert household is not None
    assert household is sites.households[household].id


def test_a_line_shaped_like_json_that_is_yaml_reads_through_pyyaml_with_its_line(community: tuple[Path, str]) -> None:
    # Every line has the fast path's shape, but one record is YAML flow style (not JSON): the whole file is read
    # again by PyYAML, and a mistake in it is still reported at its own line.
    path, text = community
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  - {\"id\": ") and '"kind": "smoke"' in line)
    lines[at] = "  - {id: stray-smoke, kind: smoke, gateway: c01-gw-b01, building: no-such-building}"
    with pytest.raises(SiteDirectoryInvalid) as caught:
        parse_site_directory("\n".join(lines) + "\n", str(path))
    assert [(e.line, "no-such-building" in e.message) for e in caught.value.errors] == [(at + 1, True)]
    lines[at] = "  - {id: stray-smoke, kind: smoke, gateway: c01-gw-b01, building: c01-b01}"
    sites = parse_site_directory("\n".join(lines) + "\n", str(path))
    assert sites.devices["stray-smoke"].building == "c01-b01"
