"""Settings of a Shouwang deployment, built once at the entry point and passed down.

Sources, later wins: defaults < TOML file (`--config` or SHOUWANG_CONFIG) < environment variables
(`SHOUWANG_<SECTION>__<KEY>`, e.g. SHOUWANG_BROKER__URL=mqtt://broker:1883). Secrets (passwords, tokens)
come from the environment or a file outside the repository, never from the repository.
Every key is documented in docs/configuration.md, which a test keeps in step with these classes.
"""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from backend.escalation.settings import EscalationSettings
from backend.forward.settings import ForwardSettings
from backend.notify.settings import NotifySettings
from broker.connection import Backoff

__all__ = ["AlertingSettings", "ApiSettings", "BrokerSettings", "IngestSettings", "MaintenanceConfig", "OpsSettings", "PatrolConfig",
    "RelaySettings", "RuntimeSettings", "Settings", "SimulateSettings", "SiteSettings", "StorageSettings", "TimeSeriesSettings", "WorkOrderConfig",
    "load_settings"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BrokerSettings(_Section):
    """The MQTT broker the backend connects to."""

    url: str | None = Field(default=None, description="MQTT broker URL (mqtt://host:port). Unset: start the embedded broker.")
    embedded_host: str = Field(default="127.0.0.1", description="Address the embedded broker listens on.")
    embedded_port: int = Field(
        default=1883, ge=0, le=65535,
        description="Port of the embedded broker, fixed so a gateway's configuration survives a restart; if it is taken the start "
                    "stops and names the holder. 0 picks a free one (tests).",
    )
    username: str | None = Field(default=None, description="Username of the backend on the broker (production).")
    password: SecretStr | None = Field(default=None, description="Password of the backend on the broker; from the environment.")
    client_id_prefix: str = Field(default="shouwang", description="Prefix of the backend's MQTT client ids.")
    reconnect_initial_s: float = Field(
        default=0.1, gt=0, description="First wait before the backend's MQTT clients (ingest, publisher, patrol) connect again after a loss; "
                                       "doubles on each refusal up to reconnect_max_s.",
    )
    reconnect_max_s: float = Field(
        default=5.0, gt=0, description="Longest wait between reconnect attempts: a restarted broker is back in seconds, so not much longer.",
    )
    reconnect_jitter: float = Field(
        default=0.5, ge=0, lt=1,
        description="Each reconnect wait is shortened by a random part of up to this fraction, so clients that lost the broker "
                    "together do not all return in the same instant.",
    )

    def backoff(self) -> Backoff:
        """The reconnect backoff of broker.connection, from these settings."""
        return Backoff(initial_s=self.reconnect_initial_s, maximum_s=self.reconnect_max_s, jitter=self.reconnect_jitter)

    @model_validator(mode="after")
    def _backoff_is_valid(self) -> BrokerSettings:
        self.backoff()  # initial <= maximum: raises ValueError naming both
        return self


class StorageSettings(_Section):
    """Where the embedded databases live, and the alarm store."""

    data_dir: Path = Field(default=Path("var"), description="Folder for the embedded databases and logs.")
    alarm_db_url: str | None = Field(default=None, description="SQLAlchemy URL of the alarm store. Unset: SQLite in data_dir.")
    audit_retention_days: int = Field(default=400, ge=366, description="Days alarm records and audit entries are kept (GB 50440: at least a year).")


class IngestSettings(_Section):
    """The ingest worker that takes the gateways' uplink."""

    feed_max_attempts: int = Field(
        default=5, ge=1,
        description="Times one message is offered to alerting before it is parked in dead-letters.jsonl beside the journal (counted).",
    )
    known_devices_only: bool = Field(
        default=True,
        description="Reject telemetry and status of devices the site directory does not know, or that arrive under another "
                    "gateway (counted as unknown_device / wrong_gateway). Life-safety events are still raised, and counted, except a clear of a "
                    "device listed behind another gateway, which is refused. "
                    "Off only for raw-throughput measurements on synthetic devices.",
    )

    share_group: str | None = Field(
        default=None,
        description="MQTT 5 shared-subscription group; unset: a plain subscription (the embedded broker speaks MQTT 3.1.1).",
    )
    max_payload_bytes: int = Field(default=64 * 1024, ge=1024, description="Largest payload accepted; larger ones are rejected and counted.")
    journal_dir: Path | None = Field(
        default=None, description="Folder of the ingest journals (messages are durable here before they are acknowledged). Unset: data_dir/ingest.",
    )
    journal_synchronous_full: bool = Field(
        default=False, description="fsync every journal commit: survives a power cut too, at ~6 k commits/s instead of a process crash only.",
    )
    batch_max_messages: int = Field(default=1000, ge=1, description="Telemetry messages journaled and acknowledged per group commit at most.")
    batch_linger_ms: float = Field(default=5.0, ge=0, description="How long the first telemetry message of a group waits for company before the commit.")
    store_batch_max_readings: int = Field(default=5000, ge=1, description="Readings per time-series write at most (InfluxDB recommends 5,000 lines).")
    max_buffered_readings: int = Field(
        default=200_000, ge=1000, description="Readings held in memory for the store writer; beyond this it re-reads them from the journal.",
    )
    dedupe_window: int = Field(default=200_000, ge=1000, description="Message ids per lane remembered (and reloaded after a restart) to drop redeliveries.")
    store_retry_min_s: float = Field(default=0.1, gt=0, description="First wait before retrying a failed time-series write; doubles up to store_retry_max_s.")
    store_retry_max_s: float = Field(default=5.0, gt=0, description="Longest wait between retries of a failed time-series write.")
    prune_interval_s: float = Field(default=30.0, gt=0, description="How often done journal entries beyond the de-duplication window are deleted.")


class TimeSeriesSettings(_Section):
    backend: Literal["sqlite", "influx"] = Field(default="sqlite", description="Time-series store: embedded SQLite (default) or InfluxDB 2.x.")
    sqlite_path: Path | None = Field(default=None, description="SQLite time-series file. Unset: data_dir/timeseries.sqlite.")
    sqlite_cache_mib: int = Field(default=64, ge=2, description="SQLite page cache of the writer connection, MiB.")
    raw_retention_days: int = Field(default=30, ge=1, description="Days raw readings are kept (embedded store; InfluxDB uses its bucket's retention).")
    minute_retention_days: int = Field(default=90, ge=1, description="Days 1-minute rollups are kept (embedded store).")
    hour_retention_days: int = Field(default=400, ge=1, description="Days 1-hour rollups are kept (embedded store).")
    retention_interval_s: float = Field(default=3600.0, gt=0, description="How often old partitions are dropped.")
    influx_url: str | None = Field(default=None, description="InfluxDB 2.x URL, e.g. http://influx:8086 (backend = influx).")
    influx_token: SecretStr | None = Field(default=None, description="InfluxDB API token with write and read rights on the bucket; from the environment.")
    influx_org: str = Field(default="shouwang", description="InfluxDB organisation.")
    influx_bucket: str = Field(default="telemetry", description="InfluxDB bucket; its retention policy is the retention.")
    influx_measurement: str = Field(default="telemetry", description="Measurement name of the readings (metrics are its fields).")
    influx_timeout_s: float = Field(default=10.0, gt=0, description="HTTP timeout of one InfluxDB request.")
    influx_max_retries: int = Field(default=5, ge=0, description="Retries of a failed InfluxDB write before the store reports itself unavailable.")
    influx_retry_interval_s: float = Field(default=1.0, gt=0, description="First back-off of a failed InfluxDB write (honours Retry-After), growing.")
    influx_max_retry_delay_s: float = Field(default=30.0, gt=0, description="Longest back-off between InfluxDB write retries.")
    influx_gzip: bool = Field(default=True, description="Compress write requests (InfluxDB's recommendation).")


class RelaySettings(_Section):
    """Scale-out (issue 10): the PostgreSQL uplink queue between ingest workers and the rules leader (docs/scaling.md)."""

    queue_db_url: str | None = Field(
        default=None, description="PostgreSQL URL of the uplink queue. Unset: storage.alarm_db_url (the alarm store's database).",
    )
    batch_max_rows: int = Field(default=500, ge=1, description="Queue rows the rules leader consumes per round at most.")
    insert_chunk_rows: int = Field(default=1000, ge=1, description="Rows per INSERT when an ingest worker hands readings to the queue.")
    standby_poll_s: float = Field(default=0.5, gt=0, description="How often a standby backend tries to take the rules lock.")
    lock_check_s: float = Field(default=1.0, gt=0, description="How often the leader checks that its lock connection is alive.")
    idle_poll_s: float = Field(default=1.0, gt=0, description="Longest wait of the leader for new rows when no NOTIFY wakes it.")
    lock_key: int = Field(default=0x5357_0001, description="PostgreSQL advisory lock key of the rules leader (one per rules partition).")
    move_timeout_s: float = Field(default=15.0, gt=0, description="How long a console action waits for the rules leader to apply it.")
    retain_consumed_h: float = Field(default=24.0, gt=0, description="Hours consumed queue rows (and their de-duplication keys) are kept.")
    retry_max_s: float = Field(default=5.0, gt=0, description="Longest back-off of an ingest worker retrying a queue insert.")
    row_max_attempts: int = Field(
        default=3, ge=1,
        description="Times the rules leader tries a queue row its alarm store refuses (for its content, not an outage) before it parks the row "
                    "with its reason and goes on; a life-safety event is first tried once more without its detail.",
    )
    row_retry_s: float = Field(default=0.5, gt=0, description="Pause of the rules leader between two tries of a refused queue row.")


class ApiSettings(_Section):
    """The HTTP API and the duty console."""

    host: str = Field(default="127.0.0.1", description="Address the HTTP API and console listen on.")
    port: int = Field(default=8080, ge=0, le=65535, description="Port of the HTTP API and console; 0 picks a free one.")
    admin_user: str = Field(default="admin", description="Login created on first start when no user exists.")
    admin_password: SecretStr | None = Field(default=None, description="Password of that login; unset: generated and printed once.")
    login_hash_threads: int = Field(
        default=2, ge=1, le=16,
        description="Threads that check passwords (argon2), apart from the threads that commit alarms, so a login flood cannot delay an alarm.",
    )
    login_hash_niceness: int = Field(
        default=10, ge=0, le=19,
        description="How much nicer (lower CPU priority, Linux) the password threads run than the alarm path; 0: the same priority.",
    )
    login_window_s: float = Field(default=300.0, gt=0, description="Window over which failed logins are counted for throttling.")
    login_account_failures: int = Field(
        default=5, ge=1, description="Failed logins of one account within the window before its logins get 429 (Retry-After) until the window frees one.",
    )
    login_address_failures: int = Field(
        default=20, ge=1, description="Failed logins from one client address within the window before its logins get 429 (Retry-After).",
    )
    login_max_waiting: int = Field(
        default=16, ge=1, description="Password checks queued for the hashing threads beyond which a new login gets 429 at once (a flood from many addresses).",
    )
    login_refusal_delay_s: float = Field(
        default=1.0, ge=0, le=30,
        description="A throttled login's 429 is held this long (never past its Retry-After), so a flood that ignores Retry-After slows itself down "
                    "instead of keeping the event loop busy; 0: answer at once.",
    )
    responder_session_ttl_s: float = Field(
        default=12 * 3600.0, ge=60, le=7 * 86400,
        description="How long a responder stays logged in on the phone view after opening a one-tap link (one shift); their moves are still "
                    "checked against the ladder, once each and in order.",
    )
    duty_phone: str = Field(
        default="", max_length=40,
        description="The command room's (值班室) number a responder's phone view offers as a tel: link (also on an expired or used link's page); "
                    "usually the same as forward.duty_phone. Empty: no call button.",
    )
    community_duty_phones: dict[str, str] = Field(default={}, description="Per community id, its duty room's number on the phone view "
                                                                           "(wins over duty_phone).")


class SimulateSettings(_Section):
    """The site directory served and the simulated community that `shouwang run` starts."""

    enabled: bool = Field(default=True, description="Run a simulated community with `shouwang run`.")
    site_file: Path = Field(default=Path("sites/sample-community.yaml"), description="Site directory the system serves.")
    speed: float = Field(default=1.0, gt=0, description="Simulated-time multiplier for the live simulator (1.0 = real rates).")
    seed: int = Field(default=7, description="Seed of the simulator's random events.")
    demo_events: bool = Field(
        default=True,
        description="Occasional demo happenings in the simulated community, so a newcomer sees the console at work: within the first "
                    "minutes a smoke detector's low battery, a camera offline and back, a distribution box's residual current rising past "
                    "300 mA (a pre-warning); a new round on other devices every demo_every_s (docs/simulators.md). false: readings and rare "
                    "background events only.",
    )
    demo_smoke: bool = Field(
        default=False,
        description="Also a demo smoke alarm in each round (drill-marked, 演示 in its detail, never paging outside channels). Off unless asked for.",
    )
    demo_every_s: float = Field(default=1800.0, ge=600, description="Simulated seconds between demo rounds (each round picks other devices).")


class PatrolConfig(_Section):
    """Patrol (巡检): a synthetic test sent to every gateway that must come back through the whole pipeline."""

    enabled: bool = Field(default=True, description="Send patrol tests to every gateway of the site directory (the backend, or a cluster's rules leader).")
    period_s: float = Field(default=3600.0, gt=0, le=7200, description="How often each gateway is patrolled; the standard's ceiling is 2 h.")
    window_s: float = Field(default=120.0, gt=0, description="How long a patrol may take to come back before it raises patrol_missed.")
    start_grace_s: float = Field(
        default=30.0, ge=0, le=600,
        description="No patrol is sent this soon after the scheduler starts: gateways (re)connecting after a backend or broker "
                    "restart would miss it and raise false patrol_missed alarms. The first round ends by period_s plus this.",
    )


class SiteSettings(_Section):
    """Where the site is. Its time zone is the one source of every time a person reads (console, maintenance windows,
    duty rosters, drill reports); `maintenance.time_zone` and `escalation.utc_offset_min` follow it unless set."""

    time_zone: str = Field(
        default="Asia/Shanghai",
        description="The site's time zone (an IANA name, e.g. Asia/Shanghai = Beijing time). Unset older keys follow it: "
                    "maintenance.time_zone takes it as is and escalation.utc_offset_min its UTC offset; an older key set to "
                    "something else is refused at start, so the console and the rosters cannot disagree.",
    )

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}: give an IANA name such as Asia/Shanghai") from exc
        return v


