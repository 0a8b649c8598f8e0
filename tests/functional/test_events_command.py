"""`firehose events` against the sandbox over real HTTP: paging, every option, retries and failures."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from firehose.api import EventQuery, LeadConduit
from firehose.cli import cli
from firehose.errors import ExitCode
from firehose.http import HttpClient, RetryPolicy
from firehose.ids import seconds_of, time_of
from tests.conftest import API_KEY, RunningSandbox


def run(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli, ["events", *args], env=env, catch_exceptions=False)


def lines(result: Result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_pages_across_page_boundaries_each_id_once_in_order(sandbox: RunningSandbox, cli_env) -> None:
    expected = sandbox.all_ids()
    assert len(expected) > 7 * 3, "the seed must give several pages"
    before = sandbox.sandbox.requests
    result = run(cli_env, "--page-size", "7")
    assert result.exit_code == 0, result.stderr
    ids = [event["id"] for event in lines(result)]
    assert ids == expected
    pages = -(-len(expected) // 7)
    assert sandbox.sandbox.requests - before == pages + 1, "one request per page plus the empty last page"
    assert f"{len(expected)} events" in result.stderr


def test_writes_whole_events_as_ndjson(sandbox: RunningSandbox, cli_env) -> None:
    result = run(cli_env, "--max", "3")
    first = lines(result)[0]
    assert first == sandbox.get(f"/events/{first['id']}").json()


def test_max_stops_early_and_start_end_window(sandbox: RunningSandbox, cli_env) -> None:
    ids = sandbox.all_ids()
    assert len(lines(run(cli_env, "--max", "5"))) == 5
    start, end = time_of(ids[10]), time_of(ids[30])
    result = run(cli_env, "--start", start.isoformat(), "--end", end.strftime("%Y-%m-%dT%H:%M:%SZ"))
    got = [e["id"] for e in lines(result)]
    assert got == [i for i in ids if seconds_of(ids[10]) <= seconds_of(i) <= seconds_of(ids[30])]


def test_after_id_resumes_and_before_id_bounds(sandbox: RunningSandbox, cli_env) -> None:
    ids = sandbox.all_ids()
    got = [e["id"] for e in lines(run(cli_env, "--after-id", ids[4], "--before-id", ids[9]))]
    assert got == ids[5:9]


def test_type_and_outcome_filters_become_rules(sandbox: RunningSandbox, cli_env) -> None:
    result = run(cli_env, "--type", "recipient", "--type", "retry", "--outcome", "error")
    got = lines(result)
    everything = sandbox.sandbox_events()
    expected = [e["id"] for e in everything if e["type"] in ("recipient", "retry") and e["outcome"] == "error"]
    assert expected, "the seed has errored recipient events"
    assert [e["id"] for e in got] == expected


def test_rules_option(sandbox: RunningSandbox, cli_env) -> None:
    rules = '[{"lhv":"lead.state","op":"is equal to","rhv":"CO"},{"lhv":"type","op":"is equal to","rhv":"source"}]'
    got = lines(run(cli_env, "--rules", rules))
    assert got and all(e["vars"]["lead"]["state"] == "CO" and e["type"] == "source" for e in got)


def test_include_and_exclude(sandbox: RunningSandbox, cli_env) -> None:
    included = lines(run(cli_env, "--include", "type", "--include", "outcome", "--max", "20"))
    assert all(set(e) <= {"id", "type", "outcome"} for e in included)
    excluded = lines(run(cli_env, "--exclude", "vars", "--max", "20"))
    assert all("vars" not in e and "firehose" in e for e in excluded)
    both = CliRunner().invoke(cli, ["events", "--include", "id", "--exclude", "vars"], env=cli_env)
    assert both.exit_code == ExitCode.USAGE
    assert "--include and --exclude cannot be used together" in both.stderr


def test_output_file(sandbox: RunningSandbox, cli_env, tmp_path: Path) -> None:
    target = tmp_path / "out.ndjson"
    result = run(cli_env, "--max", "4", "--output", str(target))
    assert result.stdout == ""
    assert len(target.read_text().splitlines()) == 4


def test_429_with_retry_after_is_waited_out_and_recovered(sandbox: RunningSandbox) -> None:
    sandbox.sandbox.faults.next_statuses = [429, 429]
    sandbox.sandbox.faults.retry_after_seconds = 3
    slept: list[float] = []
    with HttpClient(
        sandbox.url, auth=("API", API_KEY), retry=RetryPolicy(backoff_base_seconds=0.01), sleep=slept.append
    ) as http:
        events = list(LeadConduit(http).iter_events(EventQuery(), max_events=5))
    assert len(events) == 5
    assert len(slept) == 2 and all(wait >= 3 for wait in slept), "each wait is at least Retry-After"


def test_429_recovered_through_the_command(sandbox: RunningSandbox, cli_env) -> None:
    sandbox.sandbox.faults.next_statuses = [429]
    sandbox.sandbox.faults.retry_after_seconds = 1
    result = run(cli_env, "--max", "3")
    assert result.exit_code == 0
    assert len(lines(result)) == 3
    assert "HTTP 429" in result.stderr and "retry 1" in result.stderr


def test_5xx_retried_then_recovered(sandbox: RunningSandbox) -> None:
    sandbox.sandbox.faults.next_statuses = [500, 502, 503, 504]
    slept: list[float] = []
    with HttpClient(sandbox.url, auth=("API", API_KEY), retry=RetryPolicy(max_attempts=5), sleep=slept.append) as http:
        assert len(list(LeadConduit(http).iter_events(EventQuery(), max_events=2))) == 2
    assert len(slept) == 4
    assert max(slept) <= 30, "backoff stays capped"
    assert slept[-1] > slept[0], "backoff grows"


def test_5xx_given_up_exits_4(sandbox: RunningSandbox, cli_env) -> None:
    sandbox.sandbox.faults.next_statuses = [503] * 3
    result = CliRunner().invoke(cli, ["events", "--max-attempts", "3", "--backoff-max", "0.01"], env=cli_env)
    assert result.exit_code == ExitCode.API
    assert result.stderr.strip().splitlines()[-1].startswith("firehose: error: GET ")
    assert "HTTP 503" in result.stderr and "gave up after 3 attempts" in result.stderr


def test_failure_mid_stream_says_how_to_resume(sandbox: RunningSandbox, cli_env) -> None:
    ids = sandbox.all_ids()
    # Pages of 5: the first page is served, then every later request fails.
    sandbox.sandbox.faults.rate_5xx = 0.0
    runner = CliRunner()
    sandbox.sandbox.faults.next_statuses = []
    original = sandbox.sandbox.fault

    calls = {"n": 0}

    def fail_after_first() -> tuple[int, dict[str, str]] | None:
        calls["n"] += 1
        return None if calls["n"] == 1 else (503, {})

    sandbox.sandbox.fault = fail_after_first  # type: ignore[method-assign]
    try:
        result = runner.invoke(
            cli, ["events", "--page-size", "5", "--max-attempts", "2", "--backoff-max", "0"], env=cli_env
        )
    finally:
        sandbox.sandbox.fault = original  # type: ignore[method-assign]
    assert result.exit_code == 4
    assert [e["id"] for e in lines(result)] == ids[:5]
    assert f"resume with --after-id {ids[4]}" in result.stderr


@pytest.mark.parametrize("key", ["wrong-key-0123456789abcdef", ""])
def test_bad_key_exits_3_with_one_line_and_never_shows_the_key(sandbox: RunningSandbox, cli_env, key: str) -> None:
    env = {**cli_env, "LEADCONDUIT_API_KEY": key}
    result = CliRunner().invoke(cli, ["-vv", "events"], env=env)
    assert result.exit_code == ExitCode.CONFIG
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("firehose: error:")]
    assert len(error_lines) == 1
    if key:
        assert "refused the API key (HTTP 401)" in error_lines[0]
        assert key not in result.output and key not in result.stderr
    else:
        assert "LEADCONDUIT_API_KEY" in error_lines[0]
    assert API_KEY not in result.output


def test_key_never_appears_even_with_verbose_logging(sandbox: RunningSandbox, cli_env) -> None:
    sandbox.sandbox.faults.next_statuses = [429]
    sandbox.sandbox.faults.retry_after_seconds = 0
    result = CliRunner().invoke(cli, ["-vv", "events", "--max", "2"], env=cli_env)
    assert result.exit_code == 0
    assert API_KEY not in result.output and API_KEY not in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_url_is_a_clear_error(cli_env) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    env = {**cli_env, "LEADCONDUIT_URL": url}
    result = CliRunner().invoke(cli, ["events", "--max-attempts", "2", "--backoff-max", "0"], env=env)
    assert result.exit_code == ExitCode.API
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"firehose: error: cannot reach LeadConduit: GET {url}/events: connection refused")


def test_url_flag_beats_environment(sandbox: RunningSandbox, cli_env) -> None:
    env = {**cli_env, "LEADCONDUIT_URL": "http://127.0.0.1:9"}
    result = run(env, "--url", sandbox.url, "--max", "1")
    assert result.exit_code == 0 and len(lines(result)) == 1


def test_url_from_config_file(sandbox: RunningSandbox, cli_env, tmp_path: Path) -> None:
    config = tmp_path / "firehose.toml"
    config.write_text(f'[leadconduit]\nurl = "{sandbox.url}"\n')
    env = {k: v for k, v in cli_env.items() if k != "LEADCONDUIT_URL"}
    result = CliRunner().invoke(cli, ["--config", str(config), "events", "--max", "1"], env=env)
    assert result.exit_code == 0 and len(lines(result)) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "yesterday"], "--start 'yesterday' is not an ISO 8601"),
        (["--after-id", "xyz"], "--after-id 'xyz' is not a 24-hex-digit event id"),
        (["--type", "lead"], "unknown event type 'lead'"),
        (["--rules", "{}"], "--rules must be a JSON array"),
        (["--rules", "[oops"], "--rules: not valid JSON"),
        (["--start", "2026-11-02", "--end", "2026-11-01"], "is after --end"),
    ],
)
def test_bad_options_name_the_flag_and_exit_2(cli_env, args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["events", *args], env=cli_env)
    assert result.exit_code in (ExitCode.USAGE, ExitCode.ARCHIVE)
    assert message in result.stderr


def test_iteration_is_lazy_one_page_at_a_time(sandbox: RunningSandbox) -> None:
    """Memory stays flat: nothing beyond the current page is fetched before it is consumed."""
    with HttpClient(sandbox.url, auth=("API", API_KEY)) as http:
        before = sandbox.sandbox.requests
        stream = LeadConduit(http).iter_events(EventQuery(), page_size=10)
        first = next(stream)
        assert sandbox.sandbox.requests - before == 1, "only the first page was fetched"
        assert first["id"] == sandbox.all_ids()[0]
        stream.close()  # type: ignore[attr-defined]  # a generator, typed as the Iterator it returns


def test_a_server_that_trickles_its_answer_is_cut_at_the_timeout(cli_env: dict[str, str]) -> None:
    """A byte every 0.3 s never trips a per-read timeout; one deadline for the whole answer does."""
    import threading
    import time

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    stop = threading.Event()

    def trickle() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n[")
            try:
                while not stop.is_set():
                    conn.sendall(b" ")
                    time.sleep(0.3)
            except OSError:
                pass
            conn.close()

    threading.Thread(target=trickle, daemon=True).start()
    env = {**cli_env, "LEADCONDUIT_URL": f"http://127.0.0.1:{listener.getsockname()[1]}",
           "FIREHOSE_LEADCONDUIT_TIMEOUT_SECONDS": "1"}  # fmt: skip
    started = time.monotonic()
    try:
        result = run(env, "--max-attempts", "1")
    finally:
        stop.set()
        listener.close()
    assert time.monotonic() - started < 10, "cut at the deadline, not when the server finishes"
    assert result.exit_code == ExitCode.API and "no whole answer within 1 s" in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["events", "--max", "3"], "summary"),
        (["events", "--max", "3", "-v"], "detail"),  # after the command, as a new user typed it
        (["-v", "events", "--max", "3"], "detail"),
        (["events", "--max", "3", "-q"], "nothing"),
        (["--quiet", "events", "--max", "3"], "nothing"),
    ],
)
def test_verbose_and_quiet_are_taken_before_or_after_the_command(
    sandbox: RunningSandbox, args: list[str], shown: str
) -> None:
    env = {"LEADCONDUIT_API_KEY": API_KEY, "LEADCONDUIT_URL": sandbox.url}
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 3, "the events are written whatever stderr says"
    summary, detail = "firehose events: 3 events in", "firehose: 3 events in"
    if shown == "nothing":
        assert result.stderr == ""
    else:
        assert summary in result.stderr
        assert (detail in result.stderr) == (shown == "detail"), result.stderr


def test_quiet_still_says_what_failed(sandbox: RunningSandbox) -> None:
    env = {"LEADCONDUIT_API_KEY": "wrong", "LEADCONDUIT_URL": sandbox.url}
    result = CliRunner().invoke(cli, ["events", "--max", "3", "-q"], env=env, catch_exceptions=False)
    assert result.exit_code == ExitCode.CONFIG and result.stderr.startswith("firehose: error: "), result.stderr


def test_the_library_call_streams_what_the_command_writes(
    sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    import firehose

    monkeypatch.setenv("LEADCONDUIT_URL", sandbox.url)
    monkeypatch.delenv("LEADCONDUIT_API_KEY", raising=False)
    query = firehose.EventQuery(types=("source",))
    with pytest.raises(firehose.FirehoseError, match="LEADCONDUIT_API_KEY"):
        firehose.events(query, firehose.Settings.load())  # refused at the call, before any request
    monkeypatch.setenv("LEADCONDUIT_API_KEY", API_KEY)
    streamed = list(firehose.events(query, firehose.Settings.load(), page_size=7, max_events=20))
    written = CliRunner().invoke(
        cli, ["events", "--type", "source", "--max", "20"], env={"LEADCONDUIT_API_KEY": API_KEY}, catch_exceptions=False
    )
    assert [json.loads(line) for line in written.stdout.splitlines()] == streamed and len(streamed) == 20
