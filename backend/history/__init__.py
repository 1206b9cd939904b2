"""The alarm history (everything kept, ≥ 1 year): filtered keyset pages, CSV / XLSX exports and one alarm's record.

query (SQL over the alarm store) → record (one alarm's three logs merged) → export (CSV, XLSX, printable HTML);
the routes are backend.api.console_history.
"""

from backend.history.query import MAX_PAGE, BadCursor, HistoryFilter, HistoryPage, HistoryRow, iter_rows, page
from backend.history.record import AlarmSheet, RecordEntry, read_sheet

__all__ = ["MAX_PAGE", "AlarmSheet", "BadCursor", "HistoryFilter", "HistoryPage", "HistoryRow", "RecordEntry", "iter_rows", "page", "read_sheet"]
