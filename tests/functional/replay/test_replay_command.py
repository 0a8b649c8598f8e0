"""`firehose replay` against the sandbox as the target (it answers outcomes, 429 with Retry-After, 5xx and
latency) and a bare socket server for the ambiguous cases. Every test checks what the target received."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from firehose.archive import StoreUrl, open_store
from firehose.errors import ExitCode
from tests.conftest import (
    API_KEY,
    S3_CREDENTIAL,
    UNTIL,
    RunningSandbox,
    firehose_written,
    stack_config,
    start_sandbox,
    stop_sandbox,
)
from tests.functional.replay.support import WINDOW, body_of, failed_sources, received, replay


def test_sends_each_failed_lead_once_byte_identical_without_credentials_and_a_rerun_sends_nothing(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path
) -> None:
    wanted = failed_sources(box)
    assert len(wanted) >= 5
    first = replay(
        env, "--from-api", *WINDOW, "--outcome", "error,failure", "--target", box.url, "--yes",
        "--report", str(tmp_path / "r.json"), "--format", "ndjson",
    )  # fmt: skip
    assert first.exit_code == ExitCode.OK, first.stderr
    got = received(box)
    assert sorted(body_of(s) for s in got) == sorted(e["request"]["body"].encode() for e in wanted)
    for submission in got:
        names = {name.lower() for name in submission["headers"]}
        assert "authorization" not in names and "x-forwarded-for" not in names
        assert API_KEY not in json.dumps(submission)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["schema"] == "firehose.replay/1" and report["counts"] == {"sent": len(wanted)}
    original = Counter(e["outcome"] for e in wanted)
    assert sum(report["pairs"].values()) == len(wanted)
    assert {pair.split(" → ")[0] for pair in report["pairs"]} == set(original)
    new_leads = {r["new_lead_id"] for r in report["results"]}
    assert new_leads == {s["lead_id"] for s in got}, "the new lead ids come from the target's answers"

    again = replay(env, "--from-api", *WINDOW, "--outcome", "error,failure", "--target", box.url, "--yes")
    assert again.exit_code == ExitCode.OK
    assert len(received(box)) == len(wanted), "a rerun posts nothing already sent"
    assert f"0 sent, 0 failed, 0 unknown, {len(wanted)} skipped" in again.stderr

    forced = replay(env, "--from-api", *WINDOW, "--outcome", "error,failure", "--target", box.url, "--yes", "--force")
    assert forced.exit_code == ExitCode.OK and len(received(box)) == 2 * len(wanted)


def test_edits_reach_the_target_in_json_form_and_xml(box: RunningSandbox, env: dict[str, str]) -> None:
    result = replay(
        env, "--from-api", *WINDOW, "--target", box.url, "--yes", "--max", "40",
        "--set", "state=ZZ", "--unset", "email", "--mark-test",
    )  # fmt: skip
    assert result.exit_code == ExitCode.OK, result.stderr
    kinds: Counter[str] = Counter()
    for submission in received(box):
        body = body_of(submission).decode()
        kind = submission["content_type"].split("/")[-1]
        kinds[kind] += 1
        if kind == "json":
            parsed = json.loads(body)
            assert parsed["state"] == "ZZ" and parsed["is_test"] is True and "email" not in parsed
        elif kind == "x-www-form-urlencoded":
            assert "state=ZZ" in body and "is_test=true" in body and "email=" not in body
        else:
            assert "<state>ZZ</state>" in body and "<is_test>true</is_test>" in body and "<email>" not in body
    assert set(kinds) == {"json", "x-www-form-urlencoded", "xml"}, kinds
    assert len(received(box)) == 40, "--max caps the run"


def test_dry_run_sends_nothing_and_redacts_lead_data_unless_asked(box: RunningSandbox, env: dict[str, str]) -> None:
    wanted = failed_sources(box)
    email = next(e["vars"]["lead"]["email"] for e in wanted if e["vars"]["lead"].get("email"))
    args = ["--from-api", *WINDOW, "--outcome", "error,failure", "--target", box.url, "--dry-run", "--mark-test"]
    hidden = replay(env, *args)
    assert hidden.exit_code == ExitCode.OK and received(box) == []
    assert email not in hidden.stdout and "body + is_test: true" in hidden.stdout
    assert f"would send {len(wanted)} leads" in hidden.stderr and f"{len(wanted)} differ" in hidden.stderr
    shown = replay(env, *args, "--include-pii", "--set", "email=new@example.org")
    assert email in shown.stdout and "new@example.org" in shown.stdout
    structured = replay(env, *args, "--format", "ndjson")
    rows = [json.loads(line) for line in structured.stdout.splitlines()]
    added = [{"change": "added", "field": "is_test", "to": "true"}]
    assert len(rows) == len(wanted) and any(r["body"]["fields"] == added for r in rows)
    # A lead that already was a test lead keeps its body byte for byte.
    assert all(r["body"]["fields"] == added or (r["body"]["identical"] and not r["body"]["fields"]) for r in rows)
    assert received(box) == []


def test_a_source_api_key_goes_to_the_target_only_when_asked(box: RunningSandbox, env: dict[str, str]) -> None:
    result = replay(
        {**env, "SOURCE_KEY": "partner-key-1"}, "--from-api", *WINDOW, "--outcome", "error",
        "--target", box.url, "--yes", "--source-api-key-env", "SOURCE_KEY",
    )  # fmt: skip
    assert result.exit_code == ExitCode.OK and received(box)
    for submission in received(box):
        assert submission["headers"]["Authorization"] == "Basic " + base64.b64encode(b"API:partner-key-1").decode()
    assert "partner-key-1" not in result.stdout + result.stderr
    unset = replay(env, "--from-api", *WINDOW, "--target", box.url, "--source-api-key-env", "NOT_SET_ANYWHERE")
    assert unset.exit_code == ExitCode.CONFIG and "NOT_SET_ANYWHERE" in unset.stderr


def test_429_and_503_are_retried_after_retry_after_and_counted(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path
) -> None:
    event = failed_sources(box)[0]
    ids = tmp_path / "one.ndjson"
    ids.write_text(json.dumps({"event": event}) + "\n")  # the event itself: no API call takes the faults
    box.sandbox.faults.next_statuses = [429, 503]
    box.sandbox.faults.retry_after_seconds = 1
    started = time.monotonic()
    result = replay(env, "--ids", str(ids), "--target", box.url, "--yes", "--format", "ndjson")
    assert result.exit_code == ExitCode.OK, result.stderr
    [row] = [json.loads(line) for line in result.stdout.splitlines()]
    assert row["status"] == "sent" and row["attempts"] == 3 and row["http_status"] == 201
    assert len(received(box)) == 1 and time.monotonic() - started >= 1.0, "waited at least Retry-After"


def test_permanent_failures_go_to_a_dead_letter_file_that_replay_takes_back(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path
) -> None:
    dead = tmp_path / "dead.ndjson"
    nowhere = f"{box.url}/flows/{'0' * 24}/sources/{'1' * 24}/submit"  # the sandbox answers 404
    bad = replay(
        env, "--from-api", *WINDOW, "--outcome", "error", "--target", nowhere, "--yes", "--dead-letter", str(dead)
    )
    assert bad.exit_code == ExitCode.DIFFERENCES
    lines = [json.loads(line) for line in dead.read_text().splitlines()]
    assert lines and all(line["status"] == "failed" and line["event"]["type"] == "source" for line in lines)
    good = replay(env, "--ids", str(dead), "--target", box.url, "--yes", "--dead-letter", str(dead))
    assert good.exit_code == ExitCode.OK, good.stderr
    assert len(received(box)) == len(lines)
    # Sent now: out of the dead-letter file, which kept them after they were replayed (a tryout's complaint).
    assert dead.read_text() == "" and f"{len(lines)} lead" in good.stderr and "taken out of" in good.stderr
    assert stat.S_IMODE(dead.stat().st_mode) == 0o600


def test_a_named_event_of_another_type_is_refused_and_nothing_is_sent(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path
) -> None:
    events = box.sandbox_events()
    source = next(e for e in events if e["type"] == "source")
    recipient = next(e for e in events if e["type"] == "recipient")
    ids = tmp_path / "ids.txt"
    ids.write_text(f"{source['id']}\n{recipient['id']}\n")
    result = replay(env, "--ids", str(ids), "--target", box.url, "--yes")
    assert result.exit_code == ExitCode.USAGE
    assert f"event {recipient['id']} (--ids line 2) is a recipient event" in result.stderr
    assert received(box) == []


def test_over_confirm_over_it_asks_and_without_a_terminal_refuses(box: RunningSandbox, env: dict[str, str]) -> None:
    for fmt in ("text", "json"):
        result = replay(env, "--from-api", *WINDOW, "--target", box.url, "--confirm-over", "3", "--format", fmt)
        assert result.exit_code == ExitCode.USAGE and "over --confirm-over 3" in result.stderr
        assert "--yes" in result.stderr
        assert result.stdout == "", "refused before sending: no table header, no half a JSON document"
    assert received(box) == []


def test_from_an_s3_archive(stack: None, tmp_path: Path) -> None:
    from firehose.sandbox import Targets as StoreTargets
    from tests.conftest import S3_CREDENTIAL as CREDENTIAL

    running, server = start_sandbox(StoreTargets(s3=CREDENTIAL, create_buckets=True), seed=9, leads=30, days=3)
    try:
        firehose_written(running, 60)
        config = stack_config(tmp_path / "f.toml")
        env = {"FIREHOSE_CONFIG": str(config), "FIREHOSE_STATE": str(tmp_path / "s.sqlite")}
        archived = [
            e
            for e in running.sandbox_events()
            if e["type"] == "source" and e["vars"]["flow"]["id"] == running.sandbox.flows[0].id
        ]
        url = f"s3://{running.bucket}/{running.sandbox.flows[0].firehose['prefix']}"
        result = replay(env, "--from", url, "--target", running.url, "--yes", "--format", "ndjson")
        assert result.exit_code == ExitCode.OK, result.stderr
        assert sorted(base64.b64decode(s["body_base64"]) for s in running.sandbox.submissions) == sorted(
            e["request"]["body"].encode() for e in archived
        )
        store = open_store(StoreUrl("s3", running.bucket, ""), s3=S3_CREDENTIAL)
        store.close()
    finally:
        stop_sandbox(server, running)


# -- the ambiguous cases, on a bare socket server -----------------------------------------------------------
class BareServer:
    """Accepts connections and reads each request; then either never answers (``silent``) or sends half an
    answer and closes (``half``). Counts the requests it read."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.requests = 0
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._held: list[socket.socket] = []
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ),
                0,
            )
            while len(rest) < length:
                rest += conn.recv(65536)
            self.requests += 1
            if self.mode == "half":
                conn.sendall(b'HTTP/1.1 201 Created\r\nContent-Length: 100\r\n\r\n{"outc')
                conn.close()
            else:
                self._held.append(conn)

    def close(self) -> None:
        self._stop = True
        self._sock.close()
        for conn in self._held:
            conn.close()


