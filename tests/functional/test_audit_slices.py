"""A sliced audit on the real local stack (SeaweedFS, Azurite, the sandbox): slices checkpointed in a shared run
state, merged into the one pack a single process makes (coverage, findings, manifest and retention byte for
byte), whatever the slice count, the order slices finish in, kills and reruns; `audit verify` passes on it."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from firehose.cli import cli
from firehose.errors import ExitCode
from tests.conftest import UNTIL, RunningSandbox, stack_env, stack_sandbox
from tests.functional.clirun import children, process_env, run_process, spawn

pytestmark = pytest.mark.usefixtures("stack")
PERIOD = ["--start", f"{UNTIL - timedelta(days=4):%Y-%m-%d}", "--end", f"{UNTIL - timedelta(days=2):%Y-%m-%d}"]
SAME = ("coverage.csv", "coverage.json", "findings.ndjson", "manifest.ndjson", "retention.json", "signing-key.pub.pem")
"""The files a merged pack shares with one process's to the byte (summary.json and report.html differ only in when
the pack was made, and summary.json names the slice count)."""


def key_of(env: dict[str, str]) -> str:
    """The one signing key every pack here is signed with (beside the world's state database)."""
    return str(Path(env["FIREHOSE_STATE"]).with_name("key.pem"))


def run(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningSandbox, dict[str, str], Path]]:
    """A sandbox with 5% of firehose writes dropped, the gaps repaired (so the packs count repairs), and the pack
    one process makes of the period."""
    with stack_sandbox(seed=29, leads=60, days=6, drop_rate=0.05) as box:
        folder = tmp_path_factory.mktemp("sliced-audit")
        env = stack_env(box, folder)
        repaired = run(env, "reconcile", *PERIOD, "--repair")
        assert repaired.exit_code == ExitCode.OK, repaired.stderr
        whole = folder / "whole"
        made = pack(env, "--out", str(whole), "--signing-key", key_of(env))
        assert made.exit_code == ExitCode.DIFFERENCES, made.stderr  # Azurite reports no immutability: retention FAIL
        summary = json.loads((whole / "summary.json").read_text())
        assert summary["coverage"]["repaired"] > 0 and summary["manifest"]["objects"] > 100
        yield box, env, whole


def pack(env: dict[str, str], *args: str) -> Result:
    return run(env, "audit", "pack", *PERIOD, "--require-retention", "7y", *args)


def merge(env: dict[str, str], run_state: str, out: Path, *args: str) -> Result:
    return run(env, "audit", "merge", "--run-state", run_state, "--out", str(out),
               "--signing-key", key_of(env), *args)  # fmt: skip


def assert_same_pack(merged: Path, whole: Path, shards: int) -> None:
    for name in SAME:
        assert (merged / name).read_bytes() == (whole / name).read_bytes(), name
    ours, theirs = (json.loads((folder / "summary.json").read_text()) for folder in (merged, whole))
    assert ours.pop("shards") == shards and "shards" not in theirs
    assert ours.pop("created_at") and theirs.pop("created_at")
    assert ours == theirs
    made = {folder: json.loads((folder / "summary.json").read_text())["created_at"] for folder in (merged, whole)}
    page = (merged / "report.html").read_text().replace(made[merged], made[whole])
    assert page == (whole / "report.html").read_text()


