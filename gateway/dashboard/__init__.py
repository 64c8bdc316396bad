"""The web dashboard: watch and steer the engine's tasks from a browser (``settings.dashboard``).

A separate process (``python -m gateway.dashboard``, started by ``blast-grpc serve`` on
``settings.web_port``, ``coordinator/dashboard_proc.py``), stateless like the REST gateway:
everything it shows is read from the coordinator's public gRPC API through
``gateway.backend`` (SubmitTask, ListTasks, WatchTask, CancelTask, GetMetrics).

The pages are server-rendered Jinja2 templates; htmx (vendored in ``static/`` with its
license) polls the task list and the metrics panel and keeps a task's tree live from an
SSE stream of WatchTask, whose events arrive as out-of-band HTML fragments (``views.py``).
There is no hand-written JavaScript.

Modules: ``app.py`` routes, ``auth.py`` the login cookie, ``views.py`` records and events as
view data and fragments, ``plots.py`` the metrics history and its SVG sparklines.
"""

from .app import create_app

__all__ = ["create_app"]
