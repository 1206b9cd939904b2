"""`shouwang edge`: the gateway's own command line (edge/cli.py), registered under the centre's command."""

from __future__ import annotations

from edge.cli import register

__all__ = ["register"]
