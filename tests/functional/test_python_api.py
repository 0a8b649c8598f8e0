"""The public API as a Python caller uses it: the README's example, run as written, and the same job through the
command line and the library giving the same report."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import firehose
from firehose.event import EventView
from tests.conftest import UNTIL, RunningSandbox, stack_sandbox, use_stack_env
from tests.functional.clirun import invoke

README = Path(__file__).resolve().parents[2] / "README.md"
DAY = UNTIL - timedelta(days=2)


def readme_example() -> str:
    """The first Python block of the README's "Use from Python" section."""
    section = README.read_text().split("## Use from Python", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "the README's Use from Python section has no python block"
    return found.group(1)


@pytest.fixture(scope="module")
def box(stack: None) -> Iterator[RunningSandbox]:
    with stack_sandbox(seed=53, leads=40, days=4, drop_rate=0.15) as running:
        yield running


@pytest.fixture()
def env(box: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return use_stack_env(box, tmp_path, monkeypatch)


def test_the_readme_example_repairs_a_day_and_returns_its_report(env: dict[str, str]) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(readme_example(), str(README), "exec"), namespace)
    report = namespace["reconcile_day"](f"{DAY:%Y-%m-%d}")
    assert report["schema"] == "firehose.reconcile/1"
    assert report["counts"]["repaired"] > 0 and report["counts"].get("missing", 0) == 0, report["counts"]
    json.dumps(report)  # JSON-ready, as the example says
    # The state database named by FIREHOSE_STATE now holds the repairs: a second run finds the day whole.
    again = namespace["reconcile_day"](f"{DAY:%Y-%m-%d}")
    assert again["counts"].get("missing", 0) == 0 and again["counts"]["repaired"] == report["counts"]["repaired"]


def test_the_readme_example_fails_the_task_when_gaps_are_left(env: dict[str, str], tmp_path: Path) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(readme_example().replace("repair=True", "repair=False"), str(README), "exec"), namespace)
    with pytest.raises(RuntimeError, match=r"gaps left"):
        namespace["reconcile_day"](f"{(DAY - timedelta(days=1)):%Y-%m-%d}")


def test_the_command_and_the_library_report_the_same_dry_run(env: dict[str, str], tmp_path: Path) -> None:
    start, end = DAY - timedelta(days=1), DAY + timedelta(days=1)
    report_file = tmp_path / "report.json"
    run = invoke(
        ["reconcile", "--start", start.isoformat(), "--end", end.isoformat(), "--dry-run", "--repair",
         "--report", str(report_file)],
        env,
    )  # fmt: skip
    assert run.code == firehose.ExitCode.DIFFERENCES, run.stderr
    options = firehose.ReconcileOptions(start=start, end=end, dry_run=True, repair=True)
    result = firehose.reconcile(options, firehose.Settings.load())
    assert isinstance(result, firehose.ReconcileResult) and result.exit_code == run.code
    from_cli = json.loads(report_file.read_text())
    from_library = json.loads(json.dumps(result.report()))
    assert from_library == from_cli
    assert result.would_write == from_cli["counts"]["missing"] > 0
    assert from_cli["dry_run"] is True and from_cli["would_write"] == result.would_write
    assert not Path(env["FIREHOSE_STATE"]).exists(), "a dry run makes no state database"


def test_options_take_a_store_url_and_a_time_without_a_zone(env: dict[str, str], tmp_path: Path) -> None:
    start = DAY.replace(tzinfo=None)
    url: Any = tmp_path.as_uri()  # as an untyped caller gives it
    options = firehose.ReconcileOptions(start=start, end=start + timedelta(days=1), archive=url)
    assert options.start == DAY and options.archive == firehose.Destination.from_url(tmp_path.as_uri())
    with pytest.raises(firehose.FirehoseError, match="urll"):
        firehose.Settings.load(urll="https://x.example")


def test_the_command_and_the_library_plan_the_same_replay(env: dict[str, str], tmp_path: Path) -> None:
    report_file = tmp_path / "plan.json"
    start, end = DAY - timedelta(days=2), DAY + timedelta(days=1)
    window = ["--start", start.isoformat(), "--end", end.isoformat()]
    run = invoke(["replay", *window, "--outcome", "error", "--dry-run", "--report", str(report_file)], env)
    assert run.code == firehose.ExitCode.OK, run.stderr
    diffs: list[dict[str, Any]] = []
    selection = firehose.Selection(start=start, end=end, outcomes=("error",))
    options = firehose.ReplayOptions(selection=selection, dry_run=True)
    result = firehose.replay(options, firehose.Settings.load(), on_diff=diffs.append)
    assert isinstance(result, firehose.ReplayResult) and result.exit_code == run.code
    from_cli = json.loads(report_file.read_text())
    assert json.loads(json.dumps(result.report())) == from_cli
    assert from_cli["would_send"] == result.planned == len(diffs) > 0
    assert {d["event_id"] for d in diffs} == {r["event_id"] for r in from_cli["results"] if r["status"] == "would send"}
    assert not Path(env["FIREHOSE_STATE"]).exists(), "a dry run makes no state database"


