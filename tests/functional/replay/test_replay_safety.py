"""Replay's promises under attack: never a lead twice (two runs at once, kill -9, gateways that time out after
taking the lead, redirects, crashes before sending), never to a host nobody named, never a secret kept, and
hostile stored requests. The sandbox is the API and the target; ``CaptureServer`` plays the hosts that
misbehave or that nobody named. Every test checks what the targets received."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from firehose.archive import open_store
from firehose.errors import ExitCode
from firehose.replaying.plan import ReplayOptions
from firehose.replaying.request import Target, prepare
from firehose.state import SENDING, LedgerEntry, ReplayLedger, StateDB
from tests.conftest import API_KEY, S3_CREDENTIAL, UNTIL, RunningSandbox, stack_config
from tests.functional.replay.capture import Captured, CaptureServer
from tests.functional.replay.support import WINDOW, body_of, failed_sources, received, replay

SECRET = "s3cr3t-stored-credential-91f2"


def sources(box: RunningSandbox) -> list[dict[str, Any]]:
    """Every seeded source event of the window (the live ones a replay made are after UNTIL)."""
    until = f"{int(UNTIL.timestamp()):08x}"
    return [e for e in box.sandbox_events() if e["type"] == "source" and e["id"][:8] <= until]


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "firehose", "replay", *args]


def run(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command(*args), env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def ids_file(tmp_path: Path, events: list[dict[str, Any]], name: str = "ids.ndjson") -> Path:
    """An id list that carries the events themselves, as a dead-letter file does: the archive as an attacker
    or a broken export wrote it, nothing fetched."""
    path = tmp_path / name
    path.write_text("".join(json.dumps({"event": e}) + "\n" for e in events))
    return path


def hostile(event: dict[str, Any], **request: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(event))
    copy["request"].update(request)
    return copy


def each_once(box: RunningSandbox, events: list[dict[str, Any]]) -> None:
    bodies = Counter(body_of(s) for s in received(box))
    wanted = Counter(e["request"]["body"].encode() for e in events)
    twice = {body: n for body, n in bodies.items() if n > wanted[body]}
    assert not twice, f"{len(twice)} leads posted more than once"


# -- never a lead twice ------------------------------------------------------------------------------------
def test_two_replays_at_once_on_one_state_deliver_each_lead_once_and_the_second_is_told(
    box: RunningSandbox, env: dict[str, str]
) -> None:
    wanted = sources(box)
    box.sandbox.faults.latency_ms = 40
    args = ["--from-api", *WINDOW, "--target", box.url, "--yes", "--format", "ndjson", "--concurrency", "2"]
    first = run(env, *args)
    deadline = time.monotonic() + 30
    while not received(box) and time.monotonic() < deadline:
        time.sleep(0.02)
    second = run(env, *args)
    out2, err2 = second.communicate(timeout=60)
    _, err1 = first.communicate(timeout=120)
    assert first.returncode == ExitCode.OK, err1
    assert second.returncode == ExitCode.CONFIG and "another replay is using it" in err2, err2
    assert "pid" in err2 and len(err2.strip().splitlines()) == 1
    assert out2 == ""
    each_once(box, wanted)
    assert len(received(box)) == len(wanted)


def _claim_all(database: str, event_ids: list[str], run_id: str, queue: Any) -> None:
    ledger = ReplayLedger(StateDB(Path(database)))
    won = []
    for event_id in event_ids:
        entry = LedgerEntry(event_id, None, None, "http://t", SENDING, 0, claimed_by=run_id)
        if ledger.claim(entry, force=False, retry_unknown=False) is None:
            won.append(event_id)
    queue.put(won)


def test_the_ledger_claim_is_atomic_across_processes(tmp_path: Path) -> None:
    """Below the run lock: two processes claiming the same 300 leads on one database at once, each lead is
    claimed by exactly one of them."""
    database = str(tmp_path / "race.sqlite")
    StateDB(Path(database)).close()
    event_ids = [f"{i:024x}" for i in range(300)]
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    workers = [context.Process(target=_claim_all, args=(database, event_ids, f"run{n}", queue)) for n in range(2)]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(30)
    assert sorted(results[0] + results[1]) == sorted(event_ids), "each lead claimed once, none lost"


@pytest.mark.parametrize("scheme", ["file", "s3"])
def test_two_machines_sharing_one_ledger_in_a_store_deliver_each_lead_once(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path, scheme: str, request: pytest.FixtureRequest
) -> None:
    wanted = sources(box)
    box.sandbox.faults.latency_ms = 10
    extra: dict[str, str] = {}
    if scheme == "file":
        ledger = f"file://{tmp_path / 'ledger'}"
    else:
        request.getfixturevalue("stack")
        bucket = f"ledger-{os.urandom(4).hex()}"
        store = open_store(f"s3://{bucket}", s3=S3_CREDENTIAL)
        store.create()
        store.close()
        config = stack_config(tmp_path / "f.toml")
        extra = {"FIREHOSE_CONFIG": str(config)}
        ledger = f"s3://{bucket}/replays"
    args = ["--from-api", *WINDOW, "--target", box.url, "--yes", "--format", "ndjson", "--ledger", ledger]
    # Two machines: each its own state database, one ledger in the store.
    machines = [run({**env, **extra, "FIREHOSE_STATE": str(tmp_path / f"m{n}.sqlite")}, *args) for n in range(2)]
    outputs = [machine.communicate(timeout=240) for machine in machines]
    for machine, (_, err) in zip(machines, outputs, strict=True):
        assert machine.returncode == ExitCode.OK, err
    rows = [json.loads(line) for out, _ in outputs for line in out.splitlines()]
    sent = Counter(r["event_id"] for r in rows if r["status"] == "sent")
    assert set(sent) == {e["id"] for e in wanted} and max(sent.values()) == 1
    assert sum(r["status"] == "skipped" for r in rows) == len(wanted), "what one machine sent, the other skipped"
    each_once(box, wanted)
    assert len(received(box)) == len(wanted)
    # A third run, anywhere, sends nothing.
    third = replay({**env, **extra, "FIREHOSE_STATE": str(tmp_path / "m3.sqlite")}, *args)
    assert third.exit_code == ExitCode.OK and len(received(box)) == len(wanted)


def test_kill_9_while_posting_into_leadconduit_itself_then_reruns_settle_and_send_each_lead_once(
    box: RunningSandbox, env: dict[str, str]
) -> None:
    """No --target: the replay goes to LeadConduit itself (the configured URL), which the rerun asks what became
    of the leads in doubt."""
    wanted = sources(box)
    box.sandbox.faults.latency_ms = 150
    args = ["--from-api", *WINDOW, "--yes", "--format", "ndjson", "--concurrency", "4"]
    process = run(env, *args)
    deadline = time.monotonic() + 60
    while len(received(box)) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    time.sleep(0.5)  # the requests already written are still being processed by the target
    box.sandbox.faults.latency_ms = 0
    assert 6 <= len(received(box)) < len(wanted), "killed part-way"
    rerun = replay(env, *args, "--settle-after", "0s")
    assert rerun.exit_code == ExitCode.OK, rerun.stderr
    assert "was in doubt: settled" in rerun.stderr
    for _ in range(2):  # any number of reruns sends nothing more
        again = replay(env, *args, "--settle-after", "0s")
        assert again.exit_code == ExitCode.OK
    each_once(box, wanted)
    assert len(received(box)) == len(wanted), "every lead reached the flow in the end"


def test_a_lead_in_doubt_that_never_reached_leadconduit_is_settled_as_not_received_and_sent_once(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path
) -> None:
    [event] = failed_sources(box)[:1]
    prepared = prepare(event, Target(base_url=box.url), ReplayOptions(Target()).edits)
    with StateDB(Path(env["FIREHOSE_STATE"])) as state:  # as a run killed between its claim and the socket
        ReplayLedger(state).write(
            [LedgerEntry(event["id"], None, None, prepared.shown_url(), SENDING, 0, identity=prepared.identity)]
        )
    ids = ids_file(tmp_path, [event])
    waiting = replay(env, "--ids", str(ids), "--yes", "--format", "ndjson")
    assert received(box) == [] and json.loads(waiting.stdout)["status"] == "unknown"
    assert waiting.exit_code == ExitCode.DIFFERENCES
    assert "too soon to be sure" in waiting.stderr or "too soon" in json.loads(waiting.stdout)["reason"]
    settled = replay(env, "--ids", str(ids), "--yes", "--format", "ndjson", "--settle-after", "0s")
    assert "not received" in settled.stderr
    assert settled.exit_code == ExitCode.OK and [json.loads(settled.stdout)["status"]] == ["sent"]
    assert [body_of(s) for s in received(box)] == [event["request"]["body"].encode()]


@pytest.mark.parametrize("status", [504, 502, 500])
def test_a_gateway_error_after_the_target_took_the_lead_is_unknown_and_not_posted_again(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path, status: int
) -> None:
    events = sources(box)[:12]
    with CaptureServer(answer=lambda c: (status, {}, b"gateway timed out")) as gateway:
        ids = ids_file(tmp_path, events)
        args = ["--ids", str(ids), "--target", gateway.url, "--yes", "--format", "ndjson", "--max-attempts", "5"]
        first = replay(env, *args)
        rows = [json.loads(line) for line in first.stdout.splitlines()]
        assert first.exit_code == ExitCode.DIFFERENCES
        assert [r["status"] for r in rows] == ["unknown"] * 12 and len(gateway.requests) == 12
        assert all(f"HTTP {status}" in r["reason"] and r["attempts"] == 1 for r in rows)
        again = replay(env, *args)
        assert len(gateway.requests) == 12 and "12 unknown" in again.stderr and again.exit_code == ExitCode.DIFFERENCES


def test_503_is_retried_and_a_refused_connection_is_released_for_a_rerun(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path
) -> None:
    answers = iter([(503, {"Retry-After": "0"}, b""), (201, {}, b"{}")])
    with CaptureServer(answer=lambda c: next(answers)) as flow:
        [event] = failed_sources(box)[:1]
        result = replay(env, "--ids", str(ids_file(tmp_path, [event])), "--target", flow.url, "--yes")
        assert result.exit_code == ExitCode.OK and len(flow.requests) == 2
    closed = flow.url  # nothing listens there now: refused, nothing sent
    other = failed_sources(box)[1]
    ids = ids_file(tmp_path, [other], "other.ndjson")
    refused = replay(env, "--ids", str(ids), "--target", closed, "--yes", "--max-attempts", "2")
    assert refused.exit_code == ExitCode.DIFFERENCES and "connection refused" in refused.stdout
    rerun = replay(env, "--ids", str(ids), "--target", box.url, "--yes")
    assert rerun.exit_code == ExitCode.OK and len(received(box)) == 1, "a lead never sent is sent by the rerun"


def _redirect(code: int, where: str) -> Any:
    def answer(captured: Captured) -> tuple[int, dict[str, str], bytes]:
        if captured.path.startswith("/moved"):
            return 201, {"Content-Type": "application/json"}, b'{"outcome":"success","lead":{"id":"n1"}}'
        return code, {"Location": where}, b""

    return answer


@pytest.mark.parametrize("code", [307, 308])
def test_a_temporary_or_permanent_redirect_is_not_success_and_is_followed_only_when_asked(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path, code: int
) -> None:
    [event] = failed_sources(box)[:1]
    ids = ids_file(tmp_path, [event])
    with CaptureServer(answer=_redirect(code, "/moved/submit?token=hidden-token")) as flow:
        args = ["--ids", str(ids), "--target", f"{flow.url}/flows/f/sources/s/submit", "--yes", "--format", "ndjson"]
        refused = replay(env, *args)
        [row] = [json.loads(line) for line in refused.stdout.splitlines()]
        assert refused.exit_code == ExitCode.DIFFERENCES and row["status"] == "failed"
        assert f"HTTP {code}: redirected to {flow.url}/moved/submit?token=***" in row["reason"]
        assert "hidden-token" not in refused.stdout + refused.stderr
        followed = replay(env, *args, "--follow-redirects")
        [row] = [json.loads(line) for line in followed.stdout.splitlines()]
        assert followed.exit_code == ExitCode.OK and row["status"] == "sent", "a failed lead is sent by the rerun"
        moved = flow.requests[-1]
        assert moved.path.startswith("/moved/submit") and moved.method == "POST"
        assert moved.body == event["request"]["body"].encode(), "method and body kept"
    with CaptureServer() as elsewhere, CaptureServer(answer=_redirect(code, elsewhere.url + "/moved")) as flow:
        other = failed_sources(box)[1]
        result = replay(env, "--ids", str(ids_file(tmp_path, [other], "o.ndjson")), "--target", flow.url, "--yes",
                        "--follow-redirects")  # fmt: skip
        assert result.exit_code == ExitCode.DIFFERENCES and elsewhere.requests == [], "never to another host"


def test_a_303_is_success_only_when_the_request_carried_redir_url(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path
) -> None:
    plain, with_redir = failed_sources(box)[:2]
    with_redir = hostile(with_redir, uri=with_redir["request"]["uri"] + "?redir_url=https%3A%2F%2Fexample.org%2Fty")
    with CaptureServer(answer=lambda c: (303, {"Location": "https://example.org/ty"}, b"")) as flow:
        result = replay(env, "--ids", str(ids_file(tmp_path, [plain, with_redir])), "--target", flow.url, "--yes",
                        "--format", "ndjson")  # fmt: skip
        rows = {r["event_id"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert rows[with_redir["id"]]["status"] == "sent"
    assert (
        rows[plain["id"]]["status"] == "failed"
        and "redirected to https://example.org/ty" in rows[plain["id"]]["reason"]
    )


def test_a_bad_value_is_refused_before_any_lead_is_claimed(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path
) -> None:
    ids = ids_file(tmp_path, failed_sources(box)[:4])
    for bad in (["--timeout", "-1"], ["--timeout", "nan"], ["--rate", "0/s"], ["--settle-after", "soon"]):
        result = replay(env, "--ids", str(ids), "--target", box.url, "--yes", *bad)
        assert result.exit_code == ExitCode.USAGE, (bad, result.output)
        assert "Traceback" not in result.output and bad[0] in result.stderr
    corrected = replay(env, "--ids", str(ids), "--target", box.url, "--yes")
    assert corrected.exit_code == ExitCode.OK and "4 sent" in corrected.stderr and len(received(box)) == 4


# -- never to a host nobody named --------------------------------------------------------------------------
def test_without_target_a_stored_uri_naming_another_host_is_refused_and_gets_no_credential(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path
) -> None:
    honest, evil = failed_sources(box)[:2]
    with CaptureServer(host="127.0.0.2") as other:
        path = evil["request"]["uri"].split("leadconduit.com", 1)[1]
        evil = hostile(evil, uri=other.url + path)
        ids = ids_file(tmp_path, [honest, evil])
        keyed = {**env, "SOURCE_KEY": "partner-key-1"}
        for extra in ([], ["--to-flow", evil["vars"]["flow"]["id"], "--to-source", evil["vars"]["source"]["id"]]):
            result = replay(keyed, "--ids", str(ids), "--yes", "--source-api-key-env", "SOURCE_KEY", "--force", *extra)
            assert result.exit_code == ExitCode.DIFFERENCES
            assert f"event {evil['id']}: its stored request names host '127.0.0.2'" in result.stdout
        assert other.requests == [], "nothing went to the host the archive named"
    got = received(box)
    assert [body_of(s) for s in got] == [honest["request"]["body"].encode()] * 2, "the honest one went to LeadConduit"
    assert all(s["headers"].get("Authorization") for s in got), "the source key goes to the host the user named"


# -- never a secret kept -----------------------------------------------------------------------------------
def test_credentials_in_stored_requests_are_never_shown_stored_or_forwarded(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path
) -> None:
    plain = failed_sources(box)[0]
    event = hostile(
        plain,
        uri=plain["request"]["uri"] + f"?api_key={SECRET}&state=TX",
        headers={**plain["request"]["headers"], "Authorization": f"Basic {SECRET}", "X-Api-Key": SECRET,
                 "Cookie": f"session={SECRET}"},
    )  # fmt: skip
    ids = ids_file(tmp_path, [event])
    shown = replay(env, "--ids", str(ids), "--target", box.url, "--dry-run", "--include-pii")
    assert SECRET not in shown.output and "api_key=***" in shown.stdout and "state=TX" in shown.stdout
    dead = tmp_path / "dead.ndjson"
    with CaptureServer(answer=lambda c: (400, {}, b"bad")) as refusing:
        failed = replay(env, "--ids", str(ids), "--target", refusing.url, "--yes", "--dead-letter", str(dead))
        assert failed.exit_code == ExitCode.DIFFERENCES
        [sent] = refusing.requests
        assert SECRET not in json.dumps(sent.headers) + sent.path, "dropped when sending"
        assert "state=TX" in sent.path
    assert stat.S_IMODE(dead.stat().st_mode) == 0o600, "dead letters hold lead data: owner only"
    assert SECRET not in dead.read_text() and "api_key=***" in dead.read_text()
    assert json.loads(dead.read_text())["event"]["vars"] == event["vars"], "the lead itself is kept to replay"
    kept = replay(env, "--ids", str(ids), "--target", box.url, "--yes", "--keep-query-credentials", "--force")
    assert kept.exit_code == ExitCode.OK and f"api_key={SECRET}" in received(box)[0]["query"]
    database = sqlite3.connect(env["FIREHOSE_STATE"])
    dump = "\n".join(database.iterdump())
    assert SECRET not in dump and "state=TX" not in dump, "the ledger keeps no credential and no lead data"
    written = [path for path in tmp_path.rglob("*") if path.is_file() and path != ids]  # ids: the hostile input
    assert dead in written and any(path.name.startswith("state.sqlite") for path in written)
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), f"{path} holds a stored credential"


def test_verbose_logs_never_show_a_password_in_a_url(box: RunningSandbox, env: dict[str, str]) -> None:
    with_password = box.url.replace("http://", f"http://API:{SECRET}@")
    result = subprocess.run(
        [sys.executable, "-m", "firehose", "-vv", "events", "--max", "3", "--url", with_password],
        env={**os.environ, **env, "LEADCONDUIT_URL": with_password},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == ExitCode.OK, result.stderr
    assert "HTTP Request" in result.stderr and SECRET not in result.stderr + result.stdout
    assert API_KEY not in result.stderr


# -- stored requests that are hostile ----------------------------------------------------------------------
def test_hostile_stored_requests_fail_alone_with_the_reason_and_nothing_is_injected(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path
) -> None:
    events = failed_sources(box)
    base = events[0]["request"]["headers"]
    xml = next(e for e in box.sandbox_events() if "xml" in str(e.get("request", {}).get("headers", {})))
    attacks = {
        "a non-Latin-1 header": hostile(events[0], headers={**base, "X-Name": "Łukasz ✓"}),
        "a CRLF in a header": hostile(events[1], headers={**base, "X-Note": "a\r\nX-Injected: yes"}),
        "a CRLF in the method": hostile(events[2], method="POST /x HTTP/1.1\r\nX-Injected: yes\r\n"),
    }
    good = events[3]
    dead = tmp_path / "dead.ndjson"
    with CaptureServer() as flow:
        result = replay(env, "--ids", str(ids_file(tmp_path, [*attacks.values(), good])), "--target", flow.url,
                        "--yes", "--format", "ndjson", "--dead-letter", str(dead))  # fmt: skip
        assert "Traceback" not in result.output
        rows = {r["event_id"]: r for r in map(json.loads, result.stdout.splitlines())}
        assert result.exit_code == ExitCode.DIFFERENCES
        assert rows[good["id"]]["status"] == "sent" and len(flow.requests) == 1, "the rest of the run goes on"
        assert all("x-injected" not in {h.lower() for h in r.headers} for r in flow.requests)
    for name, event in attacks.items():
        assert rows[event["id"]]["status"] == "failed", name
    assert (
        "header X-Name holds characters HTTP headers cannot carry"
        in rows[attacks["a non-Latin-1 header"]["id"]]["reason"]
    )
    assert "line break" in rows[attacks["a CRLF in a header"]["id"]]["reason"]
    assert "is not an HTTP method" in rows[attacks["a CRLF in the method"]["id"]]["reason"]
    assert {json.loads(line)["event_id"] for line in dead.read_text().splitlines()} == {
        e["id"] for e in attacks.values()
    }
    bad_path = replay(env, "--ids", str(ids_file(tmp_path, [xml], "x.ndjson")), "--target", box.url, "--yes",
                      "--set", "a b=1", "--format", "ndjson", "--dead-letter", str(dead))  # fmt: skip
    [row] = [json.loads(line) for line in bad_path.stdout.splitlines()]
    assert row["status"] == "failed" and "cannot be an XML element path" in row["reason"]
    assert "Traceback" not in bad_path.output


def test_kill_9_at_any_moment_then_any_number_of_reruns_posts_each_lead_at_most_once_and_lists_the_rest(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path
) -> None:
    """A target firehose cannot ask (not LeadConduit): what is in doubt stays in doubt, listed, never re-sent."""
    events = sources(box)[:40]
    ids = ids_file(tmp_path, events)

    def slow(captured: Captured) -> tuple[int, dict[str, str], bytes]:
        time.sleep(0.05)
        return 201, {"Content-Type": "application/json"}, b'{"outcome":"success","lead":{"id":"n"}}'

    with CaptureServer(answer=slow) as flow:
        args = ["--ids", str(ids), "--target", flow.url, "--yes", "--format", "ndjson", "--concurrency", "3"]
        for kill_after in (0, 1, 4, 9):  # right at the start, then at different points of the run
            process = run(env, *args)
            deadline = time.monotonic() + 30
            start = len(flow.requests)
            while len(flow.requests) - start < kill_after and time.monotonic() < deadline:
                time.sleep(0.002)
            process.send_signal(signal.SIGKILL)
            process.communicate()
        for _ in range(3):
            final = replay(env, *args)
        time.sleep(0.2)
        bodies = Counter(c.body for c in flow.requests)
        assert max(bodies.values()) == 1, "no lead posted twice"
        rows = [json.loads(line) for line in final.stdout.splitlines()]
        in_doubt = {r["event_id"] for r in rows if r["status"] == "unknown" and "without an answer" in r["reason"]}
        never = {e["id"] for e in events if e["request"]["body"].encode() not in bodies}
        assert never <= in_doubt, "every lead not received is listed as in doubt"
        assert len(in_doubt) <= 4 * 3, "at most --concurrency leads in doubt per kill"


# -- found by a hostile review: each a test first -----------------------------------------------------------
def test_machines_sharing_a_ledger_never_repost_the_leads_each_others_replays_made(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path
) -> None:
    """Machine A's replays make new source events that match the same selection (no --end: up to now). B and C,
    with ledgers of their own but one in the store, know them for replays by their request."""
    wanted = failed_sources(box)
    ledger = f"file://{tmp_path / 'ledger'}"
    args = ["--from-api", "--start", "2026-11-14", "--outcome", "error,failure", "--target", box.url, "--yes"]
    for machine in ("a", "b", "c"):
        result = replay({**env, "FIREHOSE_STATE": str(tmp_path / f"{machine}.sqlite")}, *args, "--ledger", ledger)
        assert result.exit_code == ExitCode.OK, result.stderr
    assert len(received(box)) == len(wanted), "each lead once, the replays' own leads never"
    each_once(box, wanted)
    # One machine with a ledger of its own (the store's not given): it sends the originals (its ledger has never
    # seen them) and then never the new events those replays made, run after run.
    for _ in range(3):
        alone = replay(env, *args, "--format", "ndjson")
        assert alone.exit_code == ExitCode.OK, alone.stderr
    assert len(received(box)) == 2 * len(wanted)


def test_a_claim_in_flight_is_never_settled_or_retaken_by_another_machine_whatever_the_flags(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path
) -> None:
    wanted = failed_sources(box)
    ledger = f"file://{tmp_path / 'ledger'}"
    common = ["--from-api", *WINDOW, "--outcome", "error,failure", "--target", box.url, "--yes", "--ledger", ledger,
              "--timeout", "2", "--max-attempts", "1"]  # fmt: skip
    box.sandbox.faults.latency_ms = 900  # each of A's requests is in flight for about a second
    slow = run({**env, "FIREHOSE_STATE": str(tmp_path / "a.sqlite")}, *common, "--rate", "3/s", "--concurrency", "8")
    deadline = time.monotonic() + 30
    while not list((tmp_path / "ledger").glob("*/000001.claim.json")) and time.monotonic() < deadline:
        time.sleep(0.01)
    eager = replay(
        {**env, "FIREHOSE_STATE": str(tmp_path / "b.sqlite")}, *common, "--settle-after", "0s", "--retry-unknown",
        "--format", "ndjson",
    )  # fmt: skip
    slow.communicate(timeout=120)
    assert eager.exit_code in (ExitCode.OK, ExitCode.DIFFERENCES), eager.stderr
    assert "being sent right now by run" in eager.stdout, "B met A's claims in flight and left them alone"
    each_once(box, wanted)
    assert len(received(box)) == len(wanted)


def test_a_lead_whose_answer_was_lost_is_settled_and_its_new_event_is_never_replayed(
    box: RunningSandbox, env: dict[str, str]
) -> None:
    """A gateway in front of LeadConduit that forwards every submit and answers 502: every lead is taken and
    every answer lost. Reruns settle each one through /events and never post the replays' own new events."""
    import httpx

    def gateway(captured: Captured) -> tuple[int, dict[str, str], bytes]:
        answer = httpx.request(captured.method, box.url + captured.path, headers=captured.headers,
                               content=captured.body, timeout=30)  # fmt: skip
        if captured.path.startswith("/flows/"):
            return 502, {}, b"bad gateway"
        return answer.status_code, {"Content-Type": answer.headers.get("Content-Type", "")}, answer.content

    wanted = failed_sources(box)
    with CaptureServer(answer=gateway) as front:
        through = {**env, "LEADCONDUIT_URL": front.url}
        args = ["--from-api", "--start", "2026-11-14", "--outcome", "error,failure", "--yes", "--format", "ndjson"]
        first = replay(through, *args)
        assert first.exit_code == ExitCode.DIFFERENCES and len(received(box)) == len(wanted)
        for _ in range(3):
            again = replay(through, *args, "--settle-after", "0s")
            assert again.exit_code == ExitCode.OK, again.stderr
        assert len(received(box)) == len(wanted), "no rerun posted a lead again, nor a replay's own lead"
        each_once(box, wanted)