class MaintenanceConfig(_Section):
    """Maintenance windows (维护窗口): how long they may last, and when the duty room is told one is ending."""

    max_minutes: int = Field(default=7 * 24 * 60, ge=5, description="Longest maintenance window, minutes (longer work is split into new windows).")
    life_safety_max_minutes: int = Field(
        default=120, ge=5, le=24 * 60,
        description="Longest window that silences smoke detectors or SOS buttons (needs an override with a reason), minutes.")
    end_notice_minutes: float = Field(default=10.0, ge=0, description="The duty room is told this many minutes before a window ends (and when it ends).")
    time_zone: str = Field(default="Asia/Shanghai", description="Time zone of the window times shown to people. Deprecated: "
                           "set site.time_zone; unset, this follows it.")


class WorkOrderConfig(_Section):
    """Hazard work orders (隐患整改, docs/workorders.md): due times by severity, the overdue check, photo uploads."""

    due_hours_critical: float = Field(default=24.0, gt=0, le=24 * 90, description="A critical order is due this many hours after it is opened.")
    due_hours_major: float = Field(default=72.0, gt=0, le=24 * 90, description="A major order is due this many hours after it is opened.")
    due_hours_minor: float = Field(default=168.0, gt=0, le=24 * 90,
                                   description="A minor order (an electrical pre-warning, a standalone order) is due this many hours after it is opened.")
    max_due_days: int = Field(default=90, ge=1, le=366, description="A due time typed by a person may be at most this many days ahead.")
    check_every_s: float = Field(default=60.0, gt=0, le=3600,
                                 description="How often overdue orders are looked for and escalated to the assignee's supervisor (once per due time).")
    photo_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024, description="Largest photo upload, bytes.")
    max_photos: int = Field(default=20, ge=1, le=200, description="Most photos one work order may hold.")
    require_photo_to_finish: bool = Field(default=True, description="Finishing the rectification needs at least one photo on the order.")
    photos_dir: Path | None = Field(default=None, description="Folder of the work-order photos. Unset: data_dir/workorder-photos.")


