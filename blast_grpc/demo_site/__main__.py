"""``python -m blast_grpc.demo_site --port 0 --ready-file PATH``."""

import sys

from .server import main

sys.exit(main())
