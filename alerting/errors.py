"""The root of every error the alerting core raises, and the whole tree in one picture.

    AlertingError
    ├── LifecycleError           alerting.lifecycle: a move the lifecycle table does not allow
    │   ├── IllegalMove          this state cannot take this move (carries state and move)
    │   ├── ActorRequired        a person's move without a person
    │   └── UnknownAlarm         alerting.book: no open alarm with that id
    ├── RuleConfigError          alerting.config: a rules mapping is wrong, with the place (also a ValueError)
    ├── PolicyError              alerting.ladder.policy: a ladder policy is wrong, with the place (also a ValueError)
    └── LadderError              alerting.ladder.engine
        ├── UnknownResponder     a decline from someone the ladder did not page
        └── CallbackError        an SOS call-back (回访) outcome the ladder cannot take
            ├── NoCallback       the alarm's policy opens no call-back (not an SOS press)
            ├── CallbackRecorded the outcome is already recorded
            └── CallbackClosed   the ladder has stopped (the alarm ended)

The core does no I/O, so nothing third-party is translated here; the backend subclasses RuleConfigError for
its rules file (backend.alarms.rules.RulesFileError). tests/test_exception_trees.py fails when an exception
defined anywhere in alerting/ is not under `AlertingError`.
"""

from __future__ import annotations

__all__ = ["AlertingError"]


class AlertingError(Exception):
    """Base of every error the alerting package raises."""
