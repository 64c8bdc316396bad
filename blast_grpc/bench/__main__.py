import sys

from .cli import main

if __name__ == "__main__":  # spawned processes (extraction readers) re-import this module
    sys.exit(main())
