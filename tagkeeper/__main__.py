"""``python -m tagkeeper``: the same as the ``tagkeeper`` command."""

import sys

from tagkeeper.cli import main

sys.exit(main())
