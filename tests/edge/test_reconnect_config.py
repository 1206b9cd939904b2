"""The reconnect backoff's numbers come from configuration: a gateway's lan./uplink.reconnect_* keys and the
backend's [broker] reconnect_* settings fill broker.connection.Backoff, and impossible numbers are refused at load."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from backend.settings import load_settings
from broker.connection import Backoff
from edge.config import LanConfig, UplinkConfig


def test_the_edge_keys_fill_the_backoff() -> None:
    assert LanConfig().backoff() == Backoff(initial_s=0.2, maximum_s=10.0, jitter=0.5)
    assert UplinkConfig().backoff() == Backoff(initial_s=0.5, maximum_s=30.0, jitter=0.5)
    assert UplinkConfig(reconnect_min_s=1, reconnect_max_s=8, reconnect_jitter=0.25).backoff() == Backoff(1, 8, 0.25)
    assert LanConfig(reconnect_min_s=0.1, reconnect_max_s=2, reconnect_jitter=0).backoff() == Backoff(0.1, 2, 0)


@pytest.mark.parametrize("bad", [{"reconnect_jitter": 1.0}, {"reconnect_jitter": -0.5}, {"reconnect_min_s": 5, "reconnect_max_s": 1}])
def test_impossible_edge_numbers_are_refused(bad: dict[str, float]) -> None:
    for cls in (LanConfig, UplinkConfig):
        with pytest.raises(ValueError, match="reconnect"):
            cls(**bad)  # type: ignore[arg-type]


def test_the_backend_settings_fill_the_backoff() -> None:
    s = load_settings(None, broker={"reconnect_initial_s": 0.25, "reconnect_max_s": 4, "reconnect_jitter": 0.1})
    assert s.broker.backoff() == Backoff(initial_s=0.25, maximum_s=4.0, jitter=0.1)
    with pytest.raises(ValidationError, match="reconnect"):
        load_settings(None, broker={"reconnect_initial_s": 9, "reconnect_max_s": 4})
