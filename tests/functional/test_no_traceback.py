"""Issue 11, items 14 and 15: inputs, outputs and servers that once ended in a traceback, a wrong exit code or a
silent acceptance. Each test names the item it covers; each failing run is one line, ``firehose: error: ...``,
with the README's exit code."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from firehose.codec import encode
from firehose.errors import ExitCode
from firehose.event import EventView
from tests.conftest import API_KEY, UNTIL, RunningSandbox
from tests.functional.clirun import environ, invoke

LEAD = "6ae13b5aa55055783f30ae4b"
EVENT = "6ae13b5aa55055783f30ae4c"


def event_file(root: Path, lead: str = LEAD, event: str = EVENT, body: bytes | None = None) -> Path:
    path = root / lead / f"{event}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body if body is not None else f'{{"id":"{event}"}}'.encode())
    return path


# -- item 14: file: URLs -------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["file:", "file://", "file:///", "file:rel/path", "s3://[", "az://[::1", "s3://"])
def test_a_store_url_that_names_no_folder_or_is_no_url_is_a_usage_error(url: str) -> None:
    # file:// once walked the whole disk from /, and file:rel/path and s3://[ ended in tracebacks.
    run = invoke(["archive", "ls", url], environ())
    assert run.code == ExitCode.USAGE and repr(url) in run.only_line(), run.stderr


def test_symbolic_links_that_loop_dangle_or_lead_out_are_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "store"
    event_file(root)
    (root / "loop").symlink_to(root)
    (root / "self").symlink_to("self")
    (root / "out").symlink_to("/etc")
    (root / LEAD / "passwd.json").symlink_to("/etc/passwd")
    (root / "dangling").symlink_to("/nonexistent")
    run = invoke(["archive", "ls", root.as_uri(), "--all", "--format", "ndjson"], environ())
    assert run.code == ExitCode.OK, run.stderr
    assert [line for line in run.stdout.splitlines() if '"key"' in line] == [
        line for line in run.stdout.splitlines() if f"{LEAD}/{EVENT}.json" in line
    ]
    assert "Traceback" not in run.stderr
    for name in ("loop", "self", "out", f"{LEAD}/passwd.json", "dangling"):
        assert f"{root.as_uri()}/{name}: a symbolic link that" in run.stderr, name


# -- item 15: archive cat goes on after a refused key ----------------------------------------------------------
def test_archive_cat_reports_a_refused_key_and_prints_the_keys_after_it(tmp_path: Path) -> None:
    root = tmp_path / "store"
    event_file(root)
    (root / LEAD / "passwd.json").symlink_to("/etc/passwd")
    run = invoke(
        [
            "archive",
            "cat",
            root.as_uri(),
            "../../etc/passwd",
            "/etc/passwd",
            f"{LEAD}/passwd.json",
            f"{LEAD}/{EVENT}.json",
        ],
        environ(),
    )
    assert run.code == ExitCode.ARCHIVE, run.stderr
    assert run.stdout == f'{{"id":"{EVENT}"}}\n'
    errors = [line for line in run.stderr.splitlines() if line.startswith("firehose: error:")]
    assert len(errors) == 3 and "'../../etc/passwd' leaves the store" in errors[0], errors
    assert "'/etc/passwd' leaves the store" in errors[1] and "symbolic link leads out of the store" in errors[2]
    assert "root:" not in run.stdout


def test_a_file_repair_never_writes_through_a_link_out_of_the_store(sandbox: RunningSandbox, tmp_path: Path) -> None:
    # One day's events; the folder of one of their leads is a link to a folder outside the store.
    day = UNTIL - timedelta(days=3)
    events = [e for e in sandbox.sandbox_events() if day <= EventView(e).created < day + timedelta(days=1)]
    lead = next(EventView(e).lead_id for e in events if EventView(e).lead_id and EventView(e).destinations())
    root, outside = tmp_path / "store", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / str(lead)).symlink_to(outside)
    window = ["--start", f"{day:%Y-%m-%d}", "--end", f"{day:%Y-%m-%d}"]
    run = invoke(
        ["reconcile", "--repair", "--archive", root.as_uri(), *window, "--format", "ndjson"],
        environ(LEADCONDUIT_API_KEY=API_KEY, LEADCONDUIT_URL=sandbox.url, FIREHOSE_STATE=str(tmp_path / "s.db")),
    )
    assert list(outside.iterdir()) == [], "nothing written outside the store"
    assert run.code == ExitCode.ARCHIVE, run.stderr
    refused = [line for line in run.stdout.splitlines() if f"{lead}/" in line]
    assert refused and all('"error"' in line and "leads out of the store" in line for line in refused), refused
    assert any('"repaired"' in line for line in run.stdout.splitlines()), "the other leads are repaired"
    assert os.listdir(root) != [str(lead)]


# -- items 14 and 15: numbers and dates ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["replay", "--rate", "inf/s", "--dry-run"],
        ["replay", "--rate", "nan", "--dry-run"],
        ["replay", "--rate", "1e400", "--dry-run"],
        ["replay", "--rate", "1e-300/s", "--dry-run"],
        ["replay", "--timeout", "nan", "--dry-run"],
        ["replay", "--timeout", "inf", "--dry-run"],
        ["replay", "--settle-after", "99999999999d", "--dry-run"],
        ["replay", "--concurrency", str(10**9), "--dry-run"],
        ["events", "--backoff-max", "nan"],
        ["events", "--backoff-max", "inf"],
        ["events", "--max-attempts", str(10**9)],
        ["archive", "ls", "file:///tmp", "--workers", str(10**9)],
        ["reconcile", "--expiring-within", "99999999999d"],
        ["reconcile", "--lag", "inf"],
        ["reconcile", "--verify", "sample:150"],
        ["reconcile", "--verify", "sample:0"],
        ["reconcile", "--verify", "sample:nan"],
        ["audit", "pack", "--start", "2026-11-01", "--end", "2026-11-02", "--out", "p", "--verify", "sample:100.5"],
        ["audit", "pack", "--start", "2026-11-01", "--end", "2026-11-02", "--out", "p", "--require-retention", "inf"],
        ["sandbox", "--days", "inf"],
        ["sandbox", "--days", "nan"],
        ["sandbox", "--drop-rate", "nan"],
        ["sandbox", "--latency-ms", "inf"],
        ["sandbox", "--leads", str(10**9)],
        ["events", "--start", "10000-01-01"],
        ["events", "--start", "0001-01-01"],
        ["events", "--end", "9999-12-31T23:59:59"],
        ["events", "--start", "9999-12-31T23:00:00-05:00"],
        ["archive", "ls", "file:///tmp", "--start", "0001-01-01", "--end", "0002-01-01"],
        ["archive", "ls", "file:///tmp", "--end", "9999-12-31"],
        ["reconcile", "--end", "9999-12-31"],
        ["reconcile", "--start", "0001-01-01", "--end", "0001-01-02"],
        ["replay", "--start", "1969-12-31T23:59:59Z", "--dry-run"],
        ["audit", "pack", "--start", "0001-01-01", "--end", "9999-12-31", "--out", "p"],
        ["sandbox", "--until", "2200-01-01"],
    ],
    ids=" ".join,
)
def test_nan_inf_huge_and_impossible_values_are_usage_errors_before_any_work(args: list[str], tmp_path: Path) -> None:
    # LEADCONDUIT_URL is a closed port: a value that slipped through would show as exit 4, not 2.
    env = environ(LEADCONDUIT_API_KEY="k", LEADCONDUIT_URL="http://127.0.0.1:9", FIREHOSE_STATE=str(tmp_path / "s"))
    run = invoke(args, env)
    assert run.code == ExitCode.USAGE, run.stderr
    line = run.only_line()
    assert args[-1 if args[-1] != "--dry-run" else -2] in line or "--" in line, line


def test_the_api_gets_four_digit_years() -> None:
    from datetime import UTC, datetime

    from firehose.api import format_time

    assert format_time(datetime(1, 1, 1, tzinfo=UTC)) == "0001-01-01T00:00:00Z"
    assert format_time(datetime(999, 12, 31, 23, 59, 59, 5000, tzinfo=UTC)) == "0999-12-31T23:59:59.005Z"


# -- items 14 and 15: servers that misbehave --------------------------------------------------------------------
def test_a_server_trickling_its_headers_is_cut_at_the_deadline() -> None:
    import time

    from tests.functional.servers import serving, trickle_headers

    with serving(trickle_headers) as url:
        env = environ(LEADCONDUIT_API_KEY="k", LEADCONDUIT_URL=url, FIREHOSE_LEADCONDUIT_TIMEOUT_SECONDS="1")
        started = time.monotonic()
        run = invoke(["events", "--max-attempts", "1"], env)
    assert time.monotonic() - started < 5, "cut at the deadline, not when the server finishes its headers"
    assert run.code == ExitCode.API and "no whole answer within 1 s" in run.only_line(), run.stderr


@pytest.mark.parametrize(
    ("server", "code", "says"),
    [
        ("gzip_junk", ExitCode.ARCHIVE, "does not decode as its Content-Encoding says"),
        ("deep_json", ExitCode.ARCHIVE, "not valid JSON"),
        ("junk", ExitCode.API, "cannot reach LeadConduit"),
    ],
)
def test_an_answer_that_cannot_be_read_is_one_line(server: str, code: int, says: str) -> None:
    from tests.functional import servers

    made = getattr(servers, server)
    handler = made() if server in ("gzip_junk", "deep_json") else made
    with servers.serving(handler) as url:
        run = invoke(["events", "--max-attempts", "1"], environ(LEADCONDUIT_API_KEY="k", LEADCONDUIT_URL=url))
    assert run.code == code and says in run.only_line(), run.stderr


def test_a_url_flag_without_a_host_is_a_usage_error_not_six_attempts() -> None:
    run = invoke(["events", "--url", "http://"], environ(LEADCONDUIT_API_KEY="k"))
    assert run.code == ExitCode.USAGE and "--url 'http://' names no host" in run.only_line()
    run = invoke(["locate", EVENT, "--url", "http://[::1"], environ(LEADCONDUIT_API_KEY="k"))
    assert run.code == ExitCode.USAGE and "is not a URL" in run.only_line()


# -- item 14: JSON nested hundreds or thousands of levels deep -------------------------------------------------
def nested(levels: int, leaf: object = "x") -> object:
    value: object = leaf
    for _ in range(levels):
        value = {"k": [value]}
    return value


def deep_event(event_id: str = EVENT, lead_id: str = LEAD, levels: int = 400, **extra: object) -> dict[str, object]:
    """An event whose ``vars.deep`` nests 2 x ``levels`` deep: past what orjson writes (255), within what it
    reads (1,024)."""
    return {"id": event_id, "type": "source", "vars": {"lead": {"id": lead_id}, "deep": nested(levels)}, **extra}


def test_events_and_locate_print_an_event_nested_800_deep() -> None:
    import orjson

    from tests.functional.servers import events_page, serving

    event = deep_event()
    with serving(events_page(encode([event]))) as url:
        run = invoke(["events", "--max-attempts", "1"], environ(LEADCONDUIT_API_KEY="k", LEADCONDUIT_URL=url))
    assert run.code == ExitCode.OK, run.stderr
    assert orjson.loads(run.stdout) == event
    with serving(events_page(encode(event))) as url:
        run = invoke(["locate", EVENT, "--format", "json"], environ(LEADCONDUIT_API_KEY="k", LEADCONDUIT_URL=url))
    assert run.code == ExitCode.OK and "Traceback" not in run.stderr, run.stderr


def test_archive_cat_prints_a_deep_object_and_reports_one_too_deep_to_read(tmp_path: Path) -> None:
    import orjson

    root = tmp_path / "store"
    event_file(root, body=encode(deep_event()))
    other = "6ae13b5aa55055783f30ae4d"
    event_file(root, event=other, body=b'{"id":"x","v":' + b"[" * 2000 + b"]" * 2000 + b"}")
    run = invoke(
        ["archive", "cat", root.as_uri(), f"{LEAD}/{EVENT}.json", f"{LEAD}/{other}.json", "--pretty"], environ()
    )
    assert run.code == ExitCode.ARCHIVE, run.stderr
    assert orjson.loads(run.stdout) == deep_event()
    assert f"{LEAD}/{other}.json: not valid JSON" in run.error_line() and "Traceback" not in run.stderr


def test_reconcile_content_compares_deep_objects_and_names_one_that_does_not_parse(tmp_path: Path) -> None:
    import orjson

    from tests.functional.servers import events_page, serving

    lead, first, second = "6920f1a0aaaaaaaaaaaaaaaa", "6920f1a1bbbbbbbbbbbbbbbb", "6920f1a2cccccccccccccccc"
    firehose = {"enabled": True, "bucket": "b", "prefix": ""}
    api = [deep_event(first, lead, firehose=firehose), deep_event(second, lead, firehose=firehose)]
    root = tmp_path / "store"
    event_file(root, lead, first, encode(deep_event(first, lead, levels=300, firehose=firehose)))
    event_file(root, lead, second, b"[" * 1500 + b"]" * 1500)
    day = "2025-11-21"  # 0x6920f1a0 is 2025-11-21T23:xx UTC
    with serving(events_page(encode(api))) as url:
        run = invoke(
            [
                "reconcile",
                "--verify",
                "content",
                "--archive",
                root.as_uri(),
                "--start",
                day,
                "--end",
                day,
                "--format",
                "ndjson",
                "--include-pii",
                "--report",
                str(tmp_path / "r.json"),
            ],
            environ(LEADCONDUIT_API_KEY="k", LEADCONDUIT_URL=url, FIREHOSE_STATE=str(tmp_path / "s.db")),
        )
    assert run.code == ExitCode.ARCHIVE and "Traceback" not in run.stderr, run.stderr
    rows = {row["event_id"]: row for row in map(orjson.loads, run.stdout.splitlines())}
    assert rows[first]["verdict"] == "differ" and rows[first]["fields"] == "vars"
    assert rows[second]["verdict"] == "error" and "not valid JSON" in rows[second]["reason"]
    assert orjson.loads((tmp_path / "r.json").read_bytes())["counts"] == {"differ": 1, "error": 1}


# -- item 14: an expires_at without a time zone ------------------------------------------------------------
def test_an_expiry_without_a_zone_is_taken_as_utc(tmp_path: Path) -> None:
    import orjson

    from tests.functional.servers import events_page, serving

    lead = "6920f1a0aaaaaaaaaaaaaaaa"
    firehose = {"enabled": True, "bucket": "b", "prefix": ""}
    events = [
        {"id": "6920f1a1bbbbbbbbbbbbbbbb", "vars": {"lead": {"id": lead}}, "firehose": firehose,
         "expires_at": "2026-02-19T23:00:00"},
        {"id": "6920f1a2cccccccccccccccc", "vars": {"lead": {"id": lead}}, "firehose": firehose,
         "expires_at": "9999-12-31T23:59:59-05:00"},
        {"id": "6920f1a3dddddddddddddddd", "vars": {"lead": {"id": lead}}, "firehose": firehose,
         "expires_at": "2026-02-19T23:00:00Z"},
    ]  # fmt: skip
    (tmp_path / "empty").mkdir()
    with serving(events_page(encode(events))) as url:
        run = invoke(
            [
                "reconcile",
                "--archive",
                (tmp_path / "empty").as_uri(),
                "--start",
                "2025-11-21",
                "--end",
                "2025-11-21",
                "--format",
                "ndjson",
            ],
            environ(LEADCONDUIT_API_KEY="k", LEADCONDUIT_URL=url, FIREHOSE_STATE=str(tmp_path / "s.db")),
        )
    assert run.code == ExitCode.DIFFERENCES and "Traceback" not in run.stderr, run.stderr
    expiry = {row["event_id"]: row["expires_at"] for row in map(orjson.loads, run.stdout.splitlines())}
    assert expiry["6920f1a1bbbbbbbbbbbbbbbb"] == expiry["6920f1a3dddddddddddddddd"] == "2026-02-19T23:00:00Z"
    assert expiry["6920f1a2cccccccccccccccc"] is None, "an expiry that cannot be told in UTC is unknown"


# -- item 14: two runs on one state database ------------------------------------------------------------------
def test_processes_opening_a_fresh_state_database_at_once_all_succeed(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    from tests.functional.clirun import process_env

    path = tmp_path / "fresh.sqlite"
    script = tmp_path / "open.py"
    start = time.time() + 1.5  # every process imported and waiting, then all open the file in the same instant
    script.write_text(
        "import time\nfrom pathlib import Path\nfrom firehose.state import StateDB\n"
        f"time.sleep(max(0, {start} - time.time()))\nStateDB(Path({str(path)!r})).run('f', {{}})\n"
    )
    starts = [subprocess.Popen([sys.executable, str(script)], env=process_env(), stderr=subprocess.PIPE, text=True)
              for _ in range(8)]  # fmt: skip
    results = [(p.communicate(timeout=60)[1], p.returncode) for p in starts]
    assert all(code == 0 for _, code in results), results


def test_two_reconciles_started_at_once_on_a_fresh_state_file(sandbox: RunningSandbox, tmp_path: Path) -> None:
    from tests.functional.clirun import process_env, spawn

    root = tmp_path / "store"
    root.mkdir()
    day = f"{UNTIL - timedelta(days=2):%Y-%m-%d}"
    env = process_env(LEADCONDUIT_API_KEY=API_KEY, LEADCONDUIT_URL=sandbox.url,
                      FIREHOSE_STATE=str(tmp_path / "state.sqlite"))  # fmt: skip
    args = ["reconcile", "--archive", root.as_uri(), "--start", day, "--end", day, "--format", "ndjson"]
    runs = [spawn(args, env, tmp_path) for _ in range(3)]
    done = [(p.wait(timeout=120), *p.communicate()) for p in runs]
    codes = sorted(code for code, _, _ in done)
    assert codes[0] == ExitCode.DIFFERENCES and set(codes) <= {ExitCode.DIFFERENCES, ExitCode.CONFIG}, done
    for code, _, err in done:
        assert "Traceback" not in err and "UNIQUE" not in err and "locked" not in err, err
        if code == ExitCode.CONFIG:
            (line,) = err.strip().splitlines()
            assert line.startswith("firehose: error: state database") and "another reconcile is using it" in line
            assert "pid " in line and "(firehose reconcile)" in line, line


def test_a_reconcile_or_audit_while_another_runs_is_refused_naming_it(sandbox: RunningSandbox, tmp_path: Path) -> None:
    from firehose.state import RunLock

    database = tmp_path / "state.sqlite"
    env = environ(LEADCONDUIT_API_KEY=API_KEY, LEADCONDUIT_URL=sandbox.url, FIREHOSE_STATE=str(database))
    day = f"{UNTIL - timedelta(days=2):%Y-%m-%d}"
    with RunLock(database, "reconcile", "firehose audit"):
        busy = invoke(["reconcile", "--start", day, "--end", day], env)
        audit = invoke(["audit", "pack", "--start", day, "--end", day, "--out", str(tmp_path / "pack")], env)
        dry = invoke(["reconcile", "--start", day, "--end", day, "--dry-run", "--archive", tmp_path.as_uri()], env)
    for run in (busy, audit):
        assert run.code == ExitCode.CONFIG, run.stderr
        line = run.only_line()
        assert f"another reconcile is using it (pid {os.getpid()} (firehose audit)" in line, line
    assert dry.code in (ExitCode.OK, ExitCode.DIFFERENCES), dry.stderr
    assert not (tmp_path / "pack").exists()


# -- item 15: memory to print a big archived object ------------------------------------------------------------
def test_printing_a_big_ndjson_object_takes_about_its_size_in_memory(tmp_path: Path) -> None:
    """An 80 MB NDJSON object: archive cat peaked at 4.6 times its size (its lines copied, every record held);
    a line at a time from one buffer, about once its size on top of what the command needs for a small one."""
    import subprocess
    import sys

    from tests.functional.clirun import process_env

    line = b'{"id":"' + EVENT.encode() + b'","vars":{"x":"' + b"a" * 900 + b'"}}\n'
    size = 80 * 2**20
    event_file(tmp_path / "store", body=line * (size // len(line)))
    measure = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
        "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)\n"
    )

    def peak_rss(*args: str) -> int:
        command = [sys.executable, "-c", measure, sys.executable, "-m", "firehose", *args]
        out = subprocess.run(command, env=process_env(), capture_output=True, text=True, timeout=120, check=True).stdout
        code, peak = map(int, out.split())
        assert code == 0
        return peak

    # The same command on a small object: the interpreter and firehose's own code, whatever the machine's versions.
    event_file(tmp_path / "small", body=line)
    base = peak_rss("archive", "cat", (tmp_path / "small").as_uri(), f"{LEAD}/{EVENT}.json")
    peak = peak_rss("archive", "cat", (tmp_path / "store").as_uri(), f"{LEAD}/{EVENT}.json")
    assert peak - base < 1.2 * size, f"{(peak - base) / 2**20:.0f} MiB more for an {size / 2**20:.0f} MiB object"


# -- item 14: the sandbox command, whatever a client sends -------------------------------------------------------
def test_the_sandbox_answers_hostile_requests_without_a_traceback(tmp_path: Path) -> None:
    import socket
    import time

    from tests.functional.clirun import process_env, spawn

    port_file = tmp_path / "port"
    env = process_env(LEADCONDUIT_API_KEY=API_KEY)
    server = spawn(["sandbox", "--port", "0", "--leads", "3", "--days", "1", "--port-file", str(port_file)], env,
                   tmp_path)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        port = int(port_file.read_text())
        flow = "/flows/5fd4371e940df5a34a3888b2/sources/5fd4371e940df5a34a3888b3/submit"
        deep = "<a>" * 30_000 + "</a>" * 30_000
        for request in (
            f"POST {flow} HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
            f"POST {flow} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            f"POST {flow} HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: {len(deep)}\r\n\r\n{deep}",
            "GET /events?limit=abc HTTP/1.1\r\nHost: x\r\n\r\n",
        ):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                conn.sendall(request.encode())
                answer = conn.recv(200)
            assert answer.startswith((b"HTTP/1.1 4", b"HTTP/1.1 5")), answer
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert "Traceback" not in err, err


def test_a_url_refused_is_shown_without_its_credentials() -> None:
    for args in (
        ["events", "--url", "http://user:pa55word@[::1"],
        ["archive", "ls", "az://[c?sv=1&sig=pa55word"],
        ["archive", "ls", "gopher://user:pa55word@x/"],
        ["reconcile", "--archive", "s3://user:pa55word@["],
    ):
        run = invoke(args, environ(LEADCONDUIT_API_KEY="k"))
        assert run.code == ExitCode.USAGE and "pa55word" not in run.only_line(), run.stderr
