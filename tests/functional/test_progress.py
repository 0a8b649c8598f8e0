"""Progress as a user sees it: live bars with counts on a terminal (a real pseudo-terminal), nothing in a pipe or
under -q; and the library's progress protocol told the right totals by a reconcile, an audit and a verify over
the local stack."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

import firehose
from firehose.evidence.job import verify_pack
from tests.conftest import UNTIL, RunningSandbox, stack_sandbox, use_stack_env
from tests.functional.clirun import process_env, run_process
from tests.progress import Recorded

pytestmark = pytest.mark.usefixtures("stack")
START, END = UNTIL - timedelta(days=3), UNTIL - timedelta(days=1)
WINDOW = ["--start", f"{START:%Y-%m-%d}", "--end", f"{END:%Y-%m-%d}"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="module")
def box() -> Iterator[RunningSandbox]:
    with stack_sandbox(seed=59, leads=30, days=4, drop_rate=0.05) as running:
        yield running


@pytest.fixture()
def env(box: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return use_stack_env(box, tmp_path, monkeypatch)


def _options(**more: object) -> firehose.ReconcileOptions:
    return firehose.ReconcileOptions(start=START, end=END + timedelta(days=1, seconds=-1), **more)  # type: ignore[arg-type]


def test_a_reconcile_tells_its_windows_listings_and_reads_with_their_totals(env: dict[str, str]) -> None:
    progress = Recorded()
    result = firehose.reconcile(_options(verify="content"), firehose.Settings.load(), progress=progress)
    windows = len(list(_options().windows()))
    [task] = progress.named("reconcile windows")
    assert (task.total, task.count, task.finished) == (windows, windows, True) and windows == 3
    listings = progress.named("listing ")
    assert sorted(t.name for t in listings) == sorted(f"listing {d}" for d in result.outcome.destinations)
    for listing in listings:
        found = result.by_destination[listing.name.removeprefix("listing ")]
        assert listing.total is None and listing.finished
        assert listing.count >= found["match"] + found.get("differ", 0) + found.get("archive_only", 0) > 0
    reads = progress.named("reading ")
    assert reads and all(t.finished and t.count == t.total for t in reads), reads
    read = result.counts["match"] + result.counts.get("differ", 0) + result.counts.get("error", 0)
    assert sum(t.count for t in reads) == read, "one advance per object read"
    assert not any(t.after_done for t in progress.tasks)


def test_an_audit_and_its_verify_tell_their_stages_and_objects(env: dict[str, str], tmp_path: Path) -> None:
    progress = Recorded()
    options = firehose.AuditOptions(start=START, end=END + timedelta(days=1, seconds=-1), out=tmp_path / "pack")
    result = firehose.audit(options, firehose.Settings.load(), progress=progress)
    destinations = result.summary["destinations"]
    assert progress.notes[0] == "checking coverage against the API"
    assert sorted(progress.notes[1:]) == sorted(f"hashing {d}" for d in destinations)
    hashing = progress.named("hashing ")
    assert sorted(t.name for t in hashing) == sorted(f"hashing {d}" for d in destinations)
    assert all(t.finished and t.count == t.total for t in hashing), hashing  # the total: coverage's archived
    assert sum(t.count for t in hashing) == result.summary["manifest"]["objects"] > 0
    assert (tmp_path / "pack" / "report.html").is_file(), "the library's pack has its page too"

    checked = Recorded()
    verified = verify_pack(tmp_path / "pack", firehose.Settings.load(), progress=checked)
    [task] = checked.tasks
    assert (task.name, task.total, task.count, task.finished) == ("verifying objects", verified.objects,
                                                                  verified.objects, True)  # fmt: skip


def _on_a_terminal(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """``firehose ARGS`` with stderr on a pseudo-terminal (stdout a pipe): exit code, stdout, what the terminal
    showed."""
    main, terminal = pty.openpty()
    shown: list[bytes] = []

    def read() -> None:
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the child is gone and its side closed
                return
            if not chunk:
                return
            shown.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    child = subprocess.Popen(
        [sys.executable, "-m", "firehose", *args],
        env={**process_env(**env), "TERM": "xterm-256color", "COLUMNS": "160"},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=terminal,
    )
    os.close(terminal)
    out, _ = child.communicate(timeout=120)
    reader.join(timeout=10)
    os.close(main)
    return child.returncode, out.decode(), b"".join(shown).decode(errors="replace")


def test_on_a_terminal_progress_is_a_live_bar_with_counts_and_none_in_a_pipe_or_under_quiet(
    env: dict[str, str], tmp_path: Path
) -> None:
    args = ["reconcile", *WINDOW, "--verify", "content", "--format", "ndjson"]
    code, out, shown = _on_a_terminal(args, env, tmp_path)
    assert code in (0, 1), shown
    text = ANSI.sub("", shown)
    assert "\x1b[" in shown, "drawn for a terminal"
    assert re.search(r"reconcile windows .*3/3", text), text
    assert re.search(r"reading s3://\S+ .*(\d+)/\1\b", text), text
    assert re.search(r"listing az://\S+ .*\d+/\?", text) or re.search(r"listing az://\S+ .*(\d+)/\1\b", text), text
    assert re.search(r"\d[\d,]*/s", text), "a rate"
    assert "firehose reconcile:" in text, "the summary follows the bars"
    assert out.count("\n") == len([line for line in out.splitlines() if line.startswith("{")]), "stdout: rows only"

    piped = run_process(args, process_env(**env), tmp_path, timeout=120)
    assert piped.code == code and piped.stdout == out
    assert "reconcile windows" not in piped.stderr and "\x1b" not in piped.stderr and "\r" not in piped.stderr
    assert piped.stderr.startswith("firehose reconcile:"), piped.stderr

    quiet, _, shown_quiet = _on_a_terminal(["-q", *args], env, tmp_path)
    assert quiet == code and "reconcile windows" not in shown_quiet and "firehose reconcile" not in shown_quiet


def test_audit_shows_its_stages_as_lines_off_a_terminal_and_bars_on_one(env: dict[str, str], tmp_path: Path) -> None:
    args = ["audit", "pack", *WINDOW, "--out"]
    piped = run_process([*args, str(tmp_path / "a")], process_env(**env), tmp_path, timeout=120)
    lines = piped.stderr.splitlines()
    assert lines[0] == "firehose audit: checking coverage against the API", piped.stderr
    assert any(line.startswith("firehose audit: hashing s3://") for line in lines), piped.stderr
    assert "\x1b" not in piped.stderr

    code, _, shown = _on_a_terminal([*args, str(tmp_path / "b")], env, tmp_path)
    text = ANSI.sub("", shown)
    assert code == piped.code and "firehose audit: checking coverage against the API" in text
    assert re.search(r"hashing s3://\S+ .*(\d+)/\1\b", text), text
    code, _, shown = _on_a_terminal(["audit", "verify", str(tmp_path / "b")], env, tmp_path)
    assert code == 0 and re.search(r"verifying objects .*(\d+)/\1\b", ANSI.sub("", shown)), shown


def test_a_replay_tells_each_lead_sent_and_shows_a_bar_when_its_rows_go_elsewhere(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path
) -> None:
    progress = Recorded()
    selection = firehose.Selection(start=START, end=END + timedelta(days=1, seconds=-1), outcomes=("failure",))
    options = firehose.ReplayOptions(target=firehose.Target(url=box.url), selection=selection, confirm_over=None)
    result = firehose.replay(options, firehose.Settings.load(), progress=progress)
    [task] = progress.tasks
    assert (task.name, task.total, task.count, task.finished) == ("sending leads", result.planned, result.planned, True)
    assert result.planned > 0 and result.counts["sent"] == result.planned

    # The same leads again, from a state database of its own (the library's ledger would skip every one).
    args = ["replay", *WINDOW, "--outcome", "failure", "--target", box.url, "--yes", "--format", "ndjson",
            "--state", str(tmp_path / "cli.sqlite")]  # fmt: skip
    code, out, shown = _on_a_terminal(args, env, tmp_path)
    sent = len(out.splitlines())
    assert code == 0 and sent == result.planned, shown
    assert re.search(rf"sending leads .*{sent}/{sent}\b", ANSI.sub("", shown)), shown
    dry, _, shown_dry = _on_a_terminal([*args, "--dry-run"], env, tmp_path)
    assert dry == 0 and "sending leads" not in shown_dry, "a dry run sends nothing"
