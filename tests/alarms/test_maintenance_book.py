"""The alarm book's side of maintenance windows (pure, no I/O): life safety only under the override, a device's
channel alarms under its window, and what a window's end does with each alarm it held."""

from __future__ import annotations

from alerting.book import AlarmBook, MaintenanceWindow
from alerting.lifecycle import AlarmState
from alerting.model import Severity, Signal, SignalKind

T0 = 1_767_225_600_000
S = 1000
HOUR = 3600 * S


def raise_(subject: str, alarm_type: str, t: int, *, life_safety: bool = False) -> Signal:
    return Signal(SignalKind.RAISE, alarm_type, subject, t, Severity.CRITICAL if life_safety else Severity.MINOR, life_safety)


def clear(subject: str, alarm_type: str, t: int) -> Signal:
    return Signal(SignalKind.CLEAR, alarm_type, subject, t)


def test_a_window_without_the_override_never_silences_life_safety() -> None:
    book = AlarmBook()
    book.signal(raise_("device:s1", "smoke", T0, life_safety=True), T0)
    assert book.add_window(MaintenanceWindow("device:s1", T0 + HOUR, "duty", "meter work"), T0) == []
    [p] = book.signal(raise_("device:s1", "tamper", T0 + S, life_safety=True), T0 + S)
    assert p.alarm.state is AlarmState.RAISED
    [p] = book.signal(raise_("device:s1", "low_battery", T0 + S), T0 + S)
    assert p.alarm.state is AlarmState.SILENCED, "the same device's technical alarm is held"


def test_a_devices_channel_alarms_fall_under_its_window() -> None:
    book = AlarmBook()
    book.add_window(MaintenanceWindow("device:e1", T0 + HOUR, "duty", "breaker work"), T0)
    [p] = book.signal(raise_("device:e1@2", "residual_current", T0), T0)
    assert p.alarm.state is AlarmState.SILENCED


def test_the_end_of_a_window_re_evaluates_each_life_safety_alarm_it_held() -> None:
    book = AlarmBook()
    book.add_window(MaintenanceWindow("device:s1", T0 + HOUR, "duty", "detector test", life_safety=True), T0)
    book.add_window(MaintenanceWindow("device:s2", T0 + HOUR, "duty", "detector test", life_safety=True), T0)
    book.add_window(MaintenanceWindow("device:s3", T0 + HOUR, "duty", "detector test", life_safety=True), T0)
    for d in ("s1", "s2", "s3"):
        book.signal(raise_(f"device:{d}", "smoke", T0 + S, life_safety=True), T0 + S)
    [p] = book.signal(clear("device:s2", "smoke", T0 + 2 * S), T0 + 2 * S)
    assert (p.alarm.state, [e.move for e in p.audit]) == (AlarmState.SILENCED, ["cleared_in_window"])
    book.signal(clear("device:s3", "smoke", T0 + 2 * S), T0 + 2 * S)
    [p] = book.signal(raise_("device:s3", "smoke", T0 + 3 * S, life_safety=True), T0 + 3 * S)
    assert [e.move for e in p.audit] == ["alarm_in_window"]
    ended = {p.alarm.key.subject: p.alarm.state for p in book.end_window("device:s1", T0 + 4 * S)
             + book.end_window("device:s2", T0 + 4 * S) + book.end_window("device:s3", T0 + 4 * S)}
    assert ended == {"device:s1": AlarmState.RAISED, "device:s2": AlarmState.AWAITING_VERIFICATION, "device:s3": AlarmState.RAISED}