@pytest.mark.parametrize("mode", ["silent", "half"])
def test_no_answer_after_sending_is_unknown_and_not_retried_unless_asked(
    box: RunningSandbox, env: dict[str, str], mode: str, tmp_path: Path
) -> None:
    server = BareServer(mode)
    try:
        ids = tmp_path / "two.txt"
        ids.write_text("".join(f"{e['id']}\n" for e in failed_sources(box)[:2]))
        selection = ["--ids", str(ids)]
        args = [*selection, "--target", server.url, "--yes", "--timeout", "1"]
        first = replay(env, *args, "--format", "ndjson")
        assert first.exit_code == ExitCode.DIFFERENCES
        rows = [json.loads(line) for line in first.stdout.splitlines()]
        assert [r["status"] for r in rows] == ["unknown", "unknown"] and server.requests == 2, first.output
        assert all(r["attempts"] == 1 for r in rows)
        again = replay(env, *args)
        assert server.requests == 2 and "0 sent, 0 failed, 2 unknown" in again.stderr, "not sent again by default"
        assert again.exit_code == ExitCode.DIFFERENCES, "leads in doubt keep the run from being clean"
        retried = replay(env, *args, "--retry-unknown", "--max-attempts", "2")
        assert server.requests == 6 and retried.exit_code == ExitCode.DIFFERENCES
    finally:
        server.close()