def test_the_targets_own_words_never_carry_a_credential_or_the_lead_into_files(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path
) -> None:
    [event] = failed_sources(box)[:1]
    email = event["vars"]["lead"].get("email") or "nobody@example.org"
    event = hostile(event, uri=event["request"]["uri"] + f"?email={email}")

    def echo(captured: Captured) -> tuple[int, dict[str, str], bytes]:
        said = f"refused {captured.headers.get('Authorization')} for {captured.path}"
        return 400, {"Content-Type": "text/plain"}, said.encode()

    with CaptureServer(answer=echo) as target:
        result = replay({**env, "SOURCE_KEY": "TOPSECRET-SOURCE-KEY"}, "--ids", str(ids_file(tmp_path, [event])),
                        "--target", target.url, "--yes", "--source-api-key-env", "SOURCE_KEY",
                        "--report", str(tmp_path / "r.json"), "--format", "ndjson")  # fmt: skip
        assert target.requests and result.exit_code == ExitCode.DIFFERENCES
    import base64

    token = base64.b64encode(b"API:TOPSECRET-SOURCE-KEY").decode()
    files = [tmp_path / "r.json", tmp_path / "replay-dead-letter.ndjson", Path(env["FIREHOSE_STATE"])]
    for text in (result.stdout, result.stderr, *(f.read_text(errors="replace") for f in files)):
        assert token not in text and "TOPSECRET" not in text
    assert email not in result.stdout and email not in (tmp_path / "r.json").read_text()


