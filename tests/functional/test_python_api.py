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
