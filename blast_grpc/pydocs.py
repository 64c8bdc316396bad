"""Python's own HTML documentation (Debian's ``python3-doc``): real long pages for tests and the bench.

``find_pydocs()`` returns the folder holding ``library/stdtypes.html`` (over 700 KB of
HTML: tables, nested lists, hundreds of method signatures). ``python -m blast_grpc.pydocs
--install`` runs ``apt-get install python3-doc`` when it is missing and this is root, as
``make test`` and ``make bench`` do (like ``blast_grpc.chromium --install``).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

APT_PACKAGE = "python3-doc"
CANDIDATES = ("/usr/share/doc/python3/html", *sorted(glob.glob("/usr/share/doc/python3.*/html"), reverse=True))


class PyDocsMissing(RuntimeError):
    """Python's HTML documentation is not installed."""


def find_pydocs(install: bool = False) -> Path:
    """The documentation's html folder; with ``install`` (as root) apt-get installs it when missing."""
    for candidate in (os.environ.get("BLAST_PYDOCS", ""), *CANDIDATES):
        if candidate and (Path(candidate) / "library" / "stdtypes.html").is_file():
            return Path(candidate).resolve()
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"blast-grpc: installing Debian's {APT_PACKAGE} package (apt-get)", file=sys.stderr)
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", APT_PACKAGE], check=True)
        return find_pydocs()
    raise PyDocsMissing(f"Python's HTML documentation is not installed: install Debian's {APT_PACKAGE!r} "
                        "package (make pydocs does, as root) or set BLAST_PYDOCS to its html folder")


if __name__ == "__main__":
    try:
        print(find_pydocs(install="--install" in sys.argv))
    except PyDocsMissing as exc:
        sys.exit(str(exc))
