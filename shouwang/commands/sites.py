"""`shouwang sites`: generate, check and summarise site directories."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from backend.sites import SiteDirectoryInvalid, generate_site_document, load_site_directory, write_site_document


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("sites", help="generate, check and summarise site directories",
                                                description="Generate, check and summarise site directories: places, devices, people and rosters.")
    s = p.add_subparsers(dest="sites_command", metavar="ACTION", required=True)
    g = s.add_parser("generate", help="generate a realistic site directory",
                     description="Generate a realistic site directory: one community is ~2,400 households and "
                     "~6,000 devices; 15 make a street of ~90,000 devices.")
    g.add_argument("--communities", type=int, default=1, help="number of communities (default 1)")
    g.add_argument("--seed", type=int, default=7, help="random seed; the same seed gives the same file")
    g.add_argument("--grids", type=int, default=8, help="grids per community (default 8)")
    g.add_argument("--buildings-per-grid", type=int, default=5, help="buildings per grid (default 5)")
    g.add_argument("-o", "--output", type=Path, required=True, help="file to write (YAML)")
    g.set_defaults(handler=_generate)
    c = s.add_parser("check", help="validate a site directory and print what it holds",
                     description="Validate a site directory; print every problem as file:line: what to fix.")
    c.add_argument("file", type=Path)
    c.set_defaults(handler=_check)


def _generate(args: argparse.Namespace) -> int:
    doc = generate_site_document(args.communities, seed=args.seed, grids=args.grids, buildings_per_grid=args.buildings_per_grid)
    write_site_document(doc, args.output)
    sites = load_site_directory(args.output)
    print(f"wrote {args.output}: " + ", ".join(f"{v} {k}" for k, v in sites.summary().items()))
    return 0


def _check(args: argparse.Namespace) -> int:
    try:
        sites = load_site_directory(args.file)
    except SiteDirectoryInvalid as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{args.file} is valid: " + ", ".join(f"{v} {k}" for k, v in sites.summary().items()))
    return 0
