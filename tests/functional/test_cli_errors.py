"""What a user sees when something is wrong: one line on stderr starting `firehose: error:`, a documented exit
code, no traceback; outputs checked before any work; a closed pipe ends quietly. Real processes, so that what
the shell sees (exit codes, pipes, /dev/full) is what is tested."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from firehose.errors import ExitCode
from tests.conftest import API_KEY, RunningSandbox


def firehose(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, stdout: Any = subprocess.PIPE
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "firehose", *args],
        env={**os.environ, "LEADCONDUIT_API_KEY": API_KEY, "LEADCONDUIT_URL": "http://127.0.0.1:9", **(env or {})},
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith("firehose: error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["events", "--bogus"], ExitCode.USAGE, "No such option '--bogus'"),
        (["replay", "--concurrency", "0"], ExitCode.USAGE, "'--concurrency'"),
        (["nope"], ExitCode.USAGE, "No such command 'nope'"),
        (["events", "-o", "/nonexistent/x.ndjson"], ExitCode.USAGE, "the folder /nonexistent does not exist"),
        (["replay", "--ids", "nope.txt", "--dry-run"], ExitCode.USAGE, "'nope.txt' does not exist"),
        (["reconcile", "--report", "/nonexistent/r.json"], ExitCode.USAGE, "--report"),
        (["replay", "--dead-letter", "/"], ExitCode.USAGE, "is a folder"),
        (["events", "--rules", "not json"], ExitCode.USAGE, "--rules: not valid JSON"),
    ],
)
def test_a_bad_flag_or_path_is_one_line_naming_it_before_any_work(
    args: list[str], code: int, says: str, tmp_path: Path
) -> None:
    result = firehose(*args, cwd=tmp_path)
    line = one_line_error(result)
    assert result.returncode == code and says in line, line
    if code == ExitCode.USAGE and "--rules" not in says:
        assert "--help" in line


def test_a_folder_as_the_state_database_is_one_line(tmp_path: Path) -> None:
    result = firehose("reconcile", "--state", str(tmp_path), "--start", "2026-11-10", "--end", "2026-11-11")
    assert result.returncode == ExitCode.CONFIG and "is a folder" in one_line_error(result)


def test_a_full_disk_and_a_closed_pipe(sandbox: RunningSandbox) -> None:
    env = {"LEADCONDUIT_URL": sandbox.url}
    with open("/dev/full", "w") as full:
        result = firehose("events", "--max", "2000", env=env, stdout=full)
    assert result.returncode == ExitCode.CONFIG and "No space left on device" in one_line_error(result)
    command = [sys.executable, "-m", "firehose", "events", "--max", "5000"]
    reader = subprocess.Popen(["head", "-n", "1"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    writer = subprocess.run(command, env={**os.environ, "LEADCONDUIT_API_KEY": API_KEY, **env}, stdout=reader.stdin,
                            stderr=subprocess.PIPE, text=True, timeout=120)  # fmt: skip
    assert reader.stdin is not None
    reader.stdin.close()
    reader.wait()
    assert writer.returncode == ExitCode.CLOSED_PIPE and writer.stderr == "", writer.stderr


def test_retry_messages_count_only_the_retries_that_happen(sandbox: RunningSandbox) -> None:
    sandbox.sandbox.faults.next_statuses = [503, 503, 503]
    result = firehose("events", "--max", "1", "--max-attempts", "2", "--backoff-max", "0.1",
                      env={"LEADCONDUIT_URL": sandbox.url})  # fmt: skip
    assert result.returncode == ExitCode.API
    lines = result.stderr.strip().splitlines()
    assert [line for line in lines if "retry" in line] == [lines[0]] and "retry 1 of 1" in lines[0], lines
    assert lines[-1].startswith("firehose: error:") and "gave up after 2 attempts" in lines[-1]
