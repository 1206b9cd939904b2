"""Policy files: the default ladder parses and routes as issue 6 asks; mistakes name their place."""

from __future__ import annotations

from importlib import resources
from typing import Any

import pytest
import yaml

from alerting.ladder import DEFAULT_POLICIES_RESOURCE, PolicyError, PolicySet, parse_policies
from alerting.lifecycle import AlarmState
from alerting.model import Severity
from tests.ladder.fakes import POLICIES


def default() -> PolicySet:
    return parse_policies(yaml.safe_load((resources.files("alerting") / DEFAULT_POLICIES_RESOURCE).read_text(encoding="utf-8")))


def test_default_fire_policy_pages_grid_worker_and_fire_station_with_3_minute_on_scene() -> None:
    ps = default()
    fire = ps.select("smoke", Severity.CRITICAL)
    assert fire.entry == ("grid_worker", "fire_station")
    assert dict(ps.rung("fire_station").deadlines) == {AlarmState.ACKNOWLEDGED: 60.0, AlarmState.ON_SCENE: 180.0}
    assert fire.verify_window_s is not None
    assert ps.select("confirmed_fire", Severity.CRITICAL).name == "fire"


def test_default_electrical_prewarning_goes_to_the_grid_worker_alone() -> None:
    ps = default()
    for t in ("electrical", "residual_current", "cable_temperature"):
        p = ps.select(t, Severity.MAJOR)
        assert p.name == "electrical_prewarning"
        assert len(p.entry) == 1
        assert ps.rung(p.entry[0]).seat.value == "grid_worker"


def test_default_sos_of_a_vulnerable_resident_includes_family() -> None:
    ps = default()
    vulnerable = ps.select("sos", Severity.CRITICAL, vulnerable=True)
    assert vulnerable.callback is not None  # the grid worker calls back first (回访); a failed call-back adds the family
    assert "family" in vulnerable.callback.escalate_to
    assert "family" not in ps.select("sos", Severity.CRITICAL, vulnerable=False).entry
    assert ps.select("communication_lost", Severity.MINOR).name == "default"


def _bad(mutate: Any) -> dict[str, Any]:
    import copy

    data: dict[str, Any] = copy.deepcopy(POLICIES)
    mutate(data)
    return data


@pytest.mark.parametrize(("mutate", "where"), [
    (lambda d: d["policies"][0].update(entry=["nobody"]), "policies[0] (fire)"),
    (lambda d: d["rungs"]["grid_worker"]["deadlines"].update(acknowledged=-5), "rungs.grid_worker.deadlines.acknowledged"),
    (lambda d: d["rungs"]["grid_worker"]["deadlines"].update(raised=5), "rungs.grid_worker.deadlines"),
    (lambda d: d["rungs"]["grid_worker"].update(seat="mayor"), "rungs.grid_worker"),
    (lambda d: d["policies"].pop(), "policies[3]"),
    (lambda d: d["policies"][0].update(entry=[]), "policies[0] (fire).entry"),
    (lambda d: d["rungs"]["family"].update(colour="red"), "rungs.family"),
])
def test_mistakes_are_refused_with_their_place(mutate: Any, where: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_policies(_bad(mutate))
    assert err.value.where == where
