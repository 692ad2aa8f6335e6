"""``python -m tiler.cli``: the `tiler` command."""

import sys

from tiler.cli import main

sys.exit(main())
