"""A street of ~100,000 devices from one process, for load work, with a live progress display.

How this works: one CommunitySimulator for the whole street (one connection per gateway, ~600 for a
street), stepping the fleet in quarter-second slices of wall time; a rich Live table redraws twice a second
from the simulator's counters: messages sent in total and per class, the rate over the last redraw, dropped
messages, reconnects, and how far simulated time trails the clock (it grows when the process cannot keep up
with `speed`, which is the figure a load test is after).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from backend.sites.model import SiteDirectory
from simulators.dialects import DialectTopics
from simulators.live import CommunitySimulator, DialectMode, PublishStats
from simulators.signals import SimulationProfile

__all__ = ["StreetProgress", "run_street"]


class StreetProgress:
    """Renders a simulator's counters; remembers the last snapshot to show rates."""

    def __init__(self, sim: CommunitySimulator, duration_s: float | None) -> None:
        self.sim = sim
        self.duration_s = duration_s
        self.t0 = time.monotonic()
        self.sim0 = sim.fleet.t
        self._last_t = self.t0
        self._last: Counter[str] = Counter()
        self._rates: dict[str, float] = {}

    def render(self) -> Group:
        now = time.monotonic()
        stats = self.sim.stats
        dt = max(now - self._last_t, 1e-6)
        self._rates = {k: (v - self._last[k]) / dt for k, v in stats.sent.items()}
        self._last, self._last_t = Counter(stats.sent), now
        simulated = stats.sim_time - self.sim0
        wall = now - self.t0
        head = Text.assemble(
            ("Street simulator  ", "bold"),
            f"{len(self.sim.fleet.devices):,} devices, {len(self.sim.links):,} gateway connections, speed {self.sim.speed:g}×\n",
            f"wall {wall:7.1f} s   simulated {simulated:9.0f} s"
            + (f" of {self.duration_s:.0f} s" if self.duration_s else "")
            + f"   lag {stats.lag_s:6.1f} s   dropped {stats.dropped:,}   reconnects {stats.reconnects:,}",
        )
        table = Table(show_footer=True)
        table.add_column("class", footer="total")
        table.add_column("messages", justify="right", footer=f"{stats.total:,}")
        table.add_column("msg/s now", justify="right", footer=f"{sum(self._rates.values()):,.0f}")
        table.add_column("msg/s mean", justify="right", footer=f"{stats.total / max(wall, 1e-6):,.0f}")
        for label in sorted(stats.sent):
            table.add_row(label, f"{stats.sent[label]:,}", f"{self._rates.get(label, 0.0):,.0f}", f"{stats.sent[label] / max(wall, 1e-6):,.0f}")
        return Group(head, table)


async def run_street(
    sites: SiteDirectory,
    host: str,
    port: int,
    *,
    speed: float = 1.0,
    duration_s: float | None = None,
    dialects: DialectMode = "native",
    seed: int = 7,
    profile: SimulationProfile | None = None,
    console: Console | None = None,
    stop: asyncio.Event | None = None,
    username: str | None = None,
    password: str | None = None,
) -> PublishStats:
    """Publish the whole directory until `duration_s` of simulated time has passed (or `stop` is set)."""
    console = console or Console()
    stop = stop or asyncio.Event()
    sim = CommunitySimulator(
        sites,
        host,
        port,
        speed=speed,
        seed=seed,
        profile=profile,
        duration_s=duration_s,
        dialects=dialects,
        dialect_topics=DialectTopics.per_gateway(),  # many gateways share this broker: keep their ecosystems apart
        username=username,
        password=password,
        connect_timeout_s=120.0,
    )
    console.print(f"connecting {len(sim.links):,} gateways to mqtt://{host}:{port} ...")
    async with sim:
        progress = StreetProgress(sim, duration_s)
        with Live(progress.render(), console=console, refresh_per_second=2) as live:
            while not (sim.finished.is_set() or stop.is_set()):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(sim.finished.wait(), 0.5)  # redraw pace, not a wait for simulated time
                live.update(progress.render())
            await sim.drained()
            live.update(progress.render())
    return sim.stats
