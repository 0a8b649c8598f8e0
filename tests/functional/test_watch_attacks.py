"""Attacks on issue 15's promises, each one quick and without the sandbox: a json log line for a message no
UTF-8 encoder takes, a webhook whose secret is its path (``https://hooks.example/services/T0/B0/SECRET``)."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import API_KEY, UNTIL, RunningSandbox
from tests.functional.clirun import environ, invoke

PATH_SECRET = "XyZ9sEcReTtOkEn0123abcd"


def test_a_json_log_line_for_a_path_that_is_not_utf_8_is_the_real_error(tmp_path: Path) -> None:
    """A file name from the command line that is not UTF-8 (``\\udcff`` in Python) must not turn the error line
    into an internal error: json log lines stay JSON, the exit status the real one."""
    bad = str(tmp_path / "file") + "/\udcff/state.sqlite"
    (tmp_path / "file").write_text("not a directory")
    run = invoke(["--log-format", "json", "watch", "--url", "http://127.0.0.1:9", "--state", bad, "--once"],
                 environ(LEADCONDUIT_API_KEY="k"))  # fmt: skip
    (line,) = [json.loads(line) for line in run.stderr.splitlines()]
    assert run.code == 3 and "internal error" not in line["message"] and "state database" in line["message"], line
    from firehose.cli import output

    output.set_log_format("json")
    try:
        line = output.log_line('a \udcff\n"b"\x00\u2028\x85', fields={"where": "x\udcfey", "n": 2**70})
    finally:
        output.set_log_format("text")
    said = json.loads(line)
    assert said["message"] == 'a \\udcff\n"b"\x00\u2028\x85' and said["where"] == "x\\udcfey", said
    assert said["n"] == str(2**70) and len(line.splitlines()) == 1, "one line, however a reader splits lines"


class _EchoingHook:
    """A webhook that answers 503 to the first request and then 404, its body quoting the path it was asked for
    (as many servers do)."""

    def __init__(self) -> None:
        self.requests = 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's name
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                hook.requests += 1
                status = 503 if hook.requests == 1 else 404
                body = f"no such hook: {self.path}".encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True

        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T0/B0/{PATH_SECRET}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_webhook_whose_secret_is_its_path_shows_it_nowhere_even_with_v(tmp_path: Path) -> None:
    """The path of a webhook's URL is its credential (Slack, Discord, ...): neither the retry lines (``-v``) nor
    a refusal quoting the server's answer may show it."""
    from firehose.state import StateDB
    from firehose.watching import delivery
    from firehose.watching.ledger import WatchLedger

    hook = _EchoingHook()
    path = tmp_path / "state.sqlite"

    @contextlib.contextmanager
    def own() -> Iterator[WatchLedger]:
        with StateDB(path) as state:
            yield WatchLedger(state, "http://api")

    said: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
    told = logging.getLogger("firehose")
    level = told.level
    told.addHandler(handler)
    told.setLevel(logging.DEBUG)
    try:
        sink = delivery.WebhookSink(hook.url, 1, 2.0)
        with own() as ledger:
            ledger.open_sinks(["stdout", sink.key])
            ledger.settle(done=[], made_late=[], rechecked=[], alerts=[{"alert": "late"}])
            couriers = delivery.AlertDelivery([sink], own)
            couriers.start()
            couriers.close(10)
    finally:
        told.removeHandler(handler)
        told.setLevel(level)
        hook.close()
    assert hook.requests == 2 and any("refused, not sent again: HTTP 404" in line for line in said), said
    assert any("retry in" in line for line in said), said
    assert not [line for line in said if PATH_SECRET in line], said


