"""Where every engine process logs: stderr, and a rotated file of its own in ``settings.logs_dir``.

::

    settings.logs_dir/            (BLAST's key; null: stderr only)
        coordinator.log           blast-grpc serve
        worker-<id>.log           each browser worker (a restarted worker appends to its file)
        gateway.log               the REST gateway
        *.log.1 … *.log.N         rotated: settings.log_file_max_bytes per file,
                                  settings.log_file_backups old files kept

One file per process, because ``RotatingFileHandler`` is safe within one process only:
two processes rotating the same file would rename it under each other. Every handler
carries the secrets filter (``agent/secrets.py``), so no value of
``settings.secrets_file_path`` reaches stderr or a file in any encoded form.
"""

from __future__ import annotations

import logging
import sys
from logging.handlers import RotatingFileHandler
from pathlib import Path

from .agent.secrets import RedactingFilter, Secrets
from .config import Settings

FORMAT = "%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"


def log_file(settings: Settings, process: str) -> Path | None:
    """The file ``process`` (``coordinator``, ``worker-w1``, ``gateway``) logs to, or None."""
    return Path(settings.logs_dir) / f"{process}.log" if settings.logs_dir else None


def setup_logging(settings: Settings, process: str, level: str | None = None,
                  secrets: Secrets | None = None) -> Secrets:
    """Log at ``level`` (default ``settings.blastai_log_level``) to stderr and to ``log_file``,
    both redacted with ``secrets`` (loaded from ``settings.secrets_file_path`` when None).

    Replaces the root logger's handlers, so calling it again (tests, a restarted main) does not
    write every line twice. Returns the secrets, for the caller to redact its own output."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.setLevel((level or settings.blastai_log_level).upper())
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    path = log_file(settings, process)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(RotatingFileHandler(path, maxBytes=settings.log_file_max_bytes,
                                            backupCount=settings.log_file_backups, encoding="utf-8"))
    formatter = logging.Formatter(FORMAT)
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    if secrets is None:  # loaded after the handlers exist, so its own "loaded N secrets" line is logged
        secrets = Secrets.load(settings.secrets_file_path)
    if secrets:
        flt = RedactingFilter(secrets)
        for handler in handlers:
            handler.addFilter(flt)
    return secrets
