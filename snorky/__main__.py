"""``python -m snorky``: the same as the ``snorky`` command."""

import sys

from snorky.cli import main

sys.exit(main())
