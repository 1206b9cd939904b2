"""`python -m edge --config FILE`: the same as `shouwang edge --config FILE`."""

from __future__ import annotations

import sys

from shouwang.cli import main

if __name__ == "__main__":
    sys.exit(main(["edge", *sys.argv[1:]]))
