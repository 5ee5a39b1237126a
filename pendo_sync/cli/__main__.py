"""`python -m pendo_sync.cli`: the same as `pendo-sync`."""

import sys

from pendo_sync.cli import main

sys.exit(main())
