"""`shouwang config check`: validate a deployment's configuration and say what is wrong.

Checks, beyond the settings' own validation and the site directory: that the pieces of a deployment fit
together for the intended shape (`--ingest-workers N --backends M`): a shared subscription needs an MQTT 5
broker (the embedded one speaks 3.1.1); several ingest workers need a share group; several processes need
PostgreSQL (SQLite is one machine, one process); InfluxDB needs its URL and token; secrets belong in the
environment, not in the settings file; a broker without a login (anonymous) and an API listening on a
public address without TLS in front are warned about. With `--connect` it also reaches the broker (and
says whether it admits anonymous clients) and PostgreSQL.
Exit code 1 when there is an error; warnings alone exit 0.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from backend.settings import Settings, load_settings
from backend.sites import SiteDirectoryInvalid, load_site_directory

__all__ = ["Finding", "check_settings"]

_SECRETS = (("broker", "password"), ("api", "admin_password"), ("timeseries", "influx_token"), ("escalation", "webhook_token"))


@dataclass(frozen=True, slots=True)
class Finding:
    level: str  # error | warning
    text: str


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("config", help="check the configuration", description=__doc__,
                                                formatter_class=argparse.RawDescriptionHelpFormatter)
    s = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    c = s.add_parser("check", help="validate settings and the site directory for a deployment shape; print every problem")
    c.add_argument("--ingest-workers", type=int, default=1, metavar="N", help="ingest workers the deployment runs (default 1)")
    c.add_argument("--backends", type=int, default=1, metavar="M", help="backend processes the deployment runs (default 1)")
    c.add_argument("--connect", action="store_true", help="also connect to the broker and PostgreSQL")
    c.set_defaults(handler=_check)


def _is_pg(url: str | None) -> bool:
    return bool(url) and str(url).startswith("postgresql")


def check_settings(s: Settings, *, ingest_workers: int = 1, backends: int = 1, raw: dict[str, Any] | None = None) -> list[Finding]:
    """Every problem of this configuration for a deployment of N ingest workers and M backends."""
    out: list[Finding] = []
    scaled = ingest_workers > 1 or backends > 1
    if s.broker.url is not None:
        from shouwang.system import parse_mqtt_url

        try:
            parse_mqtt_url(s.broker.url)
        except ValueError as exc:
            out.append(Finding("error", f"broker.url: {exc}"))
    if s.ingest.share_group and s.broker.url is None:
        out.append(Finding("error", "ingest.share_group is set but broker.url is not: the embedded broker speaks MQTT 3.1.1 and has no shared "
                                    "subscriptions; run Mosquitto (deploy/mosquitto/) and set broker.url"))
    if ingest_workers > 1 and not s.ingest.share_group:
        out.append(Finding("error", f"{ingest_workers} ingest workers without ingest.share_group: every worker would get every message; "
                                    "set ingest.share_group (e.g. shouwang-ingest)"))
    if scaled and s.broker.url is None:
        out.append(Finding("error", "several processes need one real broker: set broker.url (the embedded broker lives inside `shouwang run`)"))
    if scaled and not _is_pg(s.storage.alarm_db_url):
        what = "unset (SQLite in data_dir)" if s.storage.alarm_db_url is None else s.storage.alarm_db_url.split(":", 1)[0]
        out.append(Finding("error", f"storage.alarm_db_url is {what}: with --backends {backends} and --ingest-workers {ingest_workers} the alarm "
                                    "store, the ladder, the uplink queue and the rules lock must be on PostgreSQL (postgresql+psycopg://...)"))
    if s.relay.queue_db_url is not None and not _is_pg(s.relay.queue_db_url):
        out.append(Finding("error", "relay.queue_db_url must name PostgreSQL (the queue uses NOTIFY and advisory locks)"))
    if s.timeseries.backend == "influx" and (not s.timeseries.influx_url or s.timeseries.influx_token is None):
        out.append(Finding("error", "timeseries.backend = influx needs timeseries.influx_url and timeseries.influx_token "
                                    "(the token from the environment: SHOUWANG_TIMESERIES__INFLUX_TOKEN)"))
    if ingest_workers > 1 and s.timeseries.backend == "sqlite":
        out.append(Finding("warning", "the embedded SQLite time-series store is one file per ingest worker: readings are stored, but charts on "
                                      "the console need one shared store; use InfluxDB (timeseries.backend = influx) when scaled out"))
    if backends > 1 and "127.0.0.1" in s.escalation.link_base_url:
        out.append(Finding("warning", f"escalation.link_base_url is {s.escalation.link_base_url}: one-tap links in SMS must name the public "
                                      "address of the load balancer in front of the backends"))
    if scaled and s.api.host in ("127.0.0.1", "localhost"):
        out.append(Finding("warning", "api.host is loopback: a load balancer on another machine cannot reach the backends"))
    out += _exposure_warnings(s)
    for section, key in _SECRETS:
        if raw and key in (raw.get(section) or {}):
            env = f"SHOUWANG_{section.upper()}__{key.upper()}"
            out.append(Finding("warning", f"{section}.{key} is in the settings file: secrets belong in the environment ({env}) "
                                          "or a file outside the repository"))
    if s.alerting.rules_file is not None:  # the deployment's rules file, checked as the start checks it (file:line: what to fix)
        from alerting.config import RuleConfigError
        from backend.alarms.rules import load_rules

        try:
            load_rules(s.alerting.rules_file)
        except RuleConfigError as exc:
            out.append(Finding("error", f"alerting.rules_file: {exc}"))
    return out


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: assume it resolves to the network


def _exposure_warnings(s: Settings) -> list[Finding]:
    """Who can reach what (issue 22): an anonymous broker login, an API on a public address in plain HTTP."""
    out: list[Finding] = []
    if s.broker.url is not None and s.broker.username is None:
        out.append(Finding("warning", f"broker.url is {s.broker.url} with no broker.username: the backend connects anonymously, so the broker "
                                      "admits anonymous clients and anyone who reaches it can read notices and raise or hide alarms; run it "
                                      "with allow_anonymous false and the generated password file and ACL (`shouwang broker config`), and "
                                      "set broker.username and SHOUWANG_BROKER__PASSWORD"))
    host = s.api.host
    tls_in_front = s.escalation.link_base_url.startswith("https://")
    if not _is_loopback(host) and not tls_in_front:
        where = "every interface" if host in ("0.0.0.0", "::") else f"{host}, not loopback"  # noqa: S104 - recognising it, not binding
        out.append(Finding("warning", f"api.host is {host}: the API and its logins listen on {where} in plain HTTP; bind 127.0.0.1 behind "
                                      "the TLS reverse proxy, or, when a proxy on another machine terminates TLS, set "
                                      "escalation.link_base_url to its https:// address"))
    return out


def _anonymous_admitted(host: str, port: int) -> bool:
    """Whether the broker accepts an MQTT 3.1.1 CONNECT with no login (CONNACK return code 0)."""
    connect = bytes([0x10, 0x12, 0x00, 0x04]) + b"MQTT" + bytes([0x04, 0x02, 0x00, 0x0A, 0x00, 0x06]) + b"sw-chk"
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(connect)
        reply = sock.recv(4)
    return len(reply) == 4 and reply[0] == 0x20 and reply[3] == 0


def _connect_checks(s: Settings) -> list[Finding]:
    out: list[Finding] = []
    if s.broker.url is not None:
        from shouwang.system import parse_mqtt_url

        try:
            host, port = parse_mqtt_url(s.broker.url)
            if _anonymous_admitted(host, port):
                out.append(Finding("warning", f"the broker at {s.broker.url} admits anonymous clients: anyone who reaches it can read "
                                              "notices and raise or hide alarms (allow_anonymous false; deploy/mosquitto/README.md)"))
        except (OSError, ValueError) as exc:
            out.append(Finding("error", f"cannot reach the broker at {s.broker.url}: {exc}"))
    for name, url in (("storage.alarm_db_url", s.storage.alarm_db_url), ("relay.queue_db_url", s.relay.queue_db_url)):
        if _is_pg(url):
            import psycopg

            from backend.relay.queue import pg_conninfo

            try:
                with psycopg.connect(pg_conninfo(str(url)), connect_timeout=5) as conn:
                    conn.execute("SELECT 1")
            except psycopg.Error as exc:
                out.append(Finding("error", f"cannot reach PostgreSQL ({name}): {str(exc).strip()}"))
    return out


def _check(args: argparse.Namespace) -> int:
    raw: dict[str, Any] = {}
    try:
        if args.config is not None:
            with Path(args.config).open("rb") as fh:
                raw = tomllib.load(fh)
        settings = load_settings(args.config)
    except (ValidationError, OSError, ValueError) as exc:
        print(f"settings are invalid:\n{exc}", file=sys.stderr)
        return 1
    try:
        sites = load_site_directory(settings.simulate.site_file)
    except SiteDirectoryInvalid as exc:
        print(exc, file=sys.stderr)
        return 1
    findings = check_settings(settings, ingest_workers=args.ingest_workers, backends=args.backends, raw=raw)
    if args.connect:
        findings += _connect_checks(settings)
    for f in findings:
        print(f"{f.level}: {f.text}", file=sys.stderr if f.level == "error" else sys.stdout)
    if any(f.level == "error" for f in findings):
        print(f"configuration has {sum(f.level == 'error' for f in findings)} error(s)", file=sys.stderr)
        return 1
    print("configuration is valid" + (f" ({len(findings)} warning(s))" if findings else ""))
    print(f"  shape: {args.backends} backend(s), {args.ingest_workers} ingest worker(s)")
    print(f"  broker: {settings.broker.url or 'embedded'}; alarm store: {settings.storage.alarm_db_url or 'SQLite in ' + str(settings.storage.data_dir)}")
    print("  site directory: " + ", ".join(f"{v} {k}" for k, v in sites.summary().items()))
    return 0
