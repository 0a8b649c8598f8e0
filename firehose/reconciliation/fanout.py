"""Every slice of a window, run by an executor, then merged: ``reconcile_all_slices``.

The plan is the slices without a checkpoint in the run state (a rerun does only what is left). Each slice runs
in a worker process as ``reconcile_slice`` does on any machine, with a state database of its own beside the
settings' one (one reconcile at a time per database). A worker that dies (``kill -9``, out of memory) loses only
its slice: the pool is made again and every slice still without a checkpoint is submitted again, up to
``attempts`` times. The merged report is the one a single run over the whole window writes.
"""

from __future__ import annotations

import multiprocessing
import tempfile
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from firehose.config import Settings
from firehose.connections import open_url
from firehose.errors import ArchiveError, ConfigError, UsageError
from firehose.progress import NO_PROGRESS, Progress
from firehose.reconciliation.checkpoints import RunState
from firehose.reconciliation.job import SlicedReport, merge_slices, reconcile_slice
from firehose.reconciliation.run import ReconcileOptions


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
    for index in range(shards):
        options.sharded(index, shards)  # every slice's bounds checked before anything runs
    task = progress.start("reconcile slices", total=shards)
    left = _left(options, settings, run_state, shards, credential_id)
    task.advance(shards - len(left))
    if api_concurrency is not None and api_concurrency < 1:
        raise UsageError(f"--api-concurrency must be at least 1, got {api_concurrency}")
    arguments = (options, shards, settings, run_state, credential_id)
    if isinstance(workers, str):
        _on_dask(workers, left, attempts, arguments, task.advance, api_concurrency)
        left = _left(options, settings, run_state, shards, credential_id)
    else:
        left = _on_processes(workers, left, attempts, arguments, task.advance, api_concurrency)
    task.done()
    if left:
        shown = ", ".join(map(str, left[:20])) + (f" and {len(left) - 20} more" if len(left) > 20 else "")
        raise ArchiveError(
            f"slices {shown} have no checkpoint after {attempts} attempts: a store could not be checked (their error "
            "findings name it) or their workers died; the same command retries them"
        )
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


def _on_processes(
    workers: int, left: list[int], attempts: int, arguments: tuple[Any, ...], done: Any, api_concurrency: int | None
) -> list[int]:
    """The slices on a pool of local processes; the pool made again when a worker dies, for what is left."""
    options, shards, settings, run_state, credential_id = arguments
    for _ in range(attempts):
        if not left:
            break
        try:
            with _pool(workers, api_concurrency) as pool:
                futures = [pool.submit(_one_slice, *(options, index, shards, settings, run_state, credential_id))
                           for index in left]  # fmt: skip
                for future in as_completed(futures):
                    # a slice's own failure (a refused key, a full disk) ends the run, named
                    if _checked(future.result()):
                        done()
        except BrokenProcessPool:
            pass  # a worker died (the pool ends the others): what has no checkpoint is submitted again
        left = _left(options, settings, run_state, shards, credential_id)
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
    options, shards, settings, run_state, credential_id = arguments
    with Client(address) as client:  # type: ignore[no-untyped-call]  # Dask has no types
        gate = None
        if api_concurrency is not None:  # leases held by the scheduler, for every worker of the cluster
            name = f"firehose-api-{options.fingerprint()[:12]}-{shards}"
            gate = Semaphore(max_leases=api_concurrency, name=name)  # type: ignore[no-untyped-call]
        futures = [
            client.submit(
                _one_slice,
                options,
                index,
                shards,
                settings,
                run_state,
                credential_id,
                gate,
                key=f"firehose-slice-{index}-of-{shards}-{options.fingerprint()[:12]}",
                pure=False,
                retries=attempts,
            )
            for index in left
        ]
        for future in finished(futures):  # type: ignore[no-untyped-call]
            if _checked(future.result()):
                done()


@contextmanager
def _pool(workers: int, api_concurrency: int | None) -> Iterator[Executor]:
    """Worker processes, spawned (not forked: the parent holds threads, and a fork copies their locks held),
    sharing a semaphore of ``api_concurrency`` leases, new with each pool: a worker killed while it held one
    breaks the pool, which ends the others, so no lease is ever lost."""
    context = multiprocessing.get_context("spawn")
    gate = context.Semaphore(api_concurrency) if api_concurrency is not None else None
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_given_gate, initargs=(gate,))
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _checked(report: dict[str, Any]) -> bool:
    """A slice that checked every object; one with ``error`` findings keeps no checkpoint, and is run again."""
    return not report["counts"].get("error", 0)


_GATE: Any = None
"""In a local worker process: the pool's semaphore (set once by ``_given_gate``)."""


def _given_gate(gate: Any) -> None:
    global _GATE
    _GATE = gate


def _one_slice(
    options: ReconcileOptions,
    index: int,
    shards: int,
    settings: Settings,
    run_state: str,
    credential_id: str | None,
    gate: Any = None,
) -> dict[str, Any]:
    """One slice in a worker, with a state database of its own beside the settings' one; ``gate`` (a shared
    semaphore) held while it pages ``/events``."""
    folder = settings.state_file.parent
    if not folder.is_dir():  # a worker on another machine: a scratch folder there
        folder = Path(tempfile.gettempdir())
    state_file = folder / f"{settings.state_file.stem}.slice-{index}-of-{shards}.sqlite"
    done = reconcile_slice(
        options.sharded(index, shards),
        replace(settings, state_file=state_file),
        run_state,
        credential_id=credential_id,
        api_gate=gate if gate is not None else _GATE,
    )
    return done.report()
