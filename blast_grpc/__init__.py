"""blast-grpc: a serving engine for web-browsing AI, over gRPC.

Public surface: ``Client`` (talk to a running engine), ``Engine`` (start one
locally), ``load_config`` / ``Config`` / ``ConfigError``.
"""

import os as _os

# Workers are spawned with fork+exec; gRPC's fork handlers only add noise there.
_os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from .client import Client  # noqa: E402
from .config import Config, ConfigError, load_config  # noqa: E402
from .engine import Engine, EngineStartError  # noqa: E402

__all__ = ["Client", "Config", "ConfigError", "Engine", "EngineStartError", "load_config"]
