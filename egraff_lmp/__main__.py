"""``python -m egraff_lmp`` is the ``egraff-lmp`` command."""

import sys

from .cli import main

sys.exit(main())
