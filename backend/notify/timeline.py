"""The notices' receipts on an alarm's timeline (GET /api/alarms/{id}): per person and channel, each stage as it changed.

`receipt_timeline` reads the receipts' stage changes (backend.notify.receipts, table notify_receipt_events) directly,
so any backend of a cluster serves them, and returns nothing where the table does not exist yet. Each entry has
`source` "receipt", `what` the stage (sent, delivered, read, answered, failed, withheld_drill, rate_limited,
no_channel), `channel`, the person (`actor`: their name; `contact`: their id) and `detail` (a failure's reason,
"pressed 1" for a call answered with the accept key). backend.i18n.timeline_text words it for the reader:
短信 已送达, 语音 已接听·按1确认, 短信 失败（原因）...; times are ms since the epoch, shown in the site's zone.
The duty console's own copy of each notice is not listed: the ladder's entries already say who was paged.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from backend.notify.receipts import receipt_events

__all__ = ["receipt_timeline"]


def receipt_timeline(engine: sa.Engine, alarm_id: str) -> list[dict[str, Any]]:
    e = receipt_events.c
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(e.at_ms, e.key, e.channel, e.contact, e.contact_name, e.stage, e.detail, e.drill)
                                .where(e.alarm_id == alarm_id, e.channel != "console").order_by(e.at_ms, e.id)).all()
    except (sa.exc.OperationalError, sa.exc.ProgrammingError):  # no such table: no receipt was ever stored here
        return []
    return [{"at_ms": r.at_ms, "source": "receipt", "actor": r.contact_name or r.contact, "contact": r.contact, "what": r.stage,
             "kind": r.stage, "channel": r.channel, "detail": r.detail, "key": r.key, "drill": r.drill} for r in rows]