def test_a_webhook_password_holding_a_slash_is_not_quoted_in_the_usage_error() -> None:
    """``https://bob:s3cr/et@host/``: a URL parser ends the authority at the ``/`` and reads ``s3cr`` as a port;
    its complaint quotes that part of the password."""
    for url in ("https://bob:pw1s3cr/et@hooks.example.com/x", "https://bob:pw1s3cr?et@hooks.example.com/x"):
        run = invoke(["watch", "--alert-url", url, "--once"], environ(LEADCONDUIT_API_KEY="k"))
        assert run.code == 2 and run.stdout == "" and "--alert-url" in run.stderr, run.stderr
        assert "pw1s3cr" not in run.stderr and "et@" not in run.stderr, run.stderr
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_an_alert_command_that_exits_at_once_leaving_a_child_behind_is_taken_once(tmp_path: Path) -> None:
    """A hook that starts something in the background (``notify &``) and exits 0: the child holds the stderr it
    inherited, which is no reason to take the command for hung, kill its child and run it again and again."""
    from firehose.watching.delivery import CommandSink

    ran = tmp_path / "ran"
    command = f"sh -c 'cat >/dev/null; echo ran >> {ran}; sleep 2 & exit 0'"
    outcome = CommandSink(command, 1, 0.5).send(b'{"alert": "late"}', lambda seconds: None)
    assert outcome.taken, outcome
    assert ran.read_text().splitlines() == ["ran"], "run once"


