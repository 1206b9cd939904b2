"""Patrol (巡检): a scheduled synthetic test per gateway, sent by the centre, answered by the edge through the whole
uplink, and an alarm to the platform's owner when one does not come back (GB 50440: at most every 2 h).

book (pure: when, outstanding, missed) → scheduler (MQTT commands, the ingest hook, PatrolTap) → alarms (store).
"""

from backend.patrol.alarms import PATROL_MISSED, PatrolAlarms
from backend.patrol.book import PATROL_CEILING_S, PatrolBook, PatrolMiss, PatrolReturn, PatrolSent, PatrolSettings
from backend.patrol.scheduler import PatrolAlarmSink, PatrolScheduler, PatrolTap

__all__ = [
    "PATROL_CEILING_S",
    "PATROL_MISSED",
    "PatrolAlarmSink",
    "PatrolAlarms",
    "PatrolBook",
    "PatrolMiss",
    "PatrolReturn",
    "PatrolScheduler",
    "PatrolSent",
    "PatrolSettings",
    "PatrolTap",
]
