"""A warm interpreter that runs `firehose` CLI commands in forked child processes, for the property test's
`kill -9` step (tests/functional/test_reconcile_properties.py).

A fresh `python -m firehose` spends most of a second importing boto3 and the Azure SDK before it does
anything; forked from this process, which imported them once, a child starts its command at once. Each child
is a whole process running the real command (its own state database connection, stores and HTTP client), so
SIGKILL stops it as it would stop a cron job.

Protocol, one JSON line per request on stdin: ``{"argv": [...], "env": {...}, "clock": ISO, "stderr": path}``.
The zygote forks, answers the child's pid on stdout, and reaps the child only when the next line, ``reap``,
arrives, then answers its wait status. Until then the pid cannot be reused, so the test may signal it safely
(it waits for the exit with a pidfd, which works before reaping). ``clock`` is the moment the child's state
database takes as now (a microsecond later at each reading), so that the test's notion of time holds in the
child too.
"""

from __future__ import annotations

import importlib
import itertools
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime, timedelta

import firehose.cli as cli
import firehose.state as state

WARM = ("firehose.archive.s3", "firehose.archive.azure", "firehose.reconciliation.run", "firehose.api", "firehose.http")
"""What a reconcile run imports lazily: loaded before any fork, so children share it (none starts a thread)."""


def ticking(base: datetime) -> Callable[[], datetime]:
    """A clock at ``base`` that moves a microsecond at each reading."""
    ticks = itertools.count()
    return lambda: base + timedelta(microseconds=next(ticks))


def main() -> None:
    for name in WARM:
        importlib.import_module(name)
    while line := sys.stdin.readline():
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the child: run the command, never return into the loop
            code = 70
            try:
                os.environ.clear()
                os.environ.update(request["env"])
                stdin = os.open(os.devnull, os.O_RDONLY)
                err = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.dup2(stdin, 0)
                os.dup2(err, 1)
                os.dup2(err, 2)
                kwdefaults = state.StateDB.__init__.__kwdefaults__
                assert kwdefaults is not None
                kwdefaults["clock"] = ticking(datetime.fromisoformat(request["clock"]))
                try:
                    cli.main(request["argv"])
                    code = 0
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else 1
            finally:
                os._exit(code)
        sys.stdout.write(f"{pid}\n")
        sys.stdout.flush()
        if sys.stdin.readline().strip() != "reap":
            return
        _, status = os.waitpid(pid, 0)
        sys.stdout.write(f"{status}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