def test_an_internal_error_with_v_shows_its_traceback_without_a_secret_and_as_json_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``-v`` adds the traceback of a bug: its text goes through the credential filter as the one line does, and
    under ``--log-format json`` it is a field of a JSON line, not raw lines among them."""
    from firehose.watching import options

    def bug(self: object) -> None:
        raise RuntimeError("boom at https://bob:pw-in-trace-1@host/x?sig=sig-in-trace-2")

    monkeypatch.setattr(options.WatchOptions, "__post_init__", bug)
    for shape in ("text", "json"):
        run = invoke(["-v", "--log-format", shape, "watch", "--once"], environ(LEADCONDUIT_API_KEY="k"))
        assert run.code == 70 and "Traceback" in run.stderr and "bug" in run.stderr, run.stderr
        assert "pw-in-trace-1" not in run.stderr and "sig-in-trace-2" not in run.stderr, run.stderr
        if shape == "json":
            lines = [json.loads(line) for line in run.stderr.splitlines()]
            assert any("Traceback" in line.get("traceback", "") for line in lines), lines


def test_an_old_leads_event_stored_under_another_spelling_is_found_never_late_nor_written_again(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """Feedback days after its lead: the watch looks for it by itself, not in the listing of recent leads. Stored
    as ``<LEAD>/<EVENT>.json`` (upper case) or ``<lead>/<event>`` (no ``.json``), spellings the firehose's layout
    allows and every other reader of the archive takes, it is there: neither late nor repaired beside itself."""
    from firehose.event import EventView
    from firehose.ids import seconds_of

    recent = sandbox.events(sort="desc", limit=1000, end=UNTIL.isoformat())
    old = [e for e in recent if (lead := EventView(e).lead_id) and seconds_of(e["id"]) - seconds_of(lead) > 7200]
    assert len(old) >= 2, "the sandbox seeds feedback days after its leads"
    first, second = old[-1], old[-2]
    archive = tmp_path / "archive"
    for event, key in ((first, f"{EventView(first).lead_id.upper()}/{first['id'].upper()}.json"),  # type: ignore[union-attr]
                       (second, f"{EventView(second).lead_id}/{second['id']}")):  # fmt: skip
        (archive / key).parent.mkdir(parents=True, exist_ok=True)
        (archive / key).write_text(json.dumps(event))
    start = datetime.fromtimestamp(seconds_of(first["id"]), tz=UTC).isoformat()
    env = environ(LEADCONDUIT_API_KEY=API_KEY, LEADCONDUIT_URL=sandbox.url, FIREHOSE_STATE=str(tmp_path / "s.sqlite"))
    args = ["watch", "--once", "--start", start, "--deadline", "1s", "--repair-after", "1s",
            "--archive", archive.as_uri()]  # fmt: skip
    ours = {first["id"], second["id"]}
    for _ in range(2):  # the second poll repairs what the first found late
        run = invoke(args, env)
        said = [json.loads(line) for line in run.stdout.splitlines()]
        assert not [a for a in said if a.get("event_id") in ours], [a for a in said if a.get("event_id") in ours]
    keys = sorted(str(path.relative_to(archive)) for path in archive.rglob("*") if path.is_file())
    assert len([key for key in keys if any(i in key.lower() for i in ours)]) == 2, keys


def test_a_webhook_url_http_cannot_carry_is_refused_at_the_start_or_sent_percent_encoded() -> None:
    """A space or a control character in ``--alert-url`` is a usage error before the watch starts, not every
    alert refused one by one later; a path in another script than ASCII is sent percent-encoded, as a browser
    sends it."""
    for url in ("http://127.0.0.1:9/a b", "http://127.0.0.1:9/x\r\nX-Evil: 1", "http://127.0.0.1:9/h?q=\x07"):
        run = invoke(["watch", "--alert-url", url, "--once"], environ(LEADCONDUIT_API_KEY="k"))
        assert run.code == 2 and run.stdout == "" and "--alert-url 1" in run.stderr, run.stderr
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    paths: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's name
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            paths.append(self.path)
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        from firehose.watching.delivery import WebhookSink

        sink = WebhookSink(f"http://127.0.0.1:{server.server_address[1]}/hooks/bücher?für=ü", 1, 2.0)
        outcome = sink.send(b"{}", lambda seconds: None)
    finally:
        server.shutdown()
        server.server_close()
    assert outcome.taken and paths == ["/hooks/b%C3%BCcher?f%C3%BCr=%C3%BC"], (outcome, paths)


def test_a_second_watch_on_one_state_database_is_refused_while_the_first_runs(tmp_path: Path) -> None:
    """Two watches on one state database would both write a late pair's repair and both count it: the second
    is refused at once, naming the first, and writes nothing."""
    from firehose.state import RunLock

    state = tmp_path / "state.sqlite"
    env = environ(LEADCONDUIT_API_KEY="k", LEADCONDUIT_URL="http://127.0.0.1:9", FIREHOSE_STATE=str(state))
    with RunLock(state, "watch", "firehose watch"):
        run = invoke(["watch", "--once", "--repair-after", "20min"], env)
    assert run.code == 3 and run.stdout == "" and "another watch is using it" in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and not state.exists(), run.stderr


def test_an_object_stamped_hours_before_its_event_ended_has_no_lag_in_the_watch_s_histogram(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """A store whose clock is two hours behind: its objects did not arrive at once, so the watch's lag histogram
    leaves them out (as reconcile counts them unknown) rather than filling its lowest bucket with zeros."""
    import os

    from prometheus_client.parser import text_string_to_metric_families

    from firehose.event import EventView
    from firehose.ids import seconds_of

    events = sandbox.events(sort="desc", limit=3, end=UNTIL.isoformat())
    archive = tmp_path / "archive"
    for event in events:
        view = EventView(event)
        path = archive / f"{view.lead_id}/{view.id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(event))
        os.utime(path, (view.ended - 7200, view.ended - 7200))
    start = datetime.fromtimestamp(seconds_of(events[-1]["id"]), tz=UTC).isoformat()
    metrics = tmp_path / "watch.prom"
    env = environ(LEADCONDUIT_API_KEY=API_KEY, LEADCONDUIT_URL=sandbox.url, FIREHOSE_STATE=str(tmp_path / "s.sqlite"))
    run = invoke(["watch", "--once", "--start", start, "--archive", archive.as_uri(), "--metrics-file", str(metrics)],
                 env)  # fmt: skip
    assert run.code in (0, 1), run.stderr  # other events of the same second are late: their objects are not there
    families = {family.name: family for family in text_string_to_metric_families(metrics.read_text())}
    archived = [s for s in families["firehose_watch_events"].samples if s.labels["outcome"] == "archived"]
    assert sum(s.value for s in archived) >= 3, archived
    counts = [s.value for s in families["firehose_watch_delivery_lag_seconds"].samples if s.name.endswith("_count")]
    assert sum(counts) == 0, counts


def test_a_repair_whose_answer_was_lost_is_repaired_when_found_never_recovered(
    sandbox: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In one long watch, the store takes a repair's write and its answer is lost (a timeout): ``repair_failed``,
    the intent kept. When the object is found at a later look, it is the watch's own write: ``repaired``, not
    ``recovered`` (the firehose did not deliver it, and its "lag" would be the repair's)."""
    import threading
    from datetime import timedelta

    import firehose
    from firehose.archive.local import LocalStore
    from firehose.errors import ArchiveError
    from firehose.ids import seconds_of
    from firehose.watching.watcher import Watcher

    write, poll = LocalStore.write, Watcher.poll
    lost: list[str] = []

    def answer_lost(self: LocalStore, key: str, data: bytes, **options: Any) -> bool:
        taken = write(self, key, data, **options)
        if not lost and self.url == archive.as_uri():  # the watch's repair (the sandbox writes files too)
            lost.append(key)
            raise ArchiveError(f"{key}: no answer within 60 s")
        return taken

    polls = [0]
    stop = threading.Event()

    def counted(self: Watcher) -> Any:
        polls[0] += 1
        if polls[0] == 3:  # late; repaired, the answer lost; found
            stop.set()
        return poll(self)

    monkeypatch.setattr(LocalStore, "write", answer_lost)
    monkeypatch.setattr(Watcher, "poll", counted)
    newest = sandbox.sandbox.live.make(1)[0]  # a fresh lead: the seeded ones are past being looked for
    archive = tmp_path / "archive"
    archive.mkdir()
    monkeypatch.setenv("LEADCONDUIT_API_KEY", API_KEY)
    monkeypatch.setenv("LEADCONDUIT_URL", sandbox.url)
    monkeypatch.setenv("FIREHOSE_STATE", str(tmp_path / "s.sqlite"))
    options = firehose.WatchOptions(
        start=datetime.fromtimestamp(seconds_of(newest["id"]), tz=UTC), deadline=timedelta(seconds=1),
        repair_after=timedelta(seconds=1), archive=archive.as_uri(),  # type: ignore[arg-type]  # a Python caller may give the URL
        interval=timedelta(seconds=0.05),
    )  # fmt: skip
    began = datetime.now(UTC).timestamp() + 10  # its deadline (1 s) passed
    alerts: list[dict[str, Any]] = []
    firehose.watch(options, firehose.Settings.load(), on_alert=alerts.append, stop=stop,
                   clock=lambda: began + 7200.0 * polls[0])  # each poll past any recheck's wait  # fmt: skip
    mine = [a["alert"] for a in alerts if a.get("event_id") == newest["id"]]
    assert lost and mine == ["late", "repair_failed", "repaired"], mine