def test_a_password_in_a_stored_uri_with_no_host_is_never_printed(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path
) -> None:
    [event] = failed_sources(box)[:1]
    event = hostile(event, uri="https://vendor:HUNTER2-PASSWORD@:443/flows/x/sources/y/submit")
    ids = ids_file(tmp_path, [event])
    for extra in (["--dry-run"], ["--yes", "--report", str(tmp_path / "r.json")]):
        result = replay(env, "--ids", str(ids), *extra)
        assert "HUNTER2" not in result.output and "names host" in result.output
    assert "HUNTER2" not in (tmp_path / "r.json").read_text() + (tmp_path / "replay-dead-letter.ndjson").read_text()


def test_a_line_of_ids_that_cannot_be_read_fails_alone(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path
) -> None:
    [good] = failed_sources(box)[:1]
    ids = tmp_path / "ids.ndjson"
    ids.write_text('{"event_id": "\\ud800"\n' + json.dumps({"event": good}) + "\n[1, 2]\n")
    result = replay(env, "--ids", str(ids), "--target", box.url, "--yes")
    assert result.exit_code == ExitCode.ARCHIVE and "1 sent" in result.stderr
    assert "--ids line 1" in result.stderr and "--ids line 3" in result.stderr
    assert len(received(box)) == 1


def test_a_target_that_trickles_its_answer_is_cut_at_the_timeout_and_left_in_doubt(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path
) -> None:
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def trickle() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 1000\r\n\r\n")
        with contextlib.suppress(OSError):
            for _ in range(100):
                conn.sendall(b" ")
                time.sleep(0.3)
        conn.close()

    import contextlib

    threading.Thread(target=trickle, daemon=True).start()
    [event] = failed_sources(box)[:1]
    started = time.monotonic()
    result = replay(env, "--ids", str(ids_file(tmp_path, [event])), "--target", f"http://127.0.0.1:{listener.getsockname()[1]}",
                    "--yes", "--timeout", "1", "--format", "ndjson")  # fmt: skip
    listener.close()
    assert time.monotonic() - started < 10, "one deadline for the whole answer, not per read"
    [row] = [json.loads(line) for line in result.stdout.splitlines()]
    assert row["status"] == "unknown" and "no whole answer within --timeout 1 s" in row["reason"]
