"""``python -m blast_grpc.sim --port 0 --ready-file PATH`` — see ``runner.build_parser``."""

import sys

from .runner import main

sys.exit(main())