def test_the_webhook_url_can_come_from_the_environment_not_the_command_line(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """A webhook's URL is a credential, and ``ps`` shows every user a command line: ``$FIREHOSE_ALERT_URL`` (URLs
    separated by spaces) names the webhooks as ``--alert-url`` does."""
    from firehose.ids import seconds_of
    from tests.functional.clirun import run_process
    from tests.functional.test_watch_alerts import Webhook, alerts_of, env_for

    seeded = sandbox.events(sort="desc", limit=3, end=UNTIL.isoformat())[-1]  # a few events, all late
    (tmp_path / "empty").mkdir()
    start = datetime.fromtimestamp(seconds_of(seeded["id"]), tz=UTC).isoformat()
    args = ["watch", "--once", "--start", start, "--deadline", "1s", "--archive", (tmp_path / "empty").as_uri()]

    first, second = Webhook(), Webhook()
    try:
        env = {**env_for(sandbox, tmp_path), "FIREHOSE_ALERT_URL": f"{first.url} {second.url}"}
        run = run_process(args, env, tmp_path)
    finally:
        first.close()
        second.close()
    alerts = alerts_of(run)
    assert alerts and first.taken == alerts and second.taken == alerts, run.stderr
    refused = invoke(["watch", "--once"], environ(LEADCONDUIT_API_KEY="k", FIREHOSE_ALERT_URL="ftp://x/"))
    assert refused.code == 2 and "--alert-url 1" in refused.stderr, refused.stderr
