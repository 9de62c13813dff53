"""`python -m opgan <command> ...`: the same as the `opgan` console script."""
import sys

from opgan.cli import main

sys.exit(main())
