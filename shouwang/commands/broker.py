"""`shouwang broker`: the embedded broker, and production Mosquitto configuration from the site directory."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
from pathlib import Path
from typing import Any

from backend.sites import load_site_directory
from broker.embedded import EmbeddedBroker
from broker.mosquitto import MosquittoLayout, TlsFiles, write_layout


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("broker", help="embedded broker and Mosquitto configuration",
                                                description="Run the embedded MQTT broker, or generate production Mosquitto configuration.")
    s = p.add_subparsers(dest="broker_command", metavar="ACTION", required=True)
    e = s.add_parser("embedded", help="run the embedded (amqtt) broker in the foreground")
    e.add_argument("--host", default="127.0.0.1")
    e.add_argument("--port", type=int, default=1883)
    e.set_defaults(handler=_embedded)
    c = s.add_parser("config", help="generate mosquitto.conf, ACLs and per-gateway credentials",
                     description=(
                         "Generate Mosquitto configuration from a site directory: per-gateway users and ACLs (a gateway "
                         "publishes only under its own prefix and reads only its own commands), persistence, TCP_NODELAY, "
                         "optional TLS. Passwords are generated and written to credentials.json (mode 0600) beside the "
                         "configuration: keep it out of the repository."))
    c.add_argument("--sites", type=Path, required=True, help="site directory file")
    c.add_argument("-o", "--output", type=Path, required=True, help="folder to write into")
    c.add_argument("--port", type=int, default=1883)
    c.add_argument("--bind", default="0.0.0.0")  # noqa: S104 - a production broker listens on the network
    c.add_argument("--backend-user", default="shouwang-backend")
    c.add_argument("--tls-ca", type=Path)
    c.add_argument("--tls-cert", type=Path)
    c.add_argument("--tls-key", type=Path)
    c.add_argument("--tls-port", type=int, default=8883)
    c.set_defaults(handler=_config)


def _embedded(args: argparse.Namespace) -> int:
    async def serve() -> None:
        async with EmbeddedBroker(args.host, args.port) as b:
            print(f"embedded broker on {b.url}; Ctrl-C stops it", flush=True)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
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
    for user in [args.backend_user, *sites.gateways]:
        creds.setdefault(user, secrets.token_urlsafe(18))
    layout = MosquittoLayout(args.output, port=args.port, bind_address=args.bind, tls=tls, run_as="mosquitto")
    write_layout(layout, creds, sites.gateways, args.backend_user)
    creds_path.write_text(json.dumps(creds, indent=1))
    creds_path.chmod(0o600)
    print(f"wrote {layout.conf_path}, {layout.acl_path}, {layout.password_path} and {creds_path} for {len(sites.gateways)} gateways")
    return 0
