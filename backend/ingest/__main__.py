"""Run the ingest path alone: `python -m backend.ingest --broker HOST:PORT --data-dir DIR`.

Used by the restart tests (killed with SIGKILL mid-stream) and for running ingest as its own process.
Prints `ingest ready` once subscribed. With --feed-log, every message handed to alerting is appended to a
JSON-lines file (msg_id and kind), flushed per line, so a test can count deliveries across crashes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from backend.ingest.handoff import Reading
from backend.ingest.service import IngestService
from backend.ops.checks import ingest_readiness
from backend.ops.endpoint import OpsEndpoint
from backend.ops.metrics import Metrics
from backend.settings import load_settings
from backend.sites.loader import load_site_directory
from backend.sites.model import SiteDirectory
from broker.schemas import Uplink


class JsonlFeed:
    def __init__(self, out: IO[str]) -> None:
        self._out = out

    async def on_uplink(self, uplink: Uplink, received_ms: int) -> None:
        self._out.write(json.dumps({"msg_id": uplink.message.msg_id, "kind": uplink.topic.kind.value}) + "\n")  # type: ignore[union-attr]
        self._out.flush()

    async def on_readings(self, readings: Sequence[Reading]) -> None:
        return None


async def _main(args: argparse.Namespace) -> None:
    host, port = args.broker.rsplit(":", 1)
    # Without a site directory every device is unknown: then take them all (a raw ingest worker for tests).
    settings = load_settings(args.config, storage={"data_dir": args.data_dir}, **({} if args.site else {"ingest": {"known_devices_only": False}}))
    sites = load_site_directory(args.site) if args.site else SiteDirectory({}, {}, {}, {}, {}, {}, {}, {}, {})
    args.data_dir.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with contextlib.ExitStack() as stack:
        feed = JsonlFeed(stack.enter_context(open(args.feed_log, "a", encoding="utf-8"))) if args.feed_log else None  # noqa: ASYNC230
        async with IngestService(settings, sites, host, int(port), feed=feed, client_id=args.client_id) as service, \
                contextlib.AsyncExitStack() as ops:
            if args.metrics_port is not None:  # /metrics, /livez, /readyz on their own port (docs/operations.md)
                metrics = Metrics(stats=service.stats, process="ingest")
                metrics.watch_pipeline(service.pipeline.lanes)
                endpoint = await ops.enter_async_context(OpsEndpoint(ingest_readiness(settings, service, None), metrics, "127.0.0.1", args.metrics_port))
                print(f"metrics on {endpoint.url}/metrics", flush=True)
            print("ingest ready", flush=True)
            await stop.wait()
            print(json.dumps(service.stats()), flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m backend.ingest", description=__doc__)
    p.add_argument("--broker", required=True, help="HOST:PORT of the MQTT broker")
    p.add_argument("--data-dir", type=Path, required=True, help="folder of the journals and the SQLite time-series store")
    p.add_argument("--config", type=Path, default=None, help="settings file (TOML)")
    p.add_argument("--site", type=Path, default=None, help="site directory (YAML) for the device tags")
    p.add_argument("--client-id", default="shouwang-ingest")
    p.add_argument("--feed-log", default=None, help="append what is handed to alerting to this JSON-lines file")
    p.add_argument("--metrics-port", type=int, default=None, help="serve /metrics, /livez and /readyz on 127.0.0.1:PORT (0: a free one)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
