"""MiniWoB++ (PyPI ``miniwob==1.1.0``) as a proving ground for the agent.

Only the package's ``html/`` folder is used: its pages are served unmodified as
static files on loopback (``DemoSite`` with ``pages_dir``), the engine runs one
task per episode ("Do the MiniWoB task on <url>"), and the scripted policy
(``blast_grpc.sim.policies.miniwob``) plays it from the engine's observations.

* ``fetch``    — downloads the wheel (no dependencies, hash-checked) and unpacks ``html/``;
* ``episodes`` — the task types of the suite and running episodes through a ``Client``.
"""

from .episodes import TASK_TYPES, Episode, run_episodes, success_table, task_text
from .fetch import html_dir

__all__ = ["TASK_TYPES", "Episode", "html_dir", "run_episodes", "success_table", "task_text"]