def test_a_refused_connection_is_retried_then_failed(env: dict[str, str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = replay(
        env, "--from-api", *WINDOW, "--outcome", "error", "--max", "1", "--target", f"http://127.0.0.1:{port}",
        "--yes", "--max-attempts", "2", "--format", "ndjson", "--dead-letter", os.devnull,
    )  # fmt: skip
    [row] = [json.loads(line) for line in result.stdout.splitlines()]
    assert row["status"] == "failed" and row["attempts"] == 2 and "connection refused" in row["reason"]
    assert result.exit_code == ExitCode.DIFFERENCES


def test_kill_9_mid_run_then_the_rerun_posts_every_remaining_lead_exactly_once(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path
) -> None:
    box.sandbox.faults.latency_ms = 150
    wanted = [
        e for e in box.sandbox_events() if e["type"] == "source" and e["id"][:8] <= f"{int(UNTIL.timestamp()):08x}"
    ]
    command = [sys.executable, "-m", "firehose", "replay", "--from-api", *WINDOW, "--target", box.url, "--yes",
               "--concurrency", "2", "--format", "ndjson"]  # fmt: skip
    process = subprocess.Popen(command, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(received(box)) < 6 and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = len(received(box))
    assert 6 <= before < len(wanted), "killed part-way"
    box.sandbox.faults.latency_ms = 0
    rerun = replay(env, "--from-api", *WINDOW, "--target", box.url, "--yes", "--format", "ndjson")
    rows = [json.loads(line) for line in rerun.stdout.splitlines()]
    unknown = {r["event_id"] for r in rows if r["status"] == "unknown" and "in flight" in (r["reason"] or "")}
    bodies = Counter(body_of(s) for s in received(box))
    assert max(bodies.values()) == 1, "no lead posted twice"
    by_event = {e["id"]: e["request"]["body"].encode() for e in wanted}
    missing = [event_id for event_id, body in by_event.items() if body not in bodies]
    assert set(missing) <= unknown, "every lead not received is one the ledger says may have been"
    assert len(unknown) <= 2, "at most the requests in flight (--concurrency 2) are in doubt"


def test_a_dry_run_with_report_writes_the_plan(box: RunningSandbox, env: dict[str, str], tmp_path: Path) -> None:
    wanted = failed_sources(box)
    report = tmp_path / "plan.json"
    result = replay(env, "--from-api", *WINDOW, "--outcome", "error,failure", "--dry-run", "--report", str(report))
    assert result.exit_code == ExitCode.OK and received(box) == []
    plan = json.loads(report.read_text())
    assert plan["dry_run"] is True and plan["would_send"] == len(wanted) and plan["target"].startswith("LeadConduit")
    assert sorted(r["event_id"] for r in plan["results"]) == sorted(e["id"] for e in wanted)
    assert all(r["status"] == "would send" and r["url"].startswith(box.url) for r in plan["results"])