def test_a_library_replay_sends_each_lead_once_and_asks_before_many(env: dict[str, str], box: RunningSandbox) -> None:
    settings = firehose.Settings.load()
    start, end = DAY - timedelta(days=2), DAY + timedelta(days=1)
    selection = firehose.Selection(start=start, end=end, outcomes=("error",))
    target = firehose.Target(url=box.url)
    asked: list[int] = []
    before = len(box.sandbox.submissions)  # the module's box: another of its tests may have replayed to it

    def decline(count: int) -> bool:
        asked.append(count)
        return False

    with pytest.raises(firehose.FirehoseError, match=r"over --confirm-over 0\); add --yes"):
        firehose.replay(firehose.ReplayOptions(target=target, selection=selection, confirm_over=0), settings)
    with pytest.raises(firehose.FirehoseError, match=r"not confirmed"):
        firehose.replay(
            firehose.ReplayOptions(target=target, selection=selection, confirm_over=0),
            settings,
            confirm=decline,
        )
    assert len(box.sandbox.submissions) == before, "nothing is sent before the confirmation"
    rows: list[Any] = []
    options = firehose.ReplayOptions(target=target, selection=selection, confirm_over=None)
    first = firehose.replay(options, settings, on_result=rows.append)
    assert first.exit_code == firehose.ExitCode.OK and first.counts["sent"] == first.planned == asked[0] > 0
    assert len(box.sandbox.submissions) - before == first.planned and {r.status for r in rows} == {"sent"}
    again = firehose.replay(options, settings)
    assert again.planned == 0 and again.counts["skipped"] == first.planned, again.report()
    assert len(box.sandbox.submissions) - before == first.planned, "the ledger sent nothing twice"


def test_the_command_and_the_library_locate_the_same(box: RunningSandbox, env: dict[str, str]) -> None:
    events = box.sandbox_events()
    first, second = events[0]["id"], events[-1]["id"]
    run = invoke(["locate", first, "--format", "json"], env)
    result = firehose.locate([first], firehose.Settings.load())
    assert isinstance(result, firehose.LocateResult) and result.exit_code == run.code, run.stderr
    from_cli = json.loads(run.stdout)
    assert json.loads(json.dumps(result.report())) == from_cli
    assert from_cli["schema"] == "firehose.locate/1" and from_cli["event_id"] == first and from_cli["destinations"]
    both = invoke(["locate", first, second, "--format", "json"], env)
    given = firehose.locate([first, events[-1]], firehose.Settings.load())  # an id, and an event as it is
    assert json.loads(json.dumps(given.report())) == json.loads(both.stdout) and given.exit_code == both.code
    assert {row["event_id"] for row in given.report()["destinations"]} == {first, second}


def test_a_replay_that_could_not_keep_its_dead_letters_refuses_before_claiming_anything(
    env: dict[str, str], box: RunningSandbox, tmp_path: Path
) -> None:
    selection = firehose.Selection(start=DAY - timedelta(days=3), end=UNTIL, outcomes="failure")  # type: ignore[arg-type]
    assert selection.outcomes == ("failure",), "one outcome, not seven letters"
    before = len(box.sandbox.submissions)
    for dead_letter in (tmp_path / "no-such-folder" / "dl.ndjson", tmp_path):
        options = firehose.ReplayOptions(
            target=firehose.Target(url="http://127.0.0.1:1"), selection=selection, confirm_over=None,
            max_attempts=1, dead_letter=dead_letter,
        )  # fmt: skip
        with pytest.raises(firehose.FirehoseError, match=r"--dead-letter .*cannot write it"):
            firehose.replay(options, firehose.Settings.load())
    assert len(box.sandbox.submissions) == before
    with firehose.replay_ledger(firehose.Settings.load()) as ledger:
        assert list(ledger) == [], "nothing claimed"


def test_a_caller_whose_callback_fails_loses_no_answer(env: dict[str, str], box: RunningSandbox) -> None:
    settings = firehose.Settings.load()
    selection = firehose.Selection(start=DAY - timedelta(days=3), end=UNTIL, outcomes="failure")  # type: ignore[arg-type]
    options = firehose.ReplayOptions(
        target=firehose.Target(url=box.url), selection=selection, confirm_over=None, concurrency=4
    )
    before = len(box.sandbox.submissions)

    def explode(row: firehose.LeadResult) -> None:
        raise RuntimeError("the caller's own bug")

    with pytest.raises(RuntimeError, match="own bug"):
        firehose.replay(options, settings, on_result=explode)
    sent = len(box.sandbox.submissions) - before
    assert sent >= 1
    rows = list(firehose.replay_ledger(settings))  # without a with block: opened for the iteration
    assert sorted(row["status"] for row in rows) == ["sent"] * sent, "every answered lead recorded, none in doubt"
    again = firehose.replay(options, settings)
    assert len(box.sandbox.submissions) - before == sent + again.counts["sent"], "none of them sent twice"
    assert again.counts["skipped"] == sent and again.counts.get("unknown", 0) == 0
    with pytest.raises(firehose.FirehoseError, match="--status 'SENT'"):
        firehose.replay_ledger(settings, "SENT")


def test_library_arguments_are_taken_as_a_caller_writes_them(env: dict[str, str], box: RunningSandbox) -> None:
    settings = firehose.Settings.load()
    event = next(e for e in box.sandbox_events() if e["type"] == "source" and EventView(e).destinations())
    url = EventView(event).destinations()[0].url()
    start = UNTIL - timedelta(days=30)  # a datetime, as every other call takes
    with firehose.list_archive(url, settings, start=start, end=UNTIL) as listing:
        listed = list(listing)
    assert listed and listing.counts["events"] == len([row for row in listed if "event_id" in row])
    with pytest.raises(firehose.FirehoseError, match="--start is after --end"):
        firehose.list_archive(url, settings, start=UNTIL, end=start)
    with firehose.read_archive(url, settings, targets=event["id"]) as reading:  # one id, not 24 characters
        records = list(reading)
    assert [r["id"] for r in records if isinstance(r, dict)] == [event["id"]] and reading.problems == 0
    plan = firehose.replay(firehose.ReplayOptions(archives=url, ids=event["id"], dry_run=True), settings)  # type: ignore[arg-type]
    assert plan.planned == 1 and plan.exit_code == firehose.ExitCode.OK, plan.report()
