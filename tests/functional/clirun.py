"""Running the CLI in this process (click's runner: milliseconds a run, so a corpus of hundreds of bad inputs
stays quick) and what every failing run must look like: one line on stderr starting ``firehose: error:``, a
documented exit code, no traceback, no secret."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from click.testing import CliRunner

from firehose.cli import cli
from firehose.errors import ExitCode

DOCUMENTED = {int(code) for code in ExitCode} - {int(ExitCode.INTERNAL)}
"""The README's exit codes; INTERNAL (a bug) is documented too, but no input may lead to it."""


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str

    def error_line(self) -> str:
        """The one error line; fails unless stderr is exactly that, with a documented code and no traceback."""
        assert "Traceback" not in self.stderr + self.stdout, self.stderr
        assert self.code in DOCUMENTED, f"exit {self.code}: {self.stderr}"
        lines = [line for line in self.stderr.splitlines() if line.startswith("firehose: error:")]
        assert len(lines) == 1, self.stderr
        return lines[0]

    def failure_line(self) -> str:
        """As ``error_line``, the error being the last line; what comes before it is firehose's own progress or
        summary (``firehose audit: checking coverage ...``), never anything else."""
        line = self.error_line()
        lines = self.stderr.strip().splitlines()
        assert lines[-1] == line, self.stderr
        assert all(other.startswith(("firehose", "  ")) for other in lines), self.stderr
        return line

    def only_line(self) -> str:
        """As ``error_line``, and nothing else on stderr at all."""
        line = self.error_line()
        assert self.stderr.strip() == line, self.stderr
        return line


def invoke(args: list[str], env: Mapping[str, str | None] | None = None, stdin: str | None = None) -> Run:
    """``firehose ARGS`` in this process, with ``env`` over the test's environment."""
    result = CliRunner().invoke(cli, args, env=dict(env or {}), prog_name="firehose", input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"firehose {' '.join(args)} raised {result.exception!r}") from result.exception
    return Run(result.exit_code, result.stdout, result.stderr)


def command_paths(
    group: click.Group = cli, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command and group under ``group``, so a command added later is covered without anyone listing it."""
    for name, command in sorted(group.commands.items()):
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from command_paths(command, (*prefix, name))


def environ(**extra: str) -> dict[str, str | None]:
    """What a test run sees: only these variables of firehose's own (none from the developer's shell)."""
    cleared: dict[str, str | None] = {
        name: None for name in os.environ if name.startswith(("FIREHOSE_", "LEADCONDUIT_"))
    }
    return {**cleared, "FIREHOSE_CONFIG": "", **extra}


def process_env(**extra: str) -> dict[str, str]:
    """Environment for a real ``python -m firehose`` process: the test's own, firehose's settings cleared, and
    PYTHONPATH on the code this test imported (so a worktree's tests run the worktree's code)."""
    import firehose

    root = str(Path(firehose.__file__).resolve().parents[1])
    base = {k: v for k, v in os.environ.items() if not k.startswith(("FIREHOSE_", "LEADCONDUIT_"))}
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return {**base, "PYTHONPATH": path, "FIREHOSE_CONFIG": "", **extra}


def spawn(args: list[str], env: Mapping[str, str], cwd: Path, **kwargs: Any) -> subprocess.Popen[str]:
    """``firehose ARGS`` as a real process (started, not waited for)."""
    return subprocess.Popen(
        [sys.executable, "-m", "firehose", *args],
        env=dict(env),
        cwd=cwd,
        stdout=kwargs.pop("stdout", subprocess.PIPE),
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def finish(process: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    """Its stdout and stderr once it ends; killed, reaped and a failure saying what it wrote if it
    runs past ``timeout``: left running, its open pipes and the process itself failed the next test on the same
    pytest worker (a ResourceWarning is an error there)."""
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"{process.args!r} still running after {timeout} s, killed: {err}") from None
    return out or "", err or ""


def run_process(args: list[str], env: Mapping[str, str], cwd: Path, timeout: float = 60, **kwargs: Any) -> Run:
    process = spawn(args, env, cwd, **kwargs)
    out, err = finish(process, timeout)
    return Run(process.returncode, out, err)


def children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (from /proc): a driver's workers, to kill one."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid and fields[0] != "Z":
                    found.append(int(entry.name))
    return found
