"""Shared options and the parameter types and parsers of flags: times, windows, durations, rates, FIELD=VALUE,
rules, verify depth, files to write, and the storage options every command that opens a store takes."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from firehose.errors import UsageError

if TYPE_CHECKING:
    _StrParam = click.ParamType[str, Any]  # generic for type checkers from click 8.2 on
else:
    _StrParam = click.ParamType


class WritableFile(_StrParam):
    """A file the command will write: checked when the flags are read, before any work, so a long run never
    fails at its end for a reason known at its start (its folder missing, read-only, or the path a folder)."""

    name = "file"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        path = Path(value)
        if path.is_dir():
            self.fail(f"{value} is a folder, not a file", param, ctx)
        folder = path.parent if str(path.parent) else Path(".")
        if not folder.is_dir():
            self.fail(f"{value}: the folder {folder} does not exist", param, ctx)
        if path.exists() and not os.access(path, os.W_OK):
            self.fail(f"{value} is not writable", param, ctx)
        if not path.exists() and not os.access(folder, os.W_OK | os.X_OK):
            self.fail(f"{value}: the folder {folder} is not writable", param, ctx)
        return str(value)


class FiniteFloat(click.FloatRange):
    """A float in a range that is also finite: click's ``FloatRange`` lets ``nan`` through (every comparison
    with it is false) and, without a maximum, ``inf`` and ``1e400``; a NaN backoff crashed the retry loop."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


FIRST_MOMENT = datetime(1970, 1, 1, tzinfo=UTC)
LAST_MOMENT = datetime.fromtimestamp(0xFFFFFFFF, tz=UTC)
"""The times an event id can hold (8 hex digits of Unix seconds): every event, lead and window lies between."""


def parse_time(value: str, flag: str, *, end_of_day: bool = False) -> datetime:
    """An ISO 8601 date or date-time; a naive one is taken as UTC. A bare date is that day's first moment, or
    its last one (23:59:59.999) with ``end_of_day`` (for ``--end``, which is inclusive). Refused outside the
    times an event id can hold (1970 to 2106): ``--start 0001-01-01`` was sent to the API as ``1-01-01``, and
    ``--end 9999-12-31`` overflowed the year in the windows' arithmetic."""
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            if end_of_day:
                moment = datetime(day.year, day.month, day.day, 23, 59, 59, 999_000, tzinfo=UTC)
            else:
                moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    except ValueError as exc:
        raise UsageError(f"{flag} {value!r} is not an ISO 8601 date or date-time (2026-11-01T00:00:00Z)") from exc
    try:
        moment.astimezone(UTC)  # a zone offset can push 9999-12-31T23:00-05:00 or 0001-01-01+05:00 past a year
    except (ValueError, OverflowError):
        raise UsageError(f"{flag} {value!r} is outside the times an event id can hold (1970 to 2106)") from None
    if end_of_day and len(text) == 10 and moment.date() == LAST_MOMENT.date():
        moment = LAST_MOMENT  # a bare --end of the last day: up to the last second an id can hold
    if moment < FIRST_MOMENT:
        raise UsageError(f"{flag} {value!r} is before 1970-01-01, the first time an event id can hold")
    if moment > LAST_MOMENT:
        raise UsageError(
            f"{flag} {value!r} is after {LAST_MOMENT:%Y-%m-%dT%H:%M:%SZ}, the last time an event id can hold"
        )
    return moment


