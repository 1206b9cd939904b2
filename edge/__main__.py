"""`python -m edge --config FILE`: the same as `shouwang edge --config FILE`, importing only `edge/` and `broker/`."""

from __future__ import annotations

import sys

from edge.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
