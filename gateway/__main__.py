"""``python -m gateway``: see ``gateway.main``."""

import sys

from .main import main

sys.exit(main())
