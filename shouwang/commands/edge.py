"""`shouwang edge`: the gateway's own command line (edge/cli.py), plus what needs the centre's site directory.

`shouwang edge config --sites FILE --gateway ID [--config OUT]` writes a gateway's edge configuration from the site
directory (one declaration per device: backend/sites/edgeconfig.py) and checks it with the edge's own parser;
`shouwang edge check --config FILE` also warns when a device's declared metrics include none the rules watch for
its kind. `python -m edge` on a gateway runs the same run/status/check without the centre's packages.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from edge.cli import ACTIONS, add_arguments, handle

__all__ = ["register"]


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "edge",
        help="a gateway's edge agent: run it, check or write its configuration, show its status",
        description=(
            "Run the edge agent of one gateway (`shouwang edge --config FILE`), show its status (`status`), check its "
            "configuration (`check`), or write its configuration from the site directory (`config --sites FILE --gateway ID`). "
            "Every key is documented in docs/edge.md."
        ),
    )
    add_arguments(p, (*ACTIONS, "config"))
    p.add_argument("--sites", type=Path, help="config: the site directory (YAML)")
    p.add_argument("--gateway", help="config: the gateway whose configuration to write")
    p.add_argument("--uplink", default="mqtt://127.0.0.1:1883", help="config: the centre's broker, mqtt://host:port (default %(default)s)")
    p.add_argument("--lan", default="mqtt://127.0.0.1:1883", help="config: the building's LAN broker, mqtt://host:port (default %(default)s)")
    p.add_argument("--rules", type=Path, help="check: a rules file merged over the default rules, for the watched-metric warnings")
    p.set_defaults(handler=_handler)


def _handler(args: argparse.Namespace) -> int:
    if args.action == "config":
        return _write_config(args)
    code = handle(args)
    if code == 0 and args.action == "check":
        for warning in _unwatched(args.edge_config, args.rules):
            print(f"warning: {warning}", file=sys.stderr)
    return code


def _write_config(args: argparse.Namespace) -> int:
    from backend.sites.edgeconfig import UnknownGateway, edge_config_of
    from edge.config import parse_config
    from edge.errors import ConfigError
    from shouwang.commands.common import load_sites
    from shouwang.system import parse_mqtt_url

    if args.sites is None or args.gateway is None:
        print("error: `edge config` needs --sites FILE and --gateway ID", file=sys.stderr)
        return 2
    sites = load_sites(args.sites)
    if sites is None:
        return 2
    try:
        (uh, up), (lh, lp) = parse_mqtt_url(args.uplink), parse_mqtt_url(args.lan)
        config = edge_config_of(sites, args.gateway, uplink_host=uh, uplink_port=up, lan_host=lh, lan_port=lp)
    except (UnknownGateway, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        parse_config(config, source=f"{args.sites} (gateway {args.gateway})")
    except ConfigError as exc:  # the directory holds something the edge cannot run: say which device
        print(f"error: {exc}", file=sys.stderr)
        return 2
    header = (f"# Edge configuration of gateway {args.gateway}, written by `shouwang edge config` from {args.sites}.\n"
              f"# Change devices in the site directory and write it again; set uplink.password from the broker credentials.\n")
    text = header + yaml.safe_dump(config, allow_unicode=True, sort_keys=False)
    if args.edge_config is None:
        sys.stdout.write(text)
    else:
        args.edge_config.parent.mkdir(parents=True, exist_ok=True)
        args.edge_config.write_text(text, encoding="utf-8")
        devices = sum(len(a["devices"]) for a in config["adapters"])
        print(f"{args.edge_config}: gateway {args.gateway}, {len(config['adapters'])} adapters, {devices} devices", file=sys.stderr)
    return 0


def _unwatched(path: Path, rules_file: Path | None) -> list[str]:
    """Devices whose declared metrics (ESPHome entities) include none that a rule watches for their kind."""
    from backend.alarms.rules import load_rules
    from edge.config import load_config

    rules = load_rules(rules_file)
    watched: dict[str, set[str]] = {}
    for metric, kinds in [(t.metric, t.kinds) for t in rules.thresholds] + [(t.metric, t.kinds) for t in rules.trends.values()]:
        for kind in kinds:
            watched.setdefault(kind.value, set()).add(metric)
    out = []
    for adapter in load_config(path).adapters:
        for key, dev in adapter.devices.items():
            metrics = {e.metric.partition("@")[0] for e in dev.entities.values() if e.metric and e.device is None}
            wanted = watched.get(dev.kind.value, set())
            if metrics and wanted and not metrics & wanted:
                out.append(f"device {dev.id} ({adapter.display_name} {key!r}, {dev.kind.value}) maps {', '.join(sorted(metrics))}; "
                           f"no rule watches these for {dev.kind.value} devices (the rules watch {', '.join(sorted(wanted))})")
    return out
