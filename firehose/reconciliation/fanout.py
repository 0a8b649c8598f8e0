"""Every slice of a window, run by an executor, then merged: ``reconcile_all_slices`` (and, through the same
``run_all_slices``, the audit's ``audit_all_slices``).

The plan is the slices without a checkpoint in the run state (a rerun does only what is left). Each slice runs
in a worker process as a single slice does on any machine, with a state database of its own beside the
settings' one (one reconcile or audit at a time per database); a worker keeps its API client and stores from one
slice to the next (``firehose.connections.keep_connections``). A worker that dies (``kill -9``, out of memory)
loses only its slice: the pool is made again and every slice still without a checkpoint is submitted again, up
to ``attempts`` times. What the slices make together is the job's own merge.
"""

from __future__ import annotations

import multiprocessing
import tempfile
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from firehose.config import Settings
from firehose.connections import keep_connections
from firehose.errors import ArchiveError, ConfigError, UsageError
from firehose.progress import NO_PROGRESS, Progress
from firehose.reconciliation.checkpoints import named_slices, run_identity
from firehose.reconciliation.job import SlicedReport, merge_slices, open_run_state, reconcile_slice
from firehose.reconciliation.run import ReconcileOptions


class SliceJob(Protocol):
    """What an executor needs of a sliced job (picklable: it travels to spawned processes and Dask workers)."""

    @property
    def kind(self) -> str:
        """``reconcile`` or ``audit``: the checkpoints' kind, and the progress bar's name."""
        ...

    def identity(self, index: int, shards: int) -> dict[str, Any]:
        """Slice ``index``'s run identity (what its checkpoint must match); checks its bounds."""
        ...

    def run(
        self, index: int, shards: int, settings: Settings, run_state: str, credential_id: str | None, gate: Any
    ) -> bool:
        """Run slice ``index`` (its checkpoint recorded); True when it has one now."""
        ...


def parse_executor(spec: str) -> int | str:
    """``local:N``: N worker processes on this machine (the number); ``dask://host:port``: a Dask scheduler (its
    ``tcp://`` address)."""
    kind, _, rest = spec.partition(":")
    if kind == "local" and rest.isdigit() and int(rest) >= 1:
        return int(rest)
    if kind == "dask" and rest.startswith("//") and len(rest) > 2:
        return "tcp:" + rest
    raise UsageError(f"--executor {spec!r}: use local:N (N worker processes) or dask://host:port (a Dask scheduler)")


def reconcile_all_slices(
    options: ReconcileOptions,
    settings: Settings,
    run_state: str,
    shards: int,
    *,
    workers: int | str,
    credential_id: str | None = None,
    attempts: int = 3,
    api_concurrency: int | None = None,
    progress: Progress = NO_PROGRESS,
) -> SlicedReport:
    """Reconcile every slice of ``options``' window (``shards`` of them) in ``workers`` local processes, or on the
    Dask scheduler at ``workers`` (``tcp://host:port``), each recording its checkpoint in ``run_state``, and merge
    them. Slices done before are not run again. ``api_concurrency``: at most this many slices page ``/events`` at
    once, across every worker (a semaphore of the run's). On Dask the settings (keys included) travel to the workers, as
    every task's arguments do: run the scheduler on a network you trust."""
    if options.dry_run:
        raise UsageError("--executor runs and records every slice: a --dry-run plans one (give --shard I)")
    run_all_slices(ReconcileSlices(options), settings, run_state, shards, workers=workers, credential_id=credential_id,
                   attempts=attempts, api_concurrency=api_concurrency, progress=progress)  # fmt: skip
    return merge_slices(run_state, shards, settings, credential_id=credential_id)


