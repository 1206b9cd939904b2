"""The embedded time-series store: SQLite in WAL mode, partitioned by day, with incremental rollups.

How this works:
- `series` maps (device, metric) to a small integer id and carries the device's tags (community, grid,
  building, kind) from the site directory; ids are cached in memory, so a reading costs an integer, not
  two strings, in every index.
- Raw points live in one table per UTC day, `raw_<day>`, a WITHOUT ROWID table clustered by
  (series_id, ts_ms): one device's day is a contiguous range, read with a single index seek, and the
  primary key makes writes idempotent. Partitions keep each B-tree small (inserts stay fast) and make
  retention a DROP TABLE instead of a huge DELETE.
- Rollups (1 minute per day partition, 1 hour per 30-day partition) hold min, max, sum and count per
  (series, bucket). They are maintained in the same transaction as the raw insert, from the rows that were
  actually new: a batch goes into a temp staging table, rows already stored are removed from it, the rest
  are inserted and merged into the rollups with an UPSERT. So a replayed batch changes nothing, and a crash
  leaves raw points and rollups consistent.
- `latest` keeps the newest value per series, for the console's "current values".
- One write connection (used by one writer thread at a time, under a lock) and one read connection; WAL lets
  readers run while a batch commits. synchronous=NORMAL: a commit survives a crash of the process; the
  last commits before a power cut may be lost (ingest's journal covers the same window).

Invariants: every raw row's series exists; rollup(series, bucket).count equals the number of raw rows in
that bucket (until retention drops the raw partition); a partition name is derived from its key only.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from backend.store.db import check_sqlite_file
from backend.store.timeseries.model import (
    HOUR_MS,
    MINUTE_MS,
    InvalidQuery,
    LatestValue,
    Reading,
    Resolution,
    SeriesBucket,
    SeriesResult,
    StoredReading,
    StoreUnavailable,
    TagDirectory,
    choose_resolution,
)

__all__ = ["SqliteTimeSeries"]

DAY_MS = 86_400_000
_HOUR_PARTITION_MS = 30 * DAY_MS  # 1-hour rollups of a month in one table: 720 buckets per series
_PARTITION_MS = {"raw": DAY_MS, "m1": DAY_MS, "h1": _HOUR_PARTITION_MS}
_PARTITION_NAME = re.compile(r"(raw|m1|h1)_(\d+)")
_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    device TEXT NOT NULL,
    metric TEXT NOT NULL,
    community TEXT NOT NULL,
    grid TEXT NOT NULL,
    building TEXT NOT NULL,
    kind TEXT NOT NULL,
    UNIQUE (device, metric)
);
CREATE INDEX IF NOT EXISTS series_building ON series (building, metric);
CREATE TABLE IF NOT EXISTS latest (series_id INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, value REAL NOT NULL);
"""


