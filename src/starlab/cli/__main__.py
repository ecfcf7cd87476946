"""``python -m starlab.cli``: the command line."""

import sys

from starlab.cli import main

sys.exit(main())
