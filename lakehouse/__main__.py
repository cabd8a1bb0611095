"""`python -m lakehouse ...`: the `lakehouse` command (lakehouse.cli)."""

import sys

from lakehouse.cli import main

if __name__ == "__main__":
    sys.exit(main())