def storage_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Options that say how to reach a store, on every command that opens one."""
    options = [
        click.option("--credential", "credential_id", help="The credential_id whose [credentials] entry to use."),
        click.option("--endpoint-url", help="S3 endpoint for S3-compatible servers (env FIREHOSE_S3_ENDPOINT_URL)."),
        click.option("--region", help="S3 region (env FIREHOSE_S3_REGION)."),
        click.option("--profile", help="AWS profile (env FIREHOSE_AWS_PROFILE)."),
        click.option(
            "--account-url",
            help="Azure account URL (env FIREHOSE_AZURE_ACCOUNT_URL); the connection "
            "string and SAS token come from FIREHOSE_AZURE_CONNECTION_STRING / FIREHOSE_AZURE_SAS_TOKEN.",
        ),
        click.option(
            "--workers",
            type=click.IntRange(1, 256),
            default=32,
            show_default=True,
            help="Requests in flight to each store (listing pages and object reads). Real stores take 10-50 ms a "
            "request, so throughput comes from many at once.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def parse_window(start: str | None, end: str | None) -> tuple[int | None, int | None]:
    begin = parse_time(start, "--start") if start else None
    finish = parse_time(end, "--end", end_of_day=True) if end else None
    if begin and finish and begin > finish:
        raise UsageError(f"--start {start} is after --end {end}")
    return (int(begin.timestamp()) if begin else None, int(finish.timestamp()) if finish else None)


def parse_depth(verify: str) -> tuple[str, float]:
    """``--verify presence|content|sample:P`` as (mode, percent)."""
    mode, _, percent = verify.partition(":")
    if mode == "sample" and not percent.replace(".", "", 1).isdigit():
        raise UsageError(f"--verify {verify!r}: give the share to read, e.g. sample:5")
    share = float(percent or 0)
    if mode == "sample" and not 0 < share <= 100:  # sample:150 was read as "everything", sample:0 as "nothing"
        raise UsageError(f"--verify {verify!r}: the share is a percentage above 0 and at most 100")
    return mode, share


def parse_rules(rules_json: str | None) -> tuple[dict[str, Any], ...]:
    """``--rules``: a JSON array of LeadConduit rule objects."""
    if not rules_json:
        return ()
    try:  # the standard library's parser: a flag's few bytes need no orjson, and the CLI no codec of its own
        parsed = json.loads(rules_json)
    except json.JSONDecodeError as exc:  # the user's own flag: a usage error (2), not an unreadable archive (5)
        raise UsageError(f"--rules: not valid JSON ({exc})") from None
    if not isinstance(parsed, list) or not all(isinstance(rule, dict) for rule in parsed):
        raise UsageError("--rules must be a JSON array of rule objects")
    return tuple(parsed)


def parse_rate(value: str | None) -> float | None:
    """``50/s``, ``3000/m``, or a number per second."""
    if value is None:
        return None
    text = value.strip().lower()
    per = {"/s": 1.0, "/m": 60.0, "/h": 3600.0}
    divisor = next((seconds for suffix, seconds in per.items() if text.endswith(suffix)), None)
    number = text[:-2] if divisor else text
    try:
        rate = float(number) / (divisor or 1.0)
    except ValueError:
        raise UsageError(f"--rate {value!r}: give requests per second, e.g. 50/s or 600/m") from None
    if not math.isfinite(rate) or rate <= 0:  # inf/s, nan: no spacing at all, or a comparison always false
        raise UsageError(f"--rate {value!r} must be a number above zero, e.g. 50/s")
    if not RATE_SLOWEST <= rate <= RATE_FASTEST:  # 1e-300/s: a sleep too long for the clock
        raise UsageError(f"--rate {value!r} must be from 1/h to {RATE_FASTEST:,.0f}/s")
    return rate


RATE_SLOWEST, RATE_FASTEST = 1 / 3600, 100_000.0
"""``--rate`` bounds: slower than one an hour is no replay, and faster than this no sender here reaches."""


def parse_assignments(values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for value in values:
        name, sep, new = value.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--set {value!r}: write FIELD=VALUE, e.g. --set state=TX")
        pairs.append((name.strip(), new))
    return tuple(pairs)


SHARD_VARIABLES = ("JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX")
"""Where orchestrators put an array job's index: a Kubernetes Indexed Job, an AWS Batch array job."""


def shard_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--shards N`` with ``--shard I`` or ``--shard-from-env``: run one slice of the window (reconcile's, with
    ``--merge``)."""
    return _slice_options(command, merge=True)


def slice_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The slicing flags without ``--merge`` (``audit pack``: its merge is ``audit merge``)."""
    return _slice_options(command, merge=False)


