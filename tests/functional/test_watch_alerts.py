"""Issue 15, items 2 and 4: the watch's alerts beyond stdout (``--alert-url``, ``--alert-command``) and its log
(``--log-format``). A webhook on a local ``http.server`` thread gets every alert with the documented body; one that
hangs holds up no poll; one that fails and then recovers gets the alert after retries; a ``kill -9`` before
delivery and a restart deliver it still, with the same ``id``; a command gets each alert as JSON on stdin; json log
lines parse; a secret in the webhook's URL shows nowhere.

The alerts come quickly and for sure: the watch looks in an empty ``--archive`` for events of the test's own
sandbox that ended long ago, so every one is ``late`` at the first poll."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from firehose.ids import seconds_of
from firehose.sandbox import Targets
from tests.conftest import API_KEY, UNTIL, RunningSandbox, start_sandbox, stop_sandbox
from tests.functional.clirun import Run, environ, invoke, process_env, run_process, spawn
from tests.functional.test_watch import wait_for


class Webhook:
    """A webhook receiver: records each POST (headers, JSON body) and answers as ``mode`` says: ``ok`` (204),
    ``fail`` (503), ``refuse`` (400), ``hang`` (holds the request until closed); ``fail_first`` 503s answer the
    first requests whatever the mode."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.fail_first = 0
        self.requests: list[tuple[dict[str, str], bytes, str]] = []
        self.taken: list[dict[str, Any]] = []
        """The bodies of the requests answered 2xx."""
        self.lock = threading.Lock()
        self.released = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with hook.lock:
                    hook.requests.append(({k.lower(): v for k, v in self.headers.items()}, body, self.path))
                    failing = len(hook.requests) <= hook.fail_first
                    mode = "fail" if failing else hook.mode
                if mode == "hang":
                    hook.released.wait(60)
                    return
                status = {"ok": 204, "fail": 503, "refuse": 400}[mode]
                if status == 204:
                    with hook.lock:
                        hook.taken.append(json.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """Each test's own: a watch from ``START`` to now sees every lead made since, and the shared sandbox takes
    leads other tests submit, late a second after (a second run found them where a test expects nothing new)."""
    running, server = start_sandbox(Targets(directory=tmp_path_factory.mktemp("alerts")))
    yield running
    stop_sandbox(server, running)


@pytest.fixture()
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


START = ""
"""Where each watch begins: the second of the sixth-last seeded event (``seeded_start``), so a few events are late
at the first poll."""


@pytest.fixture(autouse=True)
def seeded_start(sandbox: RunningSandbox) -> None:
    global START
    seeded = [event["id"] for event in sandbox.events(sort="desc", limit=6, end=UNTIL.isoformat())]
    START = datetime.fromtimestamp(seconds_of(seeded[-1]), tz=UTC).isoformat()


def watch_args(tmp_path: Path, *extra: str) -> list[str]:
    empty = tmp_path / "empty-archive"
    empty.mkdir(exist_ok=True)
    return ["watch", "--start", START, "--deadline", "1s", "--archive", empty.as_uri(), *extra]


def env_for(sandbox: RunningSandbox, tmp_path: Path) -> dict[str, str]:
    return process_env(LEADCONDUIT_API_KEY=API_KEY, LEADCONDUIT_URL=sandbox.url,
                       FIREHOSE_STATE=str(tmp_path / "state.sqlite"))  # fmt: skip


def alerts_of(run: Run) -> list[dict[str, Any]]:
    return [json.loads(line) for line in run.stdout.splitlines()]


def test_a_webhook_gets_every_alert_with_the_documented_body(
    sandbox: RunningSandbox, tmp_path: Path, webhook: Webhook
) -> None:
    run = run_process([*watch_args(tmp_path, "--once", "--alert-url", webhook.url)], env_for(sandbox, tmp_path),
                      tmp_path)  # fmt: skip
    assert run.code == 1, run.stderr  # events late
    alerts = alerts_of(run)
    assert alerts and all(a["alert"] == "late" for a in alerts)
    assert [a["id"] for a in alerts] == sorted({a["id"] for a in alerts}), "ids unique, in order"
    assert webhook.taken == alerts, "every alert, in order, the same body as on stdout"
    headers, _, path = webhook.requests[0]
    assert path == "/hook" and headers["content-type"] == "application/json"
    assert headers["user-agent"].startswith("firehose/") and "authorization" not in headers
    assert set(alerts[0]) >= {"id", "alert", "at", "event_id", "lead_id", "destination", "key", "deadline"}
    again = run_process([*watch_args(tmp_path, "--once", "--alert-url", webhook.url)], env_for(sandbox, tmp_path),
                        tmp_path)  # fmt: skip
    assert again.stdout == "" and len(webhook.taken) == len(alerts), "delivered alerts are not sent again"


def test_a_hanging_webhook_holds_up_no_poll(sandbox: RunningSandbox, tmp_path: Path, webhook: Webhook) -> None:
    webhook.mode = "hang"
    env = env_for(sandbox, tmp_path)
    once = run_process([*watch_args(tmp_path, "--once", "--alert-url", webhook.url, "--alert-timeout", "1s")], env,
                       tmp_path)  # fmt: skip
    assert once.code == 1 and alerts_of(once), once.stderr  # --once ends: 2 x --alert-timeout of grace
    assert "kept for the next run" in once.stderr and not webhook.taken
    hung = len(webhook.requests)
    # A watch that goes on: a lead made now is late a second later, and told on stdout, while the webhook hangs.
    args = watch_args(tmp_path, "--interval", "0.3s", "--alert-url", webhook.url, "--alert-timeout", "30s")
    process = spawn(args, env, tmp_path)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        wait_for(lambda: len(webhook.requests) > hung, 10, "a request to the hanging webhook")
        made = sandbox.sandbox.live.make(1)
        fresh = {event["id"] for event in made}
        wait_for(lambda: fresh & {json.loads(line).get("event_id") for line in list(lines)}, 15,
                 "a late alert for the new lead while the webhook hangs")  # fmt: skip
        assert len(webhook.requests) == hung + 1 and not webhook.taken, "the first alert is still in its hung request"
    finally:
        process.send_signal(signal.SIGTERM)
        webhook.mode = "ok"
        webhook.released.set()  # the hung request ends; its retry is taken
        _, err = process.communicate(timeout=90)
    assert process.returncode == 0 and "Traceback" not in err, err


def test_a_failing_webhook_gets_the_alert_after_retries(
    sandbox: RunningSandbox, tmp_path: Path, webhook: Webhook
) -> None:
    webhook.fail_first = 2  # 503, 503, then taken: within the policy's attempts
    run = run_process([*watch_args(tmp_path, "--once", "--alert-url", webhook.url, "--alert-timeout", "3s")],
                      env_for(sandbox, tmp_path), tmp_path)  # fmt: skip
    alerts = alerts_of(run)
    assert webhook.taken == alerts and len(webhook.requests) == len(alerts) + 2, run.stderr
    assert f"{webhook.url.split('/hook')[0]}): failing" not in run.stderr, "retries that worked are no failure"
    # Refused for good (a 400): said once per alert, and passed over, not sent again.
    webhook.mode, webhook.requests, webhook.fail_first = "refuse", [], 0
    state = tmp_path / "refused.sqlite"
    refused = run_process([*watch_args(tmp_path, "--once", "--alert-url", webhook.url)],
                          {**env_for(sandbox, tmp_path), "FIREHOSE_STATE": str(state)}, tmp_path)  # fmt: skip
    said = [line for line in refused.stderr.splitlines() if "refused, not sent again: HTTP 400" in line]
    assert len(said) == len(alerts_of(refused)) == len(webhook.requests) > 0, refused.stderr


def test_alerts_not_delivered_before_a_kill_9_are_delivered_after_the_restart(
    sandbox: RunningSandbox, tmp_path: Path, webhook: Webhook
) -> None:
    webhook.mode = "fail"  # the webhook is down: the alerts wait in the outbox
    env = env_for(sandbox, tmp_path)
    process = spawn(watch_args(tmp_path, "--interval", "0.3s", "--alert-url", webhook.url), env, tmp_path)
    try:
        wait_for(lambda: len(webhook.requests) >= 2, 15, "attempts at the failing webhook")
    finally:
        process.send_signal(signal.SIGKILL)
        out, err = process.communicate(timeout=30)
    first = [json.loads(line) for line in out.splitlines()]
    assert first and not webhook.taken, err
    webhook.mode = "ok"
    again = run_process([*watch_args(tmp_path, "--once", "--alert-url", webhook.url)], env, tmp_path)
    assert again.stdout == "", "stdout had them all before the kill"
    assert {a["id"] for a in webhook.taken} == {a["id"] for a in first}
    assert sorted(webhook.taken, key=lambda a: a["id"]) == sorted(first, key=lambda a: a["id"]), "same bodies, ids"


def test_an_alert_command_gets_each_alert_as_json_on_stdin(sandbox: RunningSandbox, tmp_path: Path) -> None:
    received, environment = tmp_path / "received.ndjson", tmp_path / "environment.json"
    script = tmp_path / "take.py"
    script.write_text(
        f"import json, os, sys\nopen({str(received)!r}, 'a').write(sys.stdin.read() + '\\n')\n"
        f"open({str(environment)!r}, 'w').write(json.dumps(dict(os.environ)))\n"
    )
    command = f"{sys.executable} {script}"
    env = {**env_for(sandbox, tmp_path), "FIREHOSE_ALERT_URL": "http://user:hook-secret@127.0.0.1:9/x"}
    run = run_process(watch_args(tmp_path, "--once", "--alert-command", command), env, tmp_path)
    alerts = alerts_of(run)
    assert alerts and [json.loads(line) for line in received.read_text().splitlines()] == alerts, run.stderr
    # The watch's environment, but not LeadConduit's API key nor the webhooks' URLs (credentials it needs not).
    given = json.loads(environment.read_text())
    assert given["FIREHOSE_STATE"] == env["FIREHOSE_STATE"] and given["PATH"] == env["PATH"]
    assert "LEADCONDUIT_API_KEY" not in given and "FIREHOSE_ALERT_URL" not in given
    assert API_KEY not in environment.read_text() and "hook-secret" not in environment.read_text()
    # A command that fails for good: one line per alert, which is then passed over.
    state = {"FIREHOSE_STATE": str(tmp_path / "failing.sqlite")}
    failing = f"{sys.executable} -c \"import sys; sys.stdin.read(); print('no route', file=sys.stderr); sys.exit(3)\""
    run = run_process(watch_args(tmp_path, "--once", "--alert-command", failing), {**env_for(sandbox, tmp_path),
                      **state}, tmp_path)  # fmt: skip
    said = [line for line in run.stderr.splitlines() if "refused, not sent again: exit 3: no route" in line]
    assert len(said) == len(alerts_of(run)) > 0, run.stderr
    # (A program that is not there is a usage error: the bad-input corpus has it.)


def test_log_format_json_lines_parse(sandbox: RunningSandbox, tmp_path: Path) -> None:
    env = env_for(sandbox, tmp_path)
    run = run_process(["--log-format", "json", *watch_args(tmp_path, "--once")], env, tmp_path)
    lines = [json.loads(line) for line in run.stderr.splitlines()]
    assert lines and all({"time", "level", "message"} <= set(line) for line in lines), run.stderr
    late = [line for line in lines if line.get("alert") == "late"]
    assert len(late) == len(alerts_of(run)) and all(line["level"] == "warning" for line in late)
    assert any(line.get("event") == "poll" and line["new_events"] > 0 for line in lines)
    text = run_process(watch_args(tmp_path, "--once"), env, tmp_path)  # nothing new: no alert
    assert "late:" not in text.stderr and "firehose watch: 1 poll" in text.stderr, text.stderr
    here = environ(LEADCONDUIT_API_KEY=API_KEY, LEADCONDUIT_URL=sandbox.url, FIREHOSE_STATE=env["FIREHOSE_STATE"])
    bad = invoke(["watch", "--log-format", "json", "--interval", "soon"], here)  # in this process: quicker
    (line,) = [json.loads(line) for line in bad.stderr.splitlines()]
    assert bad.code == 2 and line["level"] == "error" and "--interval" in line["message"]
    from_env = invoke(watch_args(tmp_path, "--once"), {**here, "FIREHOSE_LOG_FORMAT": "json"})
    assert from_env.stderr and all(json.loads(line) for line in from_env.stderr.splitlines())


def test_a_secret_in_the_webhook_url_shows_nowhere(sandbox: RunningSandbox, tmp_path: Path, webhook: Webhook) -> None:
    user, password, token = "hookuser", "hunter2-pass-9c1", "tok-secret-77aa"
    url = webhook.url.replace("http://", f"http://{user}:{password}@") + f"?token={token}"
    webhook.fail_first = 1
    webhook.mode = "refuse"  # a retry, then refused for good: messages that name the webhook
    run = run_process(["-v", *watch_args(tmp_path, "--once", "--alert-url", url, "--alert-timeout", "2s")],
                      env_for(sandbox, tmp_path), tmp_path)  # fmt: skip
    assert "refused, not sent again" in run.stderr and "127.0.0.1" in run.stderr, run.stderr
    everything = run.stdout + run.stderr + json.dumps([json.loads(body) for _, body, _ in webhook.requests])
    for secret in (password, token, API_KEY, base64.b64encode(f"{user}:{password}".encode()).decode()):
        assert secret not in everything
    headers, _, path = webhook.requests[0]
    assert headers["authorization"] == "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    assert path == f"/hook?token={token}", "the webhook itself gets its own URL"
    shown = subprocess.run(
        [sys.executable, "-m", "firehose", "watch", "--alert-url", "ftp://u:pw-secret-1@x/", "--once"],
        env=env_for(sandbox, tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 2 and "pw-secret-1" not in shown.stderr and "--alert-url" in shown.stderr


def test_a_place_failing_for_long_is_said_once_and_gets_every_alert_in_order_when_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The courier itself, with a place that fails its first rounds of retries: one line when it starts failing,
    one when it delivers again, and the alerts kept meanwhile come in order, none twice, none lost."""
    from firehose.state import StateDB
    from firehose.watching import delivery
    from firehose.watching.ledger import WatchLedger

    monkeypatch.setattr(delivery, "RETRY_LATER_SECONDS", 0.05)

    class Flaky:
        key, label, name = "test:flaky", "flaky-1", "flaky place"

        def __init__(self) -> None:
            self.tries, self.taken = 0, list[dict[str, Any]]()

        def send(self, body: bytes, sleep: Any) -> delivery.Outcome:
            self.tries += 1
            if self.tries <= 5:  # five rounds of retries spent
                return delivery.Outcome(False, reason="HTTP 503")
            self.taken.append(json.loads(body))
            return delivery.Outcome(True)

        def close(self) -> None:
            pass

    path = tmp_path / "state.sqlite"

    @contextlib.contextmanager
    def own() -> Iterator[WatchLedger]:
        with StateDB(path) as state:
            yield WatchLedger(state, "http://api")

    place = Flaky()
    with own() as ledger:
        ledger.open_sinks(["stdout", place.key])
        ledger.settle(done=[], made_late=[], rechecked=[], alerts=[{"alert": "late", "n": n} for n in range(3)])
        couriers = delivery.AlertDelivery([place], own)
        told = logging.getLogger("firehose.watching.delivery")  # its own handler: "firehose" may not propagate
        said: list[str] = []
        handler = logging.Handler()
        handler.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
        told.addHandler(handler)
        monkeypatch.setattr(told, "level", logging.INFO)
        try:
            couriers.start()
            wait_for(lambda: len(place.taken) == 3, 10, "every alert once the place is back")
            couriers.close(5)
        finally:
            told.removeHandler(handler)
        assert [a["n"] for a in place.taken] == [0, 1, 2] and [a["id"] for a in place.taken] == [1, 2, 3]
        assert said == ["flaky place: failing (HTTP 503); 3 alerts kept in the state database, tried again every "
                        "0.05 s", "flaky place: delivering alerts again"], said  # fmt: skip
        assert ledger.waiting(place.key) == 0 and len(ledger.undelivered("stdout")) == 3, "stdout's are its own"


def test_log_format_json_holds_for_every_command_s_problem_lines(tmp_path: Path) -> None:
    """Not the watch alone: ``archive cat``'s line per object it could not read, its count and the error line."""
    lead, event = "6920f1a0aaaaaaaaaaaaaaaa", "6920f1a1bbbbbbbbbbbbbbbb"
    (tmp_path / "store" / lead).mkdir(parents=True)
    (tmp_path / "store" / lead / f"{event}.json").write_bytes(b"\x00\xff junk")
    run = invoke(["archive", "cat", (tmp_path / "store").as_uri(), f"{lead}/{event}.json", "--log-format", "json"],
                 environ())  # fmt: skip
    lines = [json.loads(line) for line in run.stderr.splitlines()]
    assert run.code == 5 and len(lines) == 2 and all(line["level"] == "error" for line in lines), run.stderr
    assert event in lines[0]["message"] and "could not be read" in lines[1]["message"]