class SqliteTimeSeries:
    name = "sqlite"

    def __init__(
        self,
        path: Path,
        sites: TagDirectory,
        *,
        raw_retention_days: int = 30,
        minute_retention_days: int = 90,
        hour_retention_days: int = 400,
        cache_mib: int = 64,
    ) -> None:
        self.path = path
        self._tags = sites
        self._retention_ms = {"raw": raw_retention_days * DAY_MS, "m1": minute_retention_days * DAY_MS, "h1": hour_retention_days * DAY_MS}
        path.parent.mkdir(parents=True, exist_ok=True)
        self._w = self._connect(cache_mib)
        self._r = self._connect(max(8, cache_mib // 4))
        self._wlock = threading.Lock()
        self._rlock = threading.Lock()
        self._w.executescript(_SCHEMA)
        self._w.execute(
            "CREATE TEMP TABLE staging (series_id INTEGER NOT NULL, ts_ms INTEGER NOT NULL, value REAL NOT NULL, "
            "PRIMARY KEY (series_id, ts_ms)) WITHOUT ROWID"
        )
        self._series: dict[tuple[str, str], int] = {(d, m): i for i, d, m in self._w.execute("SELECT id, device, metric FROM series")}
        self._next_id = max(self._series.values(), default=0) + 1
        self._partitions: set[str] = {
            n for (n,) in self._w.execute("SELECT name FROM sqlite_master WHERE type = 'table'") if _PARTITION_NAME.fullmatch(n)
        }
        self._down: str | None = None

    def _connect(self, cache_mib: int) -> sqlite3.Connection:
        check_sqlite_file(Path(self.path), "the time-series store")
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute(f"PRAGMA cache_size = {-1024 * cache_mib}")
        return conn

    # -- failure injection for tests and drills: a store that refuses every call while "down" ------------

    def set_down(self, why: str | None) -> None:
        """Make every call raise StoreUnavailable(why) until set_down(None): the outage drill of docs/ingest.md."""
        self._down = why

    def _check_up(self) -> None:
        if self._down is not None:
            raise StoreUnavailable(self.name, self._down)

    # -- writes -----------------------------------------------------------------------------------------

    def write(self, readings: Sequence[Reading]) -> int:
        self._check_up()
        by_day: dict[int, list[tuple[int, int, float]]] = defaultdict(list)
        new_series: list[tuple[int, str, str, str, str, str, str]] = []
        ids = self._series
        with self._wlock:
            next_id = self._next_id
            for r in readings:
                if r.drill:
                    continue  # drill readings go to alerting, never into the real history
                sid = ids.get((r.device_id, r.metric))
                if sid is None:
                    sid = next_id
                    next_id += 1
                    t = self._tags.tags(r.device_id)
                    new_series.append((sid, r.device_id, r.metric, t.community, t.grid, t.building, t.kind))
                    ids[(r.device_id, r.metric)] = sid
                by_day[r.source_ts_ms // DAY_MS].append((sid, r.source_ts_ms, r.value))
            try:
                new = self._write_locked(by_day, new_series)
            except sqlite3.Error as exc:
                for s in new_series:  # the transaction rolled back: forget the ids it would have created
                    ids.pop((s[1], s[2]), None)
                raise StoreUnavailable(self.name, f"{type(exc).__name__}: {exc}") from exc
            self._next_id = next_id
            return new

    def _write_locked(self, by_day: dict[int, list[tuple[int, int, float]]], new_series: list[tuple[int, str, str, str, str, str, str]]) -> int:
        cur = self._w.cursor()
        new = 0
        cur.execute("BEGIN IMMEDIATE")
        try:
            if new_series:
                cur.executemany("INSERT INTO series (id, device, metric, community, grid, building, kind) VALUES (?, ?, ?, ?, ?, ?, ?)", new_series)
            for day, rows in by_day.items():
                raw = self._ensure(cur, "raw", day * DAY_MS)
                m1 = self._ensure(cur, "m1", day * DAY_MS)
                h1 = self._ensure(cur, "h1", day * DAY_MS)
                cur.execute("DELETE FROM temp.staging")
                cur.executemany("INSERT OR IGNORE INTO temp.staging VALUES (?, ?, ?)", rows)
                cur.execute(f"DELETE FROM temp.staging WHERE EXISTS (SELECT 1 FROM {raw} r WHERE r.series_id = staging.series_id AND r.ts_ms = staging.ts_ms)")  # noqa: S608
                cur.execute(f"INSERT INTO {raw} (series_id, ts_ms, value) SELECT series_id, ts_ms, value FROM temp.staging")  # noqa: S608
                new += cur.rowcount
                for table, width in ((m1, MINUTE_MS), (h1, HOUR_MS)):
                    cur.execute(
                        f"INSERT INTO {table} (series_id, bucket_ms, lo, hi, total, n) "  # noqa: S608
                        f"SELECT series_id, ts_ms - ts_ms % {width}, min(value), max(value), sum(value), count(*) FROM temp.staging WHERE true GROUP BY 1, 2 "
                        "ON CONFLICT (series_id, bucket_ms) DO UPDATE SET lo = min(lo, excluded.lo), hi = max(hi, excluded.hi), "
                        "total = total + excluded.total, n = n + excluded.n"
                    )
                cur.execute(
                    "INSERT INTO latest (series_id, ts_ms, value) SELECT series_id, max(ts_ms), value FROM temp.staging WHERE true GROUP BY series_id "
                    "ON CONFLICT (series_id) DO UPDATE SET ts_ms = excluded.ts_ms, value = excluded.value WHERE excluded.ts_ms >= latest.ts_ms"
                )
            cur.execute("COMMIT")
        except BaseException:
            if self._w.in_transaction:
                cur.execute("ROLLBACK")
            raise
        return new

    def _ensure(self, cur: sqlite3.Cursor, kind: str, ts_ms: int) -> str:
        name = f"{kind}_{ts_ms // _PARTITION_MS[kind]}"
        if name not in self._partitions:
            if kind == "raw":
                cur.execute(
                    f"CREATE TABLE IF NOT EXISTS {name} (series_id INTEGER NOT NULL, ts_ms INTEGER NOT NULL, value REAL NOT NULL, "
                    "PRIMARY KEY (series_id, ts_ms)) WITHOUT ROWID"
                )
            else:
                cur.execute(
                    f"CREATE TABLE IF NOT EXISTS {name} (series_id INTEGER NOT NULL, bucket_ms INTEGER NOT NULL, lo REAL NOT NULL, hi REAL NOT NULL, "
                    "total REAL NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (series_id, bucket_ms)) WITHOUT ROWID"
                )
            self._partitions.add(name)
        return name

    def apply_retention(self, now_ms: int) -> int:
        self._check_up()
        dropped = 0
        with self._wlock:
            for name in sorted(self._partitions):
                m = _PARTITION_NAME.fullmatch(name)
                assert m is not None
                kind, key = m.group(1), int(m.group(2))
                end_ms = (key + 1) * _PARTITION_MS[kind]
                if end_ms <= now_ms - self._retention_ms[kind]:
                    self._w.execute(f"DROP TABLE IF EXISTS {name}")
                    self._partitions.discard(name)
                    dropped += 1
        return dropped

    # -- reads ------------------------------------------------------------------------------------------

    def _read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        self._check_up()
        with self._rlock:
            try:
                return fn(self._r)
            except sqlite3.Error as exc:
                raise StoreUnavailable(self.name, f"{type(exc).__name__}: {exc}") from exc

    def _tables(self, kind: str, from_ms: int, to_ms: int) -> list[str]:
        period = _PARTITION_MS[kind]
        names = (f"{kind}_{k}" for k in range(from_ms // period, (to_ms - 1) // period + 1))
        return [n for n in names if n in self._partitions]

    def latest(self, device_id: str) -> list[LatestValue]:
        rows = self._read(lambda c: c.execute(
            "SELECT s.metric, l.value, l.ts_ms FROM series s JOIN latest l ON l.series_id = s.id WHERE s.device = ? ORDER BY s.metric", (device_id,)
        ).fetchall())
        return [LatestValue(device_id, m, v, t) for m, v, t in rows]

    def series(self, device_id: str, metric: str, from_ms: int, to_ms: int, every_ms: int | None = None) -> SeriesResult:
        resolution = choose_resolution(from_ms, to_ms, every_ms)
        if resolution is not Resolution.RAW and every_ms is None:
            every_ms = resolution.ms
        sid = self._series.get((device_id, metric))
        points: list[SeriesBucket] = []
        if sid is not None:
            points = self._read(lambda c: self._series_rows(c, sid, resolution, from_ms, to_ms, every_ms=every_ms))
        return SeriesResult(device_id, metric, from_ms, to_ms, resolution, every_ms, tuple(points))

    def _series_rows(self, c: sqlite3.Connection, sid: int, resolution: Resolution, from_ms: int, to_ms: int, *, every_ms: int | None) -> list[SeriesBucket]:
        if resolution is Resolution.RAW:
            tables = self._tables("raw", from_ms, to_ms)
            if not tables:
                return []
            union = " UNION ALL ".join(f"SELECT ts_ms, value FROM {t} WHERE series_id = ? AND ts_ms >= ? AND ts_ms < ?" for t in tables)  # noqa: S608
            args = [sid, from_ms, to_ms] * len(tables)
            if every_ms is None:
                return [SeriesBucket(t, v, v, v, 1) for t, v in c.execute(f"{union} ORDER BY ts_ms", args)]
            sql = f"SELECT ts_ms - ts_ms % {int(every_ms)} AS b, min(value), max(value), avg(value), count(*) FROM ({union}) GROUP BY b ORDER BY b"  # noqa: S608
            return [SeriesBucket(*row) for row in c.execute(sql, args)]
        kind = "m1" if resolution is Resolution.MINUTE else "h1"
        assert every_ms is not None
        # A rollup bucket belongs to the range if it starts inside it (buckets are aligned to the epoch).
        tables = self._tables(kind, from_ms, to_ms)
        if not tables:
            return []
        union = " UNION ALL ".join(f"SELECT bucket_ms, lo, hi, total, n FROM {t} WHERE series_id = ? AND bucket_ms >= ? AND bucket_ms < ?" for t in tables)  # noqa: S608
        sql = f"SELECT bucket_ms - bucket_ms % {int(every_ms)} AS b, min(lo), max(hi), sum(total) / sum(n), sum(n) FROM ({union}) GROUP BY b ORDER BY b"  # noqa: S608
        return [SeriesBucket(*row) for row in c.execute(sql, [sid, from_ms, to_ms] * len(tables))]

    def building_readings(self, building_id: str, from_ms: int, to_ms: int, metric: str | None = None, limit: int = 10_000) -> list[StoredReading]:
        if to_ms <= from_ms:
            raise InvalidQuery("'to' must be after 'from'")

        def query(c: sqlite3.Connection) -> list[StoredReading]:
            if metric is None:
                series = c.execute("SELECT id, device, metric FROM series WHERE building = ?", (building_id,)).fetchall()
            else:
                series = c.execute("SELECT id, device, metric FROM series WHERE building = ? AND metric = ?", (building_id, metric)).fetchall()
            if not series:
                return []
            names = {i: (d, m) for i, d, m in series}
            marks = ",".join("?" * len(names))
            out: list[StoredReading] = []
            for table in self._tables("raw", from_ms, to_ms):  # partitions are in time order: stop once the limit is met
                sql = f"SELECT series_id, ts_ms, value FROM {table} WHERE series_id IN ({marks}) AND ts_ms >= ? AND ts_ms < ? ORDER BY ts_ms LIMIT ?"  # noqa: S608
                for sid, ts, value in c.execute(sql, [*names, from_ms, to_ms, limit - len(out)]):
                    d, m = names[sid]
                    out.append(StoredReading(d, m, ts, value))
                if len(out) >= limit:
                    break
            return out

        return self._read(query)

    def count_raw(self) -> int:
        """Raw points stored, over every partition (tests and benchmarks)."""
        def query(c: sqlite3.Connection) -> int:
            return sum(c.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in sorted(self._partitions) if t.startswith("raw_"))  # noqa: S608
        return self._read(query)

    def raw_points(self) -> Iterable[tuple[str, str, int, float]]:
        """Every raw point as (device, metric, ts_ms, value) (tests)."""
        def query(c: sqlite3.Connection) -> list[tuple[str, str, int, float]]:
            out: list[tuple[str, str, int, float]] = []
            for t in sorted(self._partitions):
                if t.startswith("raw_"):
                    out += c.execute(f"SELECT s.device, s.metric, r.ts_ms, r.value FROM {t} r JOIN series s ON s.id = r.series_id").fetchall()  # noqa: S608
            return out
        return self._read(query)

    def close(self) -> None:
        with self._wlock, self._rlock:
            self._w.close()
            self._r.close()