class AlarmsConfig(_Section):
    """Working an alarm together (docs/console.md, 协同处置): comments with photos, and archiving closed alarms (归档)."""

    archive_after_days: float = Field(
        default=7.0, ge=0, le=366,
        description="A closed or false alarm is archived (归档) by the system once nothing happened on it (no move, comment or assignment) "
                    "for this many days; 0: only by hand.")
    archive_check_every_s: float = Field(default=600.0, gt=0, le=86400, description="How often alarms due for archiving are looked for.")
    comment_max_chars: int = Field(default=1000, ge=10, le=2000, description="Longest comment a person may write on an alarm, characters.")
    comment_photo_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024,
                                         description="Largest photo attached to a comment, bytes (JPEG, PNG or WebP, judged by its bytes).")
    comment_max_photos: int = Field(default=4, ge=1, le=20, description="Most photos one comment may carry.")
    photos_dir: Path | None = Field(default=None, description="Folder of the comments' photos. Unset: data_dir/alarm-photos.")


class RuntimeSettings(_Section):
    """How a backend or ingest process runs: its event-loop watch and its garbage collector (backend/loopwatch.py)."""

    loop_stall_log_ms: float = Field(
        default=500.0, ge=0,
        description="An event-loop stall longer than this is logged with the stacks that held the loop; 0 turns the watchdog off.",
    )
    gc_freeze_after_start: bool = Field(
        default=True,
        description="Once started, move everything loaded (site directory, rule state) out of the garbage collector's sight (gc.freeze).",
    )
    switch_interval_ms: float = Field(
        default=1.0, ge=0, le=100,
        description="How long a thread may hold Python's GIL while another waits for it (sys.setswitchinterval; Python's own is 5 ms). "
                    "The alarms' commit thread waits this long at most for the GIL behind the busy event loop each time SQLite's "
                    "driver gave it back; a storm of 2,000 smoke alarms reached the console in ~1.6 s at 5 ms, ~1.1 s at 1 ms "
                    "(issue 19, docs/scaling.md). 0 leaves Python's own. Set when a backend, ingest worker or `shouwang run` starts.",
    )
    gc_thresholds: tuple[int, int, int] = Field(
        default=(10_000, 10, 100),
        description="Python's gc thresholds (gen0, gen1, gen2). Python's own (700, 10, 10) ran a full collection every ~25 s at street "
                    "scale, each pausing the process 120-260 ms; these make them rare. (0, 0, 0) leaves Python's own.",
    )
    gc_full_every_s: float = Field(
        default=600.0, ge=0,
        description="A backend runs a full garbage collection this often (its pause is reported under `loop` in /api/ingest/stats), "
                    "so cyclic garbage does not pile up while the raised thresholds make Python's own full collections rare; 0: never.",
    )
    malloc_arena_max: int = Field(
        default=2, ge=0,
        description="At most this many glibc malloc arenas, so threads reuse each other's freed memory (backend/memstats.py); "
                    "0: glibc's own (8 per core). Set when a backend, ingest worker or `shouwang run` starts.",
    )
    malloc_mmap_threshold_kib: int = Field(
        default=1024, ge=0, le=32768,
        description="Blocks of this size and larger are mapped on their own and returned to the system when freed; fixing it stops "
                    "glibc raising it (and its trim threshold) after each big block, which kept ~50 MiB free per arena at street scale. "
                    "0: glibc's own dynamic threshold.",
    )
    heap_trim_every_s: float = Field(
        default=60.0, ge=0,
        description="A backend hands the C heap's free pages back to the system this often (glibc malloc_trim, in a worker thread; "
                    "backend/memstats.py), so memory freed by the store threads does not stay resident; 0: never.",
    )