@pytest.mark.parametrize("shards", [1, 7, 64])
def test_slices_merged_in_any_order_make_the_one_process_pack(
    world: tuple[RunningSandbox, dict[str, str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shards: int
) -> None:
    import firehose

    _, env, whole = world
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("firehose.evidence.slices.PART_BYTES", 4096)  # a slice's lines in several parts, merged
    settings = firehose.Settings.load()
    start, end = (datetime.fromisoformat(value).replace(tzinfo=UTC) for value in (PERIOD[1], PERIOD[3]))
    options = firehose.AuditOptions(start=start, end=end + timedelta(days=1, seconds=-1), required_days=7 * 365)
    run_state = (tmp_path / "run").as_uri()
    order = list(range(shards))
    random.Random(shards).shuffle(order)  # slices finish in any order: the pack is the same
    for index in order:
        done = firehose.audit_slice(options.sharded(index, shards), settings, run_state)
        assert done.recorded and "parts" not in done.report()
    parts = list((tmp_path / "run" / "parts").iterdir())
    assert len(parts) > 10, "the lines are in parts of 4 KiB, not in the checkpoints"
    merged = merge(env, run_state, tmp_path / "merged")
    assert merged.exit_code == ExitCode.DIFFERENCES, merged.stderr
    assert f"{shards} slice" in merged.stderr and merged.stdout == ""
    assert_same_pack(tmp_path / "merged", whole, shards)
    checked = run(env, "audit", "verify", str(tmp_path / "merged"))
    assert checked.exit_code == ExitCode.OK, checked.stderr


def test_merge_waits_for_every_slice_naming_those_missing_and_a_rerun_does_only_them(
    world: tuple[RunningSandbox, dict[str, str], Path], tmp_path: Path
) -> None:
    _, env, whole = world
    run_state = (tmp_path / "run").as_uri()

    def slice_(index: int) -> Result:
        return pack(env, "--shards", "4", "--shard", str(index), "--run-state", run_state)

    for index in (0, 1, 3):
        done = slice_(index)
        assert done.exit_code in (ExitCode.OK, ExitCode.DIFFERENCES), done.stderr
        assert "checkpoint written" in done.stderr and done.stdout == ""
    out = tmp_path / "merged"
    early = merge(env, run_state, out)
    assert early.exit_code == ExitCode.USAGE and early.stdout == ""
    assert len(early.stderr.splitlines()) == 1, early.stderr
    assert early.stderr.startswith(f"firehose: error: --run-state {run_state}: no checkpoint yet for slice 2 of 4")
    assert not out.exists() and not list(tmp_path.glob(".merged*")), "nothing written"
    last = slice_(2)
    assert "slice 2 of 4 (checkpoint written" in last.stderr, last.stderr
    again = slice_(2)  # a retried array job: nothing checked again
    assert "done before, not checked again" in again.stderr and again.exit_code == last.exit_code
    merged = merge(env, run_state, out)  # the slice count from the checkpoints' names
    assert merged.exit_code == ExitCode.DIFFERENCES, merged.stderr
    assert_same_pack(out, whole, 4)
    assert run(env, "audit", "verify", str(out)).exit_code == ExitCode.OK


def test_a_killed_run_loses_only_its_unfinished_slices_and_the_same_command_does_only_those(
    world: tuple[RunningSandbox, dict[str, str], Path], tmp_path: Path
) -> None:
    _, env, whole = world
    folder = tmp_path / "run"
    out = tmp_path / "pack"
    args = ["audit", "pack", *PERIOD, "--require-retention", "7y", "--shards", "8", "--executor", "local:2",
            "--run-state", folder.as_uri(), "--out", str(out), "--signing-key", key_of(env)]  # fmt: skip
    process = spawn(args, process_env(**env), tmp_path)
    deadline = time.monotonic() + 120
    while len(list(folder.glob("audit-slice-*.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in [*children(process.pid), process.pid]:  # kill -9: the driver and its workers, mid-run
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.communicate(timeout=30)
    done = {path.name: path.stat().st_mtime_ns for path in folder.glob("audit-slice-*.json")}
    assert 2 <= len(done) < 8, f"killed too late to tell: {sorted(done)}"
    assert not out.exists(), "no pack from a killed run"
    state = Path(env["FIREHOSE_STATE"])
    databases = {path.name: path.stat().st_mtime_ns for path in state.parent.glob(f"{state.stem}.slice-*-of-8.sqlite")}
    again = run_process(args, process_env(**env), tmp_path, timeout=240)
    assert again.code == ExitCode.DIFFERENCES, again.stderr
    after = {path.name: path.stat().st_mtime_ns for path in folder.glob("audit-slice-*.json")}
    assert len(after) == 8 and all(after[name] == mtime for name, mtime in done.items()), "done slices kept"
    for name in done:  # a slice done before is not run again: its worker's state database is not even opened
        index = int(name.split("-")[2])
        database = f"{state.stem}.slice-{index}-of-8.sqlite"
        assert state.parent.joinpath(database).stat().st_mtime_ns == databases[database], name
    assert_same_pack(out, whole, 8)


def test_two_drivers_of_one_run_at_once_leave_each_slice_done_once(
    world: tuple[RunningSandbox, dict[str, str], Path], tmp_path: Path
) -> None:
    _, env, whole = world
    folder = tmp_path / "run"

    def driver(name: str) -> list[str]:
        return ["audit", "pack", *PERIOD, "--require-retention", "7y", "--shards", "5", "--executor", "local:1",
                "--run-state", folder.as_uri(), "--out", str(tmp_path / name),
                "--signing-key", key_of(env)]  # fmt: skip

    machines = []
    for name in ("a", "b"):  # two machines, each with the record of repairs (a copy of the state database)
        (tmp_path / f"machine-{name}").mkdir()
        state = shutil.copy(env["FIREHOSE_STATE"], tmp_path / f"machine-{name}" / "state.sqlite")
        machines.append(spawn(driver(name), process_env(**{**env, "FIREHOSE_STATE": str(state)}), tmp_path))
    both = machines
    ends = [process.communicate(timeout=240) for process in both]
    assert [process.returncode for process in both] == [ExitCode.DIFFERENCES] * 2, ends
    checkpoints = sorted(path.name for path in folder.iterdir() if path.is_file())
    assert checkpoints == [f"audit-slice-{index:05d}-of-00005.json" for index in range(5)], "one checkpoint a slice"
    named = {entry["sha256"] for path in folder.glob("audit-slice-*.json")
             for kept in json.loads(path.read_bytes())["report"]["parts"]["manifest_parts"].values()
             for entry in kept}  # fmt: skip
    parts = {path.stem for path in (folder / "parts").iterdir()}
    assert named and parts == named, "each part kept once, named by its content, and every one a checkpoint's"
    for name in ("a", "b"):
        assert_same_pack(tmp_path / name, whole, 5)


def test_slicing_flags_are_checked_before_anything_runs(
    world: tuple[RunningSandbox, dict[str, str], Path], tmp_path: Path
) -> None:
    _, env, _ = world
    run_state = (tmp_path / "run").as_uri()
    cases = [
        (["--shards", "4", "--shard", "1"], "audit --shards needs --run-state URL"),
        (
            ["--shards", "4", "--shard", "1", "--run-state", run_state, "--out", str(tmp_path / "p")],
            "--out: a slice writes its part to --run-state",
        ),
        (["--run-state", run_state, "--out", str(tmp_path / "p")], "give --shards N and --shard I"),
        (["--shards", "4", "--executor", "local:2", "--run-state", run_state], "audit needs --out"),
        (["--shards", "4", "--executor", "local:2", "--out", str(tmp_path / "p")], "need --run-state URL"),
        (
            ["--executor", "local:2", "--run-state", run_state, "--out", str(tmp_path / "p")],
            "--executor needs --shards",
        ),
        (
            ["--shards", "4", "--shard", "0", "--executor", "local:2", "--run-state", run_state],
            "--executor runs every slice: give --shards N without --shard",
        ),
        (
            ["--shards", "4", "--executor", "ray://x", "--run-state", run_state, "--out", str(tmp_path / "p")],
            "--executor 'ray://x'",
        ),
        (["--shards", "9999999", "--shard", "0", "--run-state", run_state], "cuts the window's"),
    ]
    for args, says in cases:
        refused = pack(env, *args)
        assert refused.exit_code == ExitCode.USAGE and says in refused.stderr, (args, refused.stderr)
        assert refused.stdout == "" and len(refused.stderr.splitlines()) == 1, refused.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "p").exists()
    empty = merge(env, run_state, tmp_path / "p")
    assert empty.exit_code == ExitCode.USAGE and "no audit slice has a checkpoint there yet" in empty.stderr
    reconciled = run(env, "reconcile", *PERIOD, "--shards", "2", "--shard", "0", "--run-state", run_state)
    assert reconciled.exit_code in (ExitCode.OK, ExitCode.DIFFERENCES), reconciled.stderr
    other = merge(env, run_state, tmp_path / "p")  # a reconcile's checkpoints are not an audit's
    assert other.exit_code == ExitCode.USAGE and "no audit slice" in other.stderr and not (tmp_path / "p").exists()