def _slice_options(command: Callable[..., Any], *, merge: bool) -> Callable[..., Any]:
    for option in reversed(
        [
            click.option("--shards", type=click.IntRange(min=1), help="Cut the window into this many slices..."),
            click.option("--shard", type=click.IntRange(min=0), help="... and run this one (0-based)."),
            click.option(
                "--shard-from-env",
                is_flag=True,
                help="Take --shard from $JOB_COMPLETION_INDEX or $AWS_BATCH_JOB_ARRAY_INDEX.",
            ),
            click.option(
                "--run-state",
                help="Keep each finished slice's checkpoint here (s3://, az://, file://; a folder per run).",
            ),
            *(
                [click.option("--merge", is_flag=True, help="Merge the --shards checkpoints in --run-state into one.")]
                if merge
                else []
            ),
            click.option(
                "--executor",
                help="Run every slice here and merge them: local:N (N processes here) or dask://host:port.",
            ),
            click.option(
                "--api-concurrency",
                type=click.IntRange(min=1),
                help="With --executor: at most this many slices page /events at once (default: no cap).",
            ),
        ]
    ):
        command = option(command)
    return command


def check_slicing(
    start: str | None,
    end: str | None,
    shards: int | None,
    shard: int | None,
    shard_from_env: bool,
    *,
    merge: bool,
    executor: str | None,
    run_state: str | None,
    api_concurrency: int | None,
) -> tuple[int, int] | None:
    """The slice this run is (or None), the slicing flags checked together (reconcile's and audit's)."""
    if executor and not merge:
        if shard is not None or shard_from_env:
            raise UsageError("--executor runs every slice: give --shards N without --shard")
        if shards is None:
            raise UsageError("--executor needs --shards N (how many slices to run)")
    sliced = parse_shard(shards, shard, shard_from_env, merge or bool(executor))
    if (sliced or executor) and not (start and end):  # each machine's "now" differs: its slices would not fit together
        raise UsageError("--shards needs --start and --end: every slice must cut the same window")
    if (merge or executor) and not run_state:
        raise UsageError("--merge and --executor need --run-state URL (where the slices' checkpoints go)")
    if api_concurrency and not executor:
        raise UsageError("--api-concurrency caps the slices an --executor runs at once: give --executor")
    if run_state and not (merge or sliced or executor):
        raise UsageError("--run-state keeps the checkpoints of a sliced run: give --shards N and --shard I")
    return sliced


def refuse_misplaced(ctx: click.Context) -> None:
    """A group that is a command too (``audit``, ``reconcile``): its own options given before a subcommand's name
    belong to the subcommand, and are refused naming where they go."""
    misplaced = [
        param.opts[-1]
        for param in ctx.command.params
        if isinstance(param, click.Option) and param.name not in ("verbose", "quiet") and param.name
        and ctx.get_parameter_source(param.name) == click.core.ParameterSource.COMMANDLINE
    ]  # fmt: skip
    if not misplaced:
        return
    name = f"firehose {ctx.info_name} {ctx.invoked_subcommand}"
    assert isinstance(ctx.command, click.Group) and ctx.invoked_subcommand
    sub = ctx.command.commands[ctx.invoked_subcommand]
    if any(misplaced[0] in param.opts for param in sub.params):
        raise UsageError(f"{misplaced[0]} goes after the subcommand: {name} ...")
    raise UsageError(f"{misplaced[0]} is not an option of `{name}`")


def parse_shard(shards: int | None, shard: int | None, from_env: bool, merge: bool = False) -> tuple[int, int] | None:
    """``(index, count)``, or None when the run is not sharded (or merges, or runs, every slice: ``merge``)."""
    if merge:
        if shard is not None or from_env:
            raise UsageError("--merge takes every slice: give --shards N without --shard")
        if shards is None:
            raise UsageError("--merge needs --shards N (how many slices to merge)")
        return None
    if from_env:
        if shard is not None:
            raise UsageError("--shard and --shard-from-env cannot be used together")
        found = next(((name, os.environ[name]) for name in SHARD_VARIABLES if os.environ.get(name)), None)
        if found is None:
            raise UsageError(f"--shard-from-env: neither {' nor '.join(SHARD_VARIABLES)} is set")
        name, value = found
        if not value.isdigit():
            raise UsageError(f"--shard-from-env: ${name} is {value[:20]!r}, not a shard number")
        shard = int(value)
    if shards is None:
        if shard is not None:
            raise UsageError("--shard needs --shards (how many slices the window is cut into)")
        return None
    if shard is None:
        raise UsageError("--shards needs --shard I or --shard-from-env (which slice this run is)")
    return shard, shards


findings_format = click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "ndjson", "csv"]),
    default="text",
    show_default=True,
    help="How the findings that are not match go to stdout.",
)
"""``--format`` of the commands that print findings: ``reconcile`` and ``reconcile merge`` say it alike."""
