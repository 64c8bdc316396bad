"""The result cache and the plan cache, in SQLite next to the coordinator.

Both are keyed by a task's *lineage*: its description and start URL, preceded by
those of the earlier tasks of its conversation (the previous_task_id chain), so a
follow-up never gets the answer to a different conversation.

* result cache: a task whose lineage completed successfully before is answered at
  once, with no browser and no LLM call (skip with "no-cache", don't record with
  "no-store");
* plan cache: the recorded steps of a successful run (the browser actions, the
  element each one targeted, the page text it finished on), which the agent
  replays without asking the model, falling back to the model from the first step
  that no longer fits the page ("no-cache-plan", "no-store-plan").

The file lives at ``settings.cache_path``; without ``settings.persist_cache`` it is
emptied at start-up.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, result TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS plans (key TEXT PRIMARY KEY, plan TEXT NOT NULL, created REAL NOT NULL);
"""


def lineage_key(turns: list[tuple[str, str]]) -> str:
    """A stable key for a list of (description, initial_url), oldest first."""
    return hashlib.sha256(json.dumps(turns, ensure_ascii=False).encode()).hexdigest()


class Cache:
    def __init__(self, path: str | Path, persist: bool) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not persist:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None)  # autocommit; one writer: us
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def get_result(self, key: str) -> str | None:
        row = self._db.execute("SELECT result FROM results WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put_result(self, key: str, result: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?)", (key, result, time.time()))

    def get_plan(self, key: str) -> str | None:
        row = self._db.execute("SELECT plan FROM plans WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put_plan(self, key: str, plan: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO plans VALUES (?, ?, ?)", (key, plan, time.time()))

    def close(self) -> None:
        self._db.close()
