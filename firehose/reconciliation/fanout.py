"""Every slice of a window, run by an executor, then merged: ``reconcile_all_slices``.

The plan is the slices without a checkpoint in the run state (a rerun does only what is left). Each slice runs
in a worker process as ``reconcile_slice`` does on any machine, with a state database of its own beside the
settings' one (one reconcile at a time per database). A worker that dies (``kill -9``, out of memory) loses only
its slice: the pool is made again and every slice still without a checkpoint is submitted again, up to
``attempts`` times. The merged report is the one a single run over the whole window writes.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from firehose.config import Settings
from firehose.connections import open_url
from firehose.errors import FirehoseError, UsageError
from firehose.progress import NO_PROGRESS, Progress
from firehose.reconciliation.checkpoints import RunState
from firehose.reconciliation.job import SlicedReport, merge_slices, reconcile_slice
from firehose.reconciliation.run import ReconcileOptions


def parse_executor(spec: str) -> int:
    """``local:N``: N worker processes on this machine (the only executor built yet)."""
    kind, _, number = spec.partition(":")
    if kind == "local" and number.isdigit() and int(number) >= 1:
        return int(number)
    if kind == "dask":
        raise UsageError("--executor dask://...: not built yet; use local:N, or run each --shard on a machine")
    raise UsageError(f"--executor {spec!r}: use local:N (N worker processes)")


def reconcile_all_slices(
    options: ReconcileOptions,
    settings: Settings,
    run_state: str,
    shards: int,
    *,
    workers: int,
    credential_id: str | None = None,
    attempts: int = 3,
    progress: Progress = NO_PROGRESS,
) -> SlicedReport:
    """Reconcile every slice of ``options``' window (``shards`` of them) in ``workers`` processes, each recording
    its checkpoint in ``run_state``, and merge them. Slices done before are not run again."""
    if options.dry_run:
        raise UsageError("--executor runs and records every slice: a --dry-run plans one (give --shard I)")
    for index in range(shards):
        options.sharded(index, shards)  # every slice's bounds checked before anything runs
    task = progress.start("reconcile slices", total=shards)
    left = _left(options, settings, run_state, shards, credential_id)
    task.advance(shards - len(left))
    for _ in range(attempts):
        if not left:
            break
        try:
            with _pool(workers) as pool:
                futures: dict[Future[Any], int] = {
                    pool.submit(_one_slice, options, index, shards, settings, run_state, credential_id): index
                    for index in left
                }
                for future in as_completed(futures):
                    future.result()  # a slice's own error (a refused key, a full disk) ends the run, named
                    task.advance()
        except BrokenProcessPool:
            pass  # a worker died: what has no checkpoint is submitted again
        left = _left(options, settings, run_state, shards, credential_id)
    task.done()
    if left:
        shown = ", ".join(map(str, left[:20]))
        raise FirehoseError(f"slices {shown} did not finish after {attempts} attempts (their workers died)")
    return merge_slices(run_state, shards, settings, credential_id=credential_id)


def _left(
    options: ReconcileOptions, settings: Settings, run_state: str, shards: int, credential_id: str | None
) -> list[int]:
    """The slices without a checkpoint."""
    store, where = open_url(run_state, settings, credential_id, "--run-state")
    try:
        state = RunState(store, where.prefix)
        return [index for index in range(shards) if state.done(options.sharded(index, shards)) is None]
    finally:
        store.close()


@contextmanager
def _pool(workers: int) -> Iterator[Executor]:
    # spawn, not fork: the parent holds threads (a fork copies their locks held), and a worker must be a clean
    # process that a kill takes alone.
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _one_slice(
    options: ReconcileOptions,
    index: int,
    shards: int,
    settings: Settings,
    run_state: str,
    credential_id: str | None,
) -> dict[str, Any]:
    """One slice in a worker, with a state database of its own beside the settings' one."""
    state_file = settings.state_file.with_name(f"{settings.state_file.stem}.slice-{index}-of-{shards}.sqlite")
    done = reconcile_slice(
        options.sharded(index, shards), replace(settings, state_file=state_file), run_state, credential_id=credential_id
    )
    return done.report()
