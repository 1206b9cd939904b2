"""`shouwang broker`: the embedded broker, and production Mosquitto configuration from the site directory."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import sys
from pathlib import Path
from typing import Any

from backend.sites import load_site_directory
from broker.embedded import SERVICE_USER, BrokerStartError, EmbeddedBroker, load_access
from broker.mosquitto import NOTIFY_USER, MosquittoLayout, TlsFiles, write_layout


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("broker", help="embedded broker and Mosquitto configuration",
                                                description="Run the embedded MQTT broker, or generate production Mosquitto configuration.")
    s = p.add_subparsers(dest="broker_command", metavar="ACTION", required=True)
    e = s.add_parser("embedded", help="run the embedded (amqtt) broker in the foreground")
    e.add_argument("--host", default="127.0.0.1")
    e.add_argument("--port", type=int, default=1883)
    e.add_argument("--data-dir", type=Path, default=Path("var"),
                   help="folder of broker-access.json, the logins it admits (made on first start, mode 0600; default var/)")
    e.add_argument("--sites", type=Path, default=None, help="site directory: a login is added for each of its gateways")
    e.set_defaults(handler=_embedded)
    c = s.add_parser("config", help="generate mosquitto.conf, ACLs and per-gateway credentials",
                     description=(
                         "Generate Mosquitto configuration from a site directory: per-gateway users and ACLs (a gateway "
                         "publishes only under its own prefix and reads only its own commands), persistence, TCP_NODELAY, "
                         "optional TLS. Passwords are generated and written to credentials.json (mode 0600) beside the "
                         "configuration: keep it out of the repository. Run as root, it gives Mosquitto's user (mosquitto) "
                         "the files Mosquitto opens after dropping privileges; otherwise it prints the chown to run."))
    c.add_argument("--sites", type=Path, required=True, help="site directory file")
    c.add_argument("-o", "--output", type=Path, required=True, help="folder to write into")
    c.add_argument("--port", type=int, default=1883)
    c.add_argument("--bind", default="0.0.0.0")  # noqa: S104 - a production broker listens on the network
    c.add_argument("--backend-user", default="shouwang-backend")
    c.add_argument("--run-as", default="mosquitto", help="user Mosquitto drops to when started as root (default mosquitto)")
    c.add_argument("--tls-ca", type=Path)
    c.add_argument("--tls-cert", type=Path)
    c.add_argument("--tls-key", type=Path)
    c.add_argument("--tls-port", type=int, default=8883)
    c.set_defaults(handler=_config)


def _embedded(args: argparse.Namespace) -> int:
    gateways = list(load_site_directory(args.sites).gateways) if args.sites is not None else []
    access = load_access(args.data_dir, gateways)

    async def serve() -> None:
        async with EmbeddedBroker(args.host, args.port, access=access, state_dir=args.data_dir) as b:
            print(f"embedded broker on {b.url}; logins ({SERVICE_USER} and one per gateway) in {access.path}; Ctrl-C stops it", flush=True)
            await asyncio.Event().wait()

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve())
    except BrokerStartError as exc:
        print(f"shouwang broker embedded: {exc.why}", file=sys.stderr)
        return 1
    return 0


def _config(args: argparse.Namespace) -> int:
    sites = load_site_directory(args.sites)
    tls = None
    if args.tls_cert or args.tls_key or args.tls_ca:
        if not (args.tls_cert and args.tls_key and args.tls_ca):
            print("TLS needs all of --tls-ca, --tls-cert and --tls-key")
            return 2
        tls = TlsFiles(args.tls_ca, args.tls_cert, args.tls_key, args.tls_port)
    creds_path: Path = args.output / "credentials.json"
    creds: dict[str, str] = json.loads(creds_path.read_text()) if creds_path.exists() else {}
    for user in [args.backend_user, NOTIFY_USER, *sites.gateways]:
        creds.setdefault(user, secrets.token_urlsafe(18))
    buildings: dict[str, set[str]] = {}
    for device in sites.devices.values():
        buildings.setdefault(device.gateway, set()).add(device.building)
    layout = MosquittoLayout(args.output, port=args.port, bind_address=args.bind, tls=tls, run_as=args.run_as)
    todo = write_layout(layout, creds, sites.gateways, args.backend_user, gateway_buildings=buildings)
    creds_path.write_text(json.dumps(creds, indent=1))
    creds_path.chmod(0o600)
    print(f"wrote {layout.conf_path}, {layout.acl_path}, {layout.password_path} and {creds_path} for {len(sites.gateways)} gateways")
    if todo:
        print(f"Mosquitto opens the password file, the ACL and data/ as {args.run_as}; run as root before starting it:")
        print("\n".join(f"  {line}" for line in todo))
    else:
        print(f"the password file, the ACL and data/ belong to {args.run_as}: Mosquitto can start as written")
    return 0