@dataclass(frozen=True)
class ReconcileSlices:
    """Reconcile's slices, for ``run_all_slices``."""

    options: ReconcileOptions
    kind: str = "reconcile"

    def identity(self, index: int, shards: int) -> dict[str, Any]:
        return run_identity(self.options.sharded(index, shards))

    def run(
        self, index: int, shards: int, settings: Settings, run_state: str, credential_id: str | None, gate: Any
    ) -> bool:
        done = reconcile_slice(self.options.sharded(index, shards), slice_settings(settings, index, shards),
                               run_state, credential_id=credential_id, api_gate=gate)  # fmt: skip
        # A slice that could not check a store (error findings) keeps no checkpoint, and is run again.
        return not done.counts.get("error", 0)


def run_all_slices(
    job: SliceJob,
    settings: Settings,
    run_state: str,
    shards: int,
    *,
    workers: int | str,
    credential_id: str | None = None,
    attempts: int = 3,
    api_concurrency: int | None = None,
    progress: Progress = NO_PROGRESS,
) -> None:
    """Run every slice of ``job`` without a checkpoint in ``run_state`` on ``workers`` local processes or the Dask
    scheduler at ``workers``; an ``ArchiveError`` naming the slices still without one after ``attempts``."""
    for index in range(shards):
        job.identity(index, shards)  # every slice's bounds checked before anything runs
    if api_concurrency is not None and api_concurrency < 1:
        raise UsageError(f"--api-concurrency must be at least 1, got {api_concurrency}")
    task = progress.start(f"{job.kind} slices", total=shards)
    left = _left(job, settings, run_state, shards, credential_id)
    task.advance(shards - len(left))
    arguments = (job, shards, settings, run_state, credential_id)
    if isinstance(workers, str):
        _on_dask(workers, left, attempts, arguments, task.advance, api_concurrency)
        left = _left(job, settings, run_state, shards, credential_id)
    else:
        left = _on_processes(workers, left, attempts, arguments, task.advance, api_concurrency)
    task.done()
    if left:
        raise ArchiveError(
            f"{named_slices(left)} have no checkpoint after {attempts} attempts: a store could not be checked (their "
            "error findings name it) or their workers died; the same command retries them"
        )


def _left(job: SliceJob, settings: Settings, run_state: str, shards: int, credential_id: str | None) -> list[int]:
    """The slices without a checkpoint."""
    with open_run_state(run_state, settings, credential_id, kind=job.kind) as state:
        return [index for index in range(shards) if state.done((index, shards), job.identity(index, shards)) is None]


def _on_processes(
    workers: int, left: list[int], attempts: int, arguments: tuple[Any, ...], done: Any, api_concurrency: int | None
) -> list[int]:
    """The slices on a pool of local processes; the pool made again when a worker dies, for what is left."""
    job, shards, settings, run_state, credential_id = arguments
    for _ in range(attempts):
        if not left:
            break
        try:
            with _pool(workers, api_concurrency) as pool:
                pending = {pool.submit(_one_slice, job, index, shards, settings, run_state, credential_id)
                           for index in left}  # fmt: skip
                while pending:
                    finished, pending = wait(pending, timeout=WORKER_CHECK_SECONDS, return_when=FIRST_COMPLETED)
                    for future in finished:
                        # a slice's own failure (a refused key, a full disk) ends the run, named
                        if future.result():
                            done()
                    if pending and _a_worker_died(pool):
                        raise BrokenProcessPool("a worker process died")
        except BrokenProcessPool:
            pass  # a worker died (the pool ends the others): what has no checkpoint is submitted again
        left = _left(job, settings, run_state, shards, credential_id)
    return left