class OpsSettings(_Section):
    """How operators watch a process: logs, metrics, readiness, HTTP security headers (docs/operations.md)."""

    log_json: bool = Field(default=False, description="Log one JSON object per line (time in UTC with offset, level, logger, message, "
                           "and alarm_id, device, gateway where known) instead of plain text.")
    metrics_port: int | None = Field(default=None, ge=0, le=65535, description="Port of an ingest worker's own /metrics, /livez and /readyz "
                                     "(`shouwang ingest`; --metrics-port wins). Unset: none. Backends serve them on their API port.")
    metrics_host: str = Field(default="127.0.0.1", description="Address an ingest worker's metrics port listens on.")
    ready_max_backlog: int = Field(default=50_000, ge=1, description="/readyz answers not ready while more telemetry messages than this "
                                   "wait between the journal and the time-series store (ingest not keeping up).")
    ready_db_timeout_s: float = Field(default=2.0, gt=0, le=30, description="/readyz gives the database this long to answer SELECT 1.")
    ready_max_queue_age_s: float = Field(default=60.0, gt=0, description="Scale-out: /readyz answers not ready while the oldest row "
                                         "waiting in the uplink queue is older than this (the rules leader is stuck or missing).")
    hsts_max_age_s: int = Field(default=0, ge=0, description="Strict-Transport-Security max-age sent on every response; set it when the "
                                "API is served over TLS (behind the reverse proxy). 0: the header is sent only on requests that arrived "
                                "over HTTPS (X-Forwarded-Proto https), with one year.")
    watchdog: bool = Field(default=True, description="Under systemd with WatchdogSec=, feed the watchdog from the event loop "
                           "(a stalled loop stops feeding and systemd restarts the process).")


