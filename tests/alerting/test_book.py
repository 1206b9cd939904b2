"""The alarm book's own promises: repeats, severity that only rises, flapping, maintenance windows, suppression."""

from __future__ import annotations

from alerting.book import AlarmBook, BookSettings, MaintenanceWindow
from alerting.lifecycle import AlarmState
from alerting.model import Severity, Signal, SignalKind

T0 = 1_767_225_600_000
S = 1000


def raise_(subject: str, alarm_type: str, t: int, severity: Severity = Severity.MINOR, *, life_safety: bool = False,
           cause: str | None = None) -> Signal:
    return Signal(SignalKind.RAISE, alarm_type, subject, t, severity, life_safety, cause=cause)


def clear(subject: str, alarm_type: str, t: int) -> Signal:
    return Signal(SignalKind.CLEAR, alarm_type, subject, t)


def test_repeats_count_and_severity_rises_with_an_audit_note_but_never_falls() -> None:
    book = AlarmBook()
    [p] = book.signal(raise_("device:e1", "electrical", T0, Severity.MINOR), T0)
    [p] = book.signal(raise_("device:e1", "electrical", T0 + S, Severity.CRITICAL), T0 + S)
    assert (p.alarm.occurrences, p.alarm.severity) == (2, Severity.CRITICAL)
    assert [e.move for e in p.audit] == ["severity_raised"]
    [p] = book.signal(raise_("device:e1", "electrical", T0 + 2 * S, Severity.MINOR), T0 + 2 * S)
    assert (p.alarm.occurrences, p.alarm.severity, p.audit) == (3, Severity.CRITICAL, ())
    assert (p.alarm.first_seen_ms, p.alarm.last_seen_ms) == (T0, T0 + 2 * S)


def test_a_flapping_camera_is_marked_and_held_open_until_quiet() -> None:
    book = AlarmBook(BookSettings(flap_changes=4, flap_window_s=600))
    ids = set()
    t = T0
    for _ in range(2):
        [p] = book.signal(raise_("device:c1", "comm_lost", t), t)
        ids.add(p.alarm.id)
        t += 30 * S
        book.signal(clear("device:c1", "comm_lost", t), t)
        last_clear = t
        t += 30 * S
    [a] = book.open.values()
    assert a.flapping, "raise/clear/raise/clear within 10 min"
    assert a.state is AlarmState.RAISED, "a flapping alarm is not resolved on its clear"
    assert book.tick(last_clear + 599 * S) == []
    [p] = book.tick(last_clear + 600 * S)
    assert p.alarm.state is AlarmState.CLOSED
    assert [e.note for e in p.audit] == ["stable again after flapping"]


def test_a_maintenance_window_silences_open_and_new_alarms_until_it_ends() -> None:
    book = AlarmBook()
    book.signal(raise_("device:s1", "low_battery", T0), T0)
    [p] = book.add_window(MaintenanceWindow("device:s1", T0 + 3600 * S, "tech:li", "replacing detector", life_safety=True), T0)
    assert (p.alarm.state, p.alarm.silenced_by) == (AlarmState.SILENCED, "tech:li")
    [p] = book.signal(raise_("device:s1", "tamper", T0 + S, life_safety=True), T0 + S)
    assert p.alarm.state is AlarmState.SILENCED
    assert [e.actor for e in p.audit] == ["system", "tech:li"]
    back = book.tick(T0 + 3600 * S)
    assert sorted(p.alarm.state for p in back) == [AlarmState.RAISED, AlarmState.RAISED]


def test_an_alarm_whose_cause_is_open_starts_suppressed() -> None:
    book = AlarmBook()
    book.signal(raise_("building:b1", "power_outage", T0), T0)
    [p] = book.signal(raise_("device:c1", "comm_lost", T0, cause="building:b1|power_outage"), T0)
    assert p.alarm.state is AlarmState.SUPPRESSED
    [p] = book.signal(raise_("device:c2", "comm_lost", T0, cause="building:b9|power_outage"), T0)
    assert p.alarm.state is AlarmState.RAISED, "a cause that is not open explains nothing"
