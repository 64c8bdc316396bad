"""``python -m blast_grpc.miniwob``: fetch MiniWoB++'s pages (see ``fetch``)."""

import sys

from .fetch import main

sys.exit(main())