class AlertingSettings(_Section):
    """The alarm rules a deployment runs (docs/alerting.md) and the clock check (GB 50440: clock error <= 5 s)."""

    rules_file: Path | None = Field(
        default=None,
        description="A rules file (YAML, the shape of alerting/rules/defaults.yaml, any subset) merged over the default rules, e.g. a "
                    "building's residual-current setting. Checked at start: a problem stops it as file:line: what to fix. Unset: the defaults.",
    )
    clock_skew_max_s: float = Field(
        default=5.0, gt=0, description="A device or gateway clock further than this from the centre's receive time raises clock_skew (GB 50440: 5 s).",
    )
    clock_skew_confirm_s: float = Field(
        default=600.0, ge=0,
        description="A clock behind by more than clock_skew_max_s raises clock_skew once it has stayed behind this long (a message a gateway "
                    "held during an uplink outage is late too); a clock ahead raises at once.",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHOUWANG_", env_nested_delimiter="__", extra="forbid", frozen=True)

    site: SiteSettings = SiteSettings()
    broker: BrokerSettings = BrokerSettings()
    storage: StorageSettings = StorageSettings()
    ingest: IngestSettings = IngestSettings()
    timeseries: TimeSeriesSettings = TimeSeriesSettings()
    api: ApiSettings = ApiSettings()
    simulate: SimulateSettings = SimulateSettings()
    escalation: EscalationSettings = EscalationSettings()
    notify: NotifySettings = NotifySettings()
    patrol: PatrolConfig = PatrolConfig()
    relay: RelaySettings = RelaySettings()
    runtime: RuntimeSettings = RuntimeSettings()
    alerting: AlertingSettings = AlertingSettings()
    maintenance: MaintenanceConfig = MaintenanceConfig()
    workorders: WorkOrderConfig = WorkOrderConfig()
    alarms: AlarmsConfig = AlarmsConfig()
    forward: ForwardSettings = ForwardSettings()
    ops: OpsSettings = OpsSettings()

    @model_validator(mode="before")
    @classmethod
    def _one_site_zone(cls, data: Any) -> Any:
        """Fill the older zone keys from site.time_zone (or site.time_zone from maintenance.time_zone when only that is set)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        site, maint, esc = (_plain(data.get(k)) for k in ("site", "maintenance", "escalation"))
        zone = site.get("time_zone") or maint.get("time_zone") or "Asia/Shanghai"
        if site.get("time_zone") and maint.get("time_zone") and maint["time_zone"] != site["time_zone"]:
            raise ValueError(f"maintenance.time_zone ({maint['time_zone']}) differs from site.time_zone ({site['time_zone']}): "
                             "remove maintenance.time_zone, it follows site.time_zone")
        try:
            offset = ZoneInfo(zone).utcoffset(datetime.now(UTC))
        except (ZoneInfoNotFoundError, ValueError):
            return data  # site.time_zone's own validator names the problem
        minutes = int(offset.total_seconds() // 60) if offset is not None else 0
        if esc.get("utc_offset_min") is not None and int(esc["utc_offset_min"]) != minutes:
            raise ValueError(f"escalation.utc_offset_min ({esc['utc_offset_min']}) is not the offset of the site's time zone {zone} "
                             f"({minutes}): remove it and set site.time_zone, which the duty rosters follow")
        data["site"] = {**site, "time_zone": zone}
        data["maintenance"] = {**maint, "time_zone": zone}
        data["escalation"] = {**esc, "utc_offset_min": minutes}
        return data

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the file (passed as init values), so a deployment overrides without editing files.
        return env_settings, init_settings


def _plain(section: Any) -> dict[str, Any]:
    if isinstance(section, BaseModel):
        return section.model_dump(exclude_unset=True)
    return dict(section) if isinstance(section, dict) else {}


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    data: dict[str, Any] = {}
    if config_file is not None:
        with config_file.open("rb") as f:
            data = tomllib.load(f)
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    return Settings(**data)
