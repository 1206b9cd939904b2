"""One drill from scenario to report folder: run it against a target, read the store, write the report."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backend.sites.model import SiteDirectory
from simulators.drill.render import write_report
from simulators.drill.report import build_report
from simulators.drill.runner import DrillProgress, DrillRun, DrillRunner
from simulators.drill.scenario import Scenario
from simulators.drill.target import DrillTarget, EmbeddedTarget

__all__ = ["run_drill", "run_embedded_drill"]


async def run_drill(scenario: Scenario, sites: SiteDirectory, target: DrillTarget, report_dir: Path, *, responders: bool = True,
                    on_progress: Callable[[DrillProgress], None] | None = None,
                    time_zone: str = "Asia/Shanghai") -> tuple[DrillRun, dict[str, Any], dict[str, Path]]:
    """`time_zone`: the site's (settings `site.time_zone`), for every time the report shows a person."""
    run = await DrillRunner(scenario, sites, target, responders=responders, on_progress=on_progress).run()
    report = build_report(run, sites, time_zone)
    return run, report, await asyncio.to_thread(write_report, report, report_dir)  # charts take ~0.5 s of CPU: off the event loop


async def run_embedded_drill(scenario: Scenario, sites: SiteDirectory, report_dir: Path, *, speed: float | None = None,
                             data_dir: Path | None = None, responders: bool = True,
                             on_progress: Callable[[DrillProgress], None] | None = None) -> tuple[DrillRun, dict[str, Any], dict[str, Path]]:
    """The whole system in this process (temporary data folder unless given), the drill, the report."""
    async with EmbeddedTarget(sites, speed or scenario.speed, data_dir=data_dir) as target:
        return await run_drill(scenario, sites, target, report_dir, responders=responders, on_progress=on_progress)
