"""Emergency drills (应急演练): scenario files → simulated devices and people → the real pipeline → a report.

scenario (YAML timeline, places resolved against the site directory) → runner (CommunitySimulator on the
drill clock, a broker.clock.ScaledClock; simulated responders) against a target (embedded system, or a running one) → report (figures
from the alarm store) → render (JSON, PNG charts, HTML).
"""

from simulators.drill.render import write_report
from simulators.drill.report import build_report
from simulators.drill.runner import DrillRun, DrillRunner
from simulators.drill.scenario import Scenario, ScenarioError, load_scenario
from simulators.drill.target import EmbeddedTarget, RemoteTarget

__all__ = [
    "DrillRun",
    "DrillRunner",
    "EmbeddedTarget",
    "RemoteTarget",
    "Scenario",
    "ScenarioError",
    "build_report",
    "load_scenario",
    "write_report",
]
