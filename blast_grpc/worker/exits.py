"""Exit codes of a worker process, and what each means, for whoever supervises it.

Kept free of heavy imports (no Playwright, no gRPC) so the coordinator's supervisor
can read them: ``describe_exit(3)`` is ``"its Chromium browser died"``.
"""

from __future__ import annotations

EXIT_BROWSER_LOST = 3  # the worker's Chromium disconnected (crashed or was killed); the worker exited
EXIT_LOOP_CRASHED = 4  # a long-lived loop of the worker raised (a bug; its traceback is in the worker's log)
EXIT_REFUSED = 5  # a remote worker: the coordinator refused it (token, worker id); the reason is in its log

# Trailing metadata on the UNAVAILABLE a worker ends a task's stream with when it is exiting
# (browser lost, crashed loop): the coordinator then waits for the exit before it retries the
# task, instead of sending the retry to the same dying worker while it still looks ready.
EXITING_METADATA = "blast-worker-exiting"

EXIT_REASONS = {
    EXIT_BROWSER_LOST: "its Chromium browser died",
    EXIT_LOOP_CRASHED: "a long-lived loop of the worker crashed (see the traceback in the worker's log)",
    EXIT_REFUSED: "the coordinator refused the worker (see the reason in the worker's log)",
}


def exit_reason(code: int) -> str | None:
    """Why a worker exited with ``code``, when the code says (None for codes without a meaning)."""
    return EXIT_REASONS.get(code)
