"""Creating tasks: plain tasks, subtasks and first-of-N races, and ending their trees.

A first-of-N task (``allow_parallelism.first_of_n``, or ``launch_subtask(num_copies=N)``)
never runs itself: it is a record with N racing copies as children::

    race ──▶ copy 1 ─┐
         ──▶ copy 2 ─┼─ first copy to complete with success wins: the others are
         ──▶ copy 3 ─┘  cancelled at once, then the race completes with its answer;
                        a copy that fails never wins; if all fail, the race fails
                        with each copy's error.

Whenever a task ends, its unfinished children are cancelled: nothing outlives the
task that started it. Both that and deciding a race happen in the one finished path,
``TaskStore.finish`` (tasks.py); this module only creates records and queues them, and
gives the finished path its result-cache step (``_record``, wired as ``store.remember``).

The cache is read (on its own thread) before the record is made, so a new task is
created and queued in one step of the event loop.
"""

from __future__ import annotations

from .._proto.blast.v1 import blast_pb2 as pb
from ..config import Config
from .cache import Cache, lineage_key
from .hedge import Hedger
from .scheduler import Scheduler
from .tasks import TaskRecord, TaskStore


class ParentEnded(Exception):
    """A subtask was asked for by a task that has ended."""


class Launcher:
    def __init__(self, config: Config, store: TaskStore, scheduler: Scheduler, cache: Cache | None = None) -> None:
        self.config = config
        self.store = store
        self.scheduler = scheduler
        self.cache = cache
        store.remember = self._record
        self.hedger = Hedger(config)
        store.copy_ended = self.hedger.copy_done
        store.on_finished.append(self.hedger.race_done)

    def copies_for_top_level(self, requested: int = 0) -> int:
        """Copies a top-level task races: ``spec.num_copies`` if set (checked by ``num_copies_problem``),
        else first_of_n_num_copies when first-of-N is on."""
        c = self.config.constraints
        if requested > 0:
            return requested
        return c.first_of_n_num_copies if c.allow_parallelism.first_of_n else 1

    def num_copies_problem(self, requested: int) -> str | None:
        """Why a task may not race ``requested`` copies (``TaskSpec.num_copies``); None if it may."""
        c = self.config.constraints
        if requested < 0:
            return f"spec.num_copies is {requested}; use 0 (the engine's default), 1 or more"
        if requested > 1 and not c.allow_parallelism.first_of_n:
            return (f"spec.num_copies is {requested} but first-of-N is off "
                    "(constraints.allow_parallelism.first_of_n); send 0 or 1")
        if requested > c.first_of_n_num_copies:
            return (f"spec.num_copies is {requested}; the limit is {c.first_of_n_num_copies} "
                    "(constraints.first_of_n_num_copies)")
        return None

    def copies_allowed(self, requested: int) -> int:
        """Copies a ``launch_subtask(num_copies=...)`` gets: 1 unless first-of-N is on."""
        c = self.config.constraints
        if requested <= 1 or not c.allow_parallelism.first_of_n:
            return 1
        return min(requested, c.first_of_n_num_copies)

    async def launch(self, spec: pb.TaskSpec, parent: TaskRecord | None = None, copies: int = 1) -> TaskRecord:
        hit, replay, key = await self._look_up(spec)
        if parent is not None and parent.done:  # it ended while the cache was read
            raise ParentEnded(f"task {parent.task_id} already ended")
        rec = self.store.new(spec, parent)
        previous = self.store.get(spec.previous_task_id) if spec.previous_task_id else None
        if previous is not None:
            rec.prefer_worker = previous.worker_id
        if parent is not None:
            parent.emit(subtask_launched=pb.SubtaskLaunched(subtask_id=rec.task_id, description=spec.description))
        if self._from_cache(rec, hit, replay, key):
            return rec
        if copies <= 1:
            self.scheduler.submit(rec)
            return rec
        rec.copies = copies
        rec.queue()
        self.hedger.start(rec, lambda k: self._start_copy(rec, k))  # all now, or hedged (hedge.py)
        return rec

    def _start_copy(self, race: TaskRecord, k: int) -> None:
        spec = race.spec
        copy = self.store.new(spec, race, copy=k, copies=race.copies)
        race.emit(subtask_launched=pb.SubtaskLaunched(subtask_id=copy.task_id, description=spec.description, copy=k))
        self.scheduler.submit(copy)

    def resume(self, rec: TaskRecord) -> None:
        """Queue a task restored from the task database that never started (no cache look-up:
        it was looked up when it was first submitted)."""
        self.scheduler.submit(rec)

    async def _look_up(self, spec: pb.TaskSpec) -> tuple[str | None, str, str]:
        """(cached result, recording to replay, lineage key) for a task about to be created."""
        if self.cache is None:
            return None, "", ""
        s, directives = self.config.settings, set(spec.cache_control)
        earlier = self.store.lineage(TaskRecord(task_id="", spec=spec))
        turns = [(r.spec.description, r.spec.initial_url) for r in earlier] + [(spec.description, spec.initial_url)]
        model = self.config.task_model(spec.model)
        if model != self.config.constraints.llm_model:  # another model's answer is not this one's
            turns.append(("model", str(model)))
        key = lineage_key(turns)
        hit = None
        if s.cache_results and "no-cache" not in directives:
            hit = await self.cache.get_result(key)
        replay = ""
        if hit is None and s.cache_plans and "no-cache-plan" not in directives:
            replay = await self.cache.get_recording(key) or ""
        return hit, replay, key

    def _from_cache(self, rec: TaskRecord, hit: str | None, replay: str, key: str) -> bool:
        """Answer from the result cache, or attach a recording to replay."""
        if self.cache is None:
            return False
        rec.cache_key = key
        if hit is not None:
            rec.cached = True
            rec.queue()
            self.store.finish(rec, pb.TASK_STATE_COMPLETED, result=hit, success=True)
            return True
        rec.replay = replay
        return False

    def _record(self, rec: TaskRecord) -> None:
        """The finished path's cache step: keep a successful run's answer and recording.
        Only records looked up here have a key (not racing copies, not restored tasks), and
        an answer that came from the cache is not written again."""
        if self.cache is None or not rec.cache_key or rec.cached:
            return
        if rec.state != pb.TASK_STATE_COMPLETED or not rec.success:
            return
        if any(r.human_answers for r in rec.tree()):  # a person's answers shaped it: a rerun must ask again
            return
        s, directives = self.config.settings, set(rec.spec.cache_control)
        if s.cache_results and "no-store" not in directives:
            self.cache.put_result(rec.cache_key, rec.result)
        if s.cache_plans and "no-store-plan" not in directives and rec.recording:
            self.cache.put_recording(rec.cache_key, rec.recording)
