"""The root of every error the backend raises, and the whole tree in one picture.

    BackendError
    ├── AlarmServiceError        backend.alarms.service: a console or one-tap move the alarm service cannot do
    │   ├── NoSuchAlarm
    │   └── MoveRefused
    ├── MaintenanceError         backend.alarms.maintenance: a maintenance window refused (zh and en sentences)
    │   ├── UnknownPlace
    │   └── WindowRefused
    │       └── WindowOver
    ├── CallbackDeskError        backend.callbacks.service: an SOS call-back (回访) refused (a Chinese sentence and its status)
    │   ├── CallbackNotFound     no such alarm in the caller's territory (404)
    │   ├── CallbackConflict     not an SOS, an outcome twice, the alarm already over (409)
    │   └── CallbackInvalid      a false press without its reason (422)
    ├── CollabError              backend.alarms.collab: an alarm's assignment or comment refused (zh and en sentences)
    │   ├── NoAlarm              no such alarm, or no such photo of it (404)
    │   ├── CollabRefused        an empty or too long comment, too many photos (422)
    │   ├── CollabConflict       the alarm is archived, or already assigned to that person (409)
    │   ├── PhotoRefused         a photo too large (413) or not a JPEG / PNG / WebP (415)
    │   └── PhotoStoreUnavailable the photos folder cannot be written (also Unavailable: 503)
    ├── DutyError                backend.duty.service: a roster override, shift or handover refused (zh and en sentences)
    │   ├── DutyNotFound         no such person, place, override or handover, or outside the territory (404)
    │   ├── DutyRefused          reversed or out-of-range times, missing people (422)
    │   └── DutyConflict         already done: a second accept or cancel, a shift already open (409)
    ├── RulesFileError           backend.alarms.rules: a deployment's rules file (also alerting's RuleConfigError)
    ├── StoreError               backend.alarms.store: the alarm store failed (also a RuntimeError)
    │   ├── StoreUnavailable     the database cannot take writes now (also AlertingUnavailable)
    │   └── StoreRefused         the database refused this content
    ├── Unavailable              something this needs is away now; nothing was done; try again (the API: 503)
    │   ├── AlertingUnavailable  backend.ingest.handoff: alerting cannot take messages now; offer them again
    │   └── UsersUnavailable     backend.store.users: the login database is away (also a UserError)
    ├── JournalError             backend.ingest.journal: the ingest journal's file failed
    ├── RelayError               backend.relay.queue: the cluster's relay queue
    │   ├── QueueUnavailable     PostgreSQL is away (also AlertingUnavailable)
    │   └── LostLeadership       this process is no longer the rules leader
    ├── EscalationStoreError     backend.escalation.store
    │   ├── UnknownEscalation
    │   └── StepConflict
    ├── NotifyError              backend.notify.channel
    │   ├── DeliveryFailed       a channel could not deliver (transient or not)
    │   ├── ChannelMissing       no channel of that kind is configured
    │   └── ProviderMisconfigured backend.notify.providers: a provider chosen without a setting it needs
    ├── ForwardError             backend.forward.forwarder: the 119 hand-off
    │   └── ChannelFailed        one receiving channel did not give a receipt (timeout, refused, no number)
    ├── PatrolError              backend.patrol.scheduler (also a RuntimeError)
    │   └── PatrolBrokerUnreachable
    ├── SiteDirectoryInvalid     backend.sites.loader: the site file's mistakes, file:line each (also a ValueError)
    ├── UnknownGateway           backend.sites.edgeconfig: no such gateway in the directory (also a ValueError)
    ├── StoreFileUnreadable      backend.store.db: a store's file SQLite cannot read (also a RuntimeError)
    ├── PostgresNotInstalled     backend.store.pg_local (also a RuntimeError)
    ├── UserError                backend.store.users
    │   ├── UserExists
    │   └── UnknownUser
    ├── TimeSeriesError          backend.store.timeseries.model
    │   ├── StoreUnavailable     the time-series store is away
    │   └── InvalidQuery         a question the store cannot answer
    ├── InvalidToken             backend.api.tokens: a session or one-tap token is bad (also a ValueError)
    ├── LinkRefused              backend.api.responses: a one-tap link or one of its moves is refused
    ├── LoginThrottled           backend.api.auth: too many failed logins
    ├── BadCursor                backend.history.query: a history cursor this API did not give out (also a ValueError)
    ├── Refusal                  backend.api.console_history: a history or report request refused (zh and en sentences)
    └── NotWired                 backend.api.deps: a part not running on this server (also a RuntimeError)

Each error keeps the builtin base its callers already catch it by (ValueError, RuntimeError) as a second
base. Third-party errors (SQLAlchemy, psycopg, sqlite3) are translated into this tree by the stores that
meet them (backend.alarms.store, backend.store.*, backend.escalation.store, backend.relay.queue,
backend.ingest.journal) and do not travel further in. tests/test_exception_trees.py fails when an
exception defined anywhere in backend/ is not under `BackendError`.
"""

from __future__ import annotations

__all__ = ["BackendError", "Unavailable"]


class BackendError(Exception):
    """Base of every error the backend package raises."""


class Unavailable(BackendError):
    """Something this needs (a database, a service) is away right now; nothing was applied; try again later."""
