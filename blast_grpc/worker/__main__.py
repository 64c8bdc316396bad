"""``python -m blast_grpc.worker``: a browser worker process.

Kept free of imports at module level: extraction readers are spawned from the
worker and re-import this main module, and should not pay for Playwright and grpc.
"""

if __name__ == "__main__":
    import sys

    from .main import main

    sys.exit(main())