def _on_dask(
    address: str, left: list[int], attempts: int, arguments: tuple[Any, ...], done: Any, api_concurrency: int | None
) -> None:
    """The slices as Dask tasks: a worker that dies has its task run on another (``retries``, and Dask's own
    rescheduling of a lost worker's tasks)."""
    try:
        from distributed import Client, Semaphore
        from distributed import as_completed as finished
    except ImportError:
        raise ConfigError("--executor dask://: Dask is not installed (pip install 'firehose[dask]')") from None
    job, shards, settings, run_state, credential_id = arguments
    tag = job.identity(0, shards)["fingerprint"][:12]
    with Client(address) as client:  # type: ignore[no-untyped-call]  # Dask has no types
        gate = None
        if api_concurrency is not None:  # leases held by the scheduler, for every worker of the cluster
            gate = Semaphore(max_leases=api_concurrency, name=f"firehose-api-{job.kind}-{tag}-{shards}")  # type: ignore[no-untyped-call]
        futures = [
            client.submit(
                _one_slice,
                job,
                index,
                shards,
                settings,
                run_state,
                credential_id,
                gate,
                key=f"firehose-{job.kind}-slice-{index}-of-{shards}-{tag}",
                pure=False,
                retries=attempts,
            )
            for index in left
        ]
        for future in finished(futures):  # type: ignore[no-untyped-call]
            if future.result():
                done()


@contextmanager
def _pool(workers: int, api_concurrency: int | None) -> Iterator[ProcessPoolExecutor]:
    """Worker processes, spawned (not forked: the parent holds threads, and a fork copies their locks held),
    sharing a semaphore of ``api_concurrency`` leases, new with each pool: a worker killed while it held one
    breaks the pool, which ends the others, so no lease is ever lost."""
    context = multiprocessing.get_context("spawn")
    gate = context.Semaphore(api_concurrency) if api_concurrency is not None else None
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_given_gate, initargs=(gate,))
    try:
        yield pool
    except BrokenProcessPool:
        _kill_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


WORKER_CHECK_SECONDS = 1.0
"""How often a run on local workers looks whether one of them died, besides the pool's own watch."""


def _a_worker_died(pool: ProcessPoolExecutor) -> bool:
    """Whether a worker of the pool has ended while slices wait. The pool notices a dead worker through the
    processes it watched when it last woke: one it spawned after that (it starts them as slices are submitted)
    can die unnoticed, and the run then waits for the slowest slice, or for ever. Seen: a worker killed as it
    started, its pool still waiting 30 s later."""
    return any(process.exitcode is not None for process in _workers(pool))


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    """Kill every worker of a broken pool, so that its shutdown can join them at once.

    When a worker dies, the pool sends the others SIGTERM and a stop, counted from the workers it knew then, and
    waits for each to end: one spawned in that moment (the pool starts them as slices are submitted) gets
    neither and waits for work for ever (seen under load: ``reconcile --executor local:2`` waiting past 240 s,
    its other worker idle in ``Queue.get``), and one busy with a long slice is waited for. SIGKILL to every
    process the pool knows ends both."""
    for process in _workers(pool):
        with suppress(OSError, ValueError, AttributeError):
            process.kill()


def _workers(pool: ProcessPoolExecutor) -> list[Any]:
    """The pool's worker processes, started so far (``_processes``: CPython 3.9 to 3.13 keep them there)."""
    return list((getattr(pool, "_processes", None) or {}).values())


_GATE: Any = None
"""In a local worker process: the pool's semaphore (set once by ``_given_gate``)."""


def _given_gate(gate: Any) -> None:
    global _GATE
    _GATE = gate


def _one_slice(
    job: SliceJob,
    index: int,
    shards: int,
    settings: Settings,
    run_state: str,
    credential_id: str | None,
    gate: Any = None,
) -> bool:
    """One slice in a worker; ``gate`` (a shared semaphore) held while it pages ``/events``. The worker keeps its
    API client and stores for the next slice it runs (``keep_connections``), closed when it ends."""
    keep_connections()
    return job.run(index, shards, settings, run_state, credential_id, gate if gate is not None else _GATE)


def slice_settings(settings: Settings, index: int, shards: int) -> Settings:
    """A worker's settings for slice ``index``: a state database of its own beside the settings' one (one run at
    a time per database), or in a scratch folder on a machine that has not that folder."""
    folder = settings.state_file.parent
    if not folder.is_dir():
        folder = Path(tempfile.gettempdir())
    return replace(settings, state_file=folder / f"{settings.state_file.stem}.slice-{index}-of-{shards}.sqlite")
