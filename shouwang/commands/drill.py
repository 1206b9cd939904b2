"""`shouwang drill`: run an emergency drill from a scenario file and write its report; list the shipped scenarios."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from backend.settings import load_settings
from backend.sites import SiteDirectoryInvalid, load_site_directory
from broker.embedded import ACCESS_FILE
from simulators.drill.responders import needed_moves
from simulators.drill.runner import DrillProgress, DrillRun
from simulators.drill.scenario import ScenarioError, load_scenario
from simulators.drill.session import run_drill
from simulators.drill.target import DrillTargetError, EmbeddedTarget, RemoteTarget, TargetUnavailable
from simulators.live import SimulatorError

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "drill", help="run an emergency drill (应急演练) from a scenario file and write its report",
        description="Emergency drills: a scenario file is a timeline of hazards (smoke in a room, a power cut, a gateway's "
        "uplink cut) played by simulated devices through the real pipeline, answered by simulated responders (or real "
        "people), and reported in seconds against the targets. See docs/drills.md.",
    )
    dsub = p.add_subparsers(dest="drill_command", metavar="SUBCOMMAND", required=True)
    r = dsub.add_parser("run", help="run a scenario", description="Run a scenario and write report.html, report.json and charts.")
    r.add_argument("scenario", help="scenario file, or the name of a shipped scenario (see `shouwang drill list`)")
    where = r.add_mutually_exclusive_group()
    where.add_argument("--embedded", action="store_true", help="start the whole system in this process (the default)")
    where.add_argument("--system", metavar="URL", help="API URL of a running system, e.g. http://127.0.0.1:8080 (speed 1); simulated "
                       "responders act through its console API (acknowledge on their behalf, close); a scenario whose responders "
                       "must depart or arrive is refused before it starts (docs/drills.md)")
    r.add_argument("--mqtt", metavar="URL", help="broker of the running system (with --system), mqtt://[USER:PASSWORD@]host:port "
                   "(default: the API's host, port 1883)")
    r.add_argument("--broker-access", type=Path, default=None, metavar="FILE",
                   help="with --system: the running system's broker-access.json (its service login for the simulated gateways; "
                        "default: DATA_DIR/broker-access.json when it exists and --mqtt gives no login)")
    r.add_argument("--user", default="admin", help="login on the running system (with --system; default admin)")
    r.add_argument("--password", default=None, help="its password (default: $SHOUWANG_DRILL_PASSWORD)")
    r.add_argument("--sites", type=Path, default=None, help="site directory (default: the configured one, simulate.site_file)")
    r.add_argument("--speed", type=float, default=None, help="time compression (default: the scenario's; 1 = real time)")
    r.add_argument("--real-people", action="store_true", help="no simulated responders: wait for real people on the console")
    r.add_argument("--report-dir", type=Path, default=None, help="where to write the report (default: drill-reports/NAME-TIME)")
    r.add_argument("--data-dir", type=Path, default=None, help="embedded: keep the system's databases here (default: a temporary folder)")
    r.set_defaults(handler=_run)
    ls = dsub.add_parser("list", help="list the shipped scenarios")
    ls.set_defaults(handler=_list)


def _resolve(name: str) -> Path:
    path = Path(name)
    if path.exists():
        return path
    shipped = SCENARIOS / f"{name.removesuffix('.yaml')}.yaml"
    return shipped if shipped.exists() else path


def _list(args: argparse.Namespace) -> int:
    import yaml

    console = Console()
    for f in sorted(SCENARIOS.glob("*.yaml")):
        doc = yaml.safe_load(f.read_text(encoding="utf-8"))
        title = doc.get("title") or {}
        console.print(f"[bold]{f.stem}[/bold]  {title.get('zh', '')} / {title.get('en', '')}  "
                      f"(run_for {doc.get('run_for')}, speed {doc.get('speed', 1)}x, {len(doc.get('timeline') or [])} steps)")
    return 0


def _run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    settings = load_settings(args.config)
    try:
        sites = load_site_directory(args.sites or settings.simulate.site_file)
        scenario = load_scenario(_resolve(args.scenario), sites)
    except (SiteDirectoryInvalid, ScenarioError) as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.system and args.speed not in (None, 1.0):
        print("a running system keeps its own clock: drills against it run at speed 1", file=sys.stderr)
        return 2
    speed = 1.0 if args.system else (args.speed or scenario.speed)
    report_dir = args.report_dir or Path("drill-reports") / f"{scenario.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        return asyncio.run(_drive(args, scenario, sites, speed, report_dir, console=console))
    except (DrillTargetError, SimulatorError) as exc:
        print(f"shouwang drill: not started: {exc}", file=sys.stderr)
        return 1


async def _drive(args: argparse.Namespace, scenario: Any, sites: Any, speed: float, report_dir: Path, *, console: Console) -> int:
    if args.system:
        password = args.password or os.environ.get("SHOUWANG_DRILL_PASSWORD", "")
        mqtt = args.mqtt or f"mqtt://{urlparse(args.system).hostname or '127.0.0.1'}:1883"
        broker_user, broker_password = _broker_login(args, mqtt)
        target: Any = RemoteTarget(args.system, mqtt, args.user, password, broker_username=broker_user, broker_password=broker_password, sites=sites)
    else:
        target = EmbeddedTarget(sites, speed, data_dir=args.data_dir)
    console.print(f"[bold]{scenario.title_zh} / {scenario.title_en}[/bold]: {scenario.run_for_s:g} s of drill time at {speed:g}x "
                  f"(≈{scenario.run_for_s / speed:.0f} s wall), {len(scenario.steps)} steps")
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        task = progress.add_task("starting the system", total=scenario.run_for_s, info="")

        def show(p: DrillProgress) -> None:
            progress.update(task, completed=p.drill_s, description=f"drill t={p.drill_s:5.0f} s",
                            info=f"steps {p.steps_done}/{p.steps} · alarms {p.alarms} · ack {p.acknowledged} · on scene {p.on_scene} · "
                            f"acts {p.acts_done}/{p.acts_planned}")

        async with target:
            if isinstance(target, RemoteTarget) and not args.real_people and (why := target.refusal(needed_moves(scenario))):
                progress.stop()
                print(f"shouwang drill: not started against {target.api_url}: {why}", file=sys.stderr, flush=True)
                return 2
            progress.update(task, description=f"system ready: {target.description}")
            run, report, paths = await run_drill(scenario, sites, target, report_dir, responders=not args.real_people, on_progress=show,
                                                 time_zone=load_settings(args.config).site.time_zone)
    _summarise(console, run, report, paths)
    print(paths["html"])
    return 0


def _broker_login(args: argparse.Namespace, mqtt: str) -> tuple[str | None, str | None]:
    """The broker login for the simulated gateways: in the URL, from --broker-access, or from this data folder's access file."""
    if urlparse(mqtt).username:
        return None, None  # RemoteTarget reads it from the URL
    path = args.broker_access
    if path is None:
        path = load_settings(args.config).storage.data_dir / ACCESS_FILE
        if not path.exists():
            return None, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return str(data["service"]["username"]), str(data["service"]["password"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TargetUnavailable(str(path), f"cannot read the broker login from it ({exc}): give the file `shouwang run` names, or "
                                           "--mqtt mqtt://USER:PASSWORD@host:port") from exc


def _summarise(console: Console, run: DrillRun, report: dict[str, Any], paths: dict[str, Path]) -> None:
    """What the drill found, every problem with its reason and every note, on the console (the report holds the same)."""
    s = report["summary"]
    acts = run.acts
    refused = [a for a in acts if a.done_ms is not None and not a.ok]
    console.print(f"alarms {s['alarms']} (drill {s['drill_alarms']}); simulated responder acts {sum(a.ok for a in acts)} made, "
                  f"{len(refused)} refused, {sum(a.done_ms is None for a in acts)} not yet due; problems {len(report['problems'])}; "
                  f"{'every target met' if s['all_targets_met'] else 'targets missed'}")
    for a in refused:
        console.print(f"  refused: {a.move} by {a.actor} on {a.alarm_id} ({a.via}): {a.refused}", markup=False, soft_wrap=True)
    for n, p in enumerate(report["problems"], 1):
        console.print(f"  problem {n}: {p['zh']}\n             {p['en']}", markup=False, soft_wrap=True)
    for note in report["notes"]:
        console.print(f"  note: {note}", markup=False, soft_wrap=True)
    console.print(f"report: {paths['html']}  (and {paths['json'].name}, {paths['timeline'].name}, {paths['latency'].name})", markup=False)
