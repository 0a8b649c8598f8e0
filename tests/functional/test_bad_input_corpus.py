"""Issue 11: the bad-input corpus. Every command, enumerated from the click group (a command added later fails
here until it has a line in ``BASE``), against each bad input of a table that applies to it: bad paths, bad
flags and values, bad config files, unreachable and misbehaving servers, broken archived objects. Each run must
end with one line on stderr starting ``firehose: error:`` (``archive cat`` reports one such line per object it
could not print, its documented format), the README's exit code for that kind of fault, no traceback and no
secret anywhere; where a command goes on past a fault, its documented report names it instead (a reconcile
finding, a replay problem line, an ``audit verify`` pack problem). Outputs are checked before anything is read:
a bad output path or state database fails with no request made.

Runs are in this process (click's runner), a few milliseconds each; what only a real process shows (a closed
stdout pipe, /dev/full as stdout) runs as processes. Servers answer fast or are cut at a 0.5 s timeout."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import pytest

from firehose.cli import cli
from firehose.codec import encode
from firehose.errors import ExitCode
from tests.conftest import S3_ENDPOINT
from tests.functional import servers
from tests.functional.clirun import Run, command_paths, environ, invoke, process_env, spawn

SECRET = "corpus-api-key-5d1e0c93be7a4f21"
"""The API key every run is given; it must never show in any output."""
pytestmark = pytest.mark.usefixtures("stack")  # the S3 cases talk to the local SeaweedFS
LEAD, EVENT = "6920f1a0aaaaaaaaaaaaaaaa", "6920f1a1bbbbbbbbbbbbbbbb"
DAY = "2025-11-21"  # 0x6920f1a0 seconds is 2025-11-21T23:xx UTC
KEY = f"{LEAD}/{EVENT}.json"
USAGE, CONFIG, API, ARCHIVE = ExitCode.USAGE, ExitCode.CONFIG, ExitCode.API, ExitCode.ARCHIVE
EVENT_BODY: dict[str, Any] = {
    "id": EVENT,
    "type": "source",
    "outcome": "error",
    "reason": "timed out",
    "vars": {"lead": {"id": LEAD}, "flow": {"id": "f1"}, "source": {"id": "s1"}},
    "firehose": {"enabled": True, "bucket": "b", "prefix": ""},
    "expires_at": "2026-02-19T23:00:00Z",
    "request": {
        "method": "POST",
        "uri": "https://app.leadconduit.com/flows/f1/sources/s1/submit",
        "headers": {"Content-Type": "application/json"},
        "body": '{"email":"a@example.com"}',
    },
}

# What each command is run with when nothing is wrong; the bad input then replaces or adds one thing. The
# placeholders ({store}, {pack}, ...) are filled from the test's world.
BASE: dict[tuple[str, ...], list[str]] = {
    ("events",): ["events", "--start", DAY, "--end", DAY],
    ("sandbox",): ["sandbox", "--port", "0", "--leads", "0", "--destinations", "3"],
    ("archive", "ls"): ["archive", "ls", "{store}"],
    ("archive", "cat"): ["archive", "cat", "{store}", KEY],
    ("locate",): ["locate", EVENT, "--archive", "{store}"],
    ("reconcile",): ["reconcile", "--start", DAY, "--end", DAY, "--archive", "{store}", "--verify", "content"],
    ("replay",): [
        "replay",
        "--start",
        DAY,
        "--end",
        DAY,
        "--dry-run",
        "--from-api",
        "--from",
        "{store}",
        "--target",
        "{sink}",
    ],
    ("audit", "pack"): ["audit", "pack", "--start", DAY, "--end", DAY, "--out", "{new_pack}", "--archive", "{store}"],
    ("audit",): ["audit", "--start", DAY, "--end", DAY, "--out", "{new_pack}", "--archive", "{store}"],
    ("audit", "verify"): ["audit", "verify", "{pack}"],
    ("audit", "merge"): ["audit", "merge", "--run-state", "{audit_run}", "--out", "{new_pack}"],
    ("reconcile", "merge"): ["reconcile", "merge", "--run-state", "{reconcile_run}"],
    ("config", "show"): ["config", "show"],
    ("runs",): ["runs"],
    ("ledger",): ["ledger"],
    ("config", "init"): ["config", "init", "{root}/new-config.toml"],
    ("watch",): [
        *("watch", "--once", "--start", DAY, "--archive", "{store}"),
        *("--alert-url", "{sink}", "--repair-after", "20min"),
    ],
}
GROUPS_ONLY = {("archive",), ("config",)}
"""Groups that are no command of their own (``firehose archive`` alone is a usage error, in test_usage_errors).
``audit`` is a group that is a command too: bare, with a pack's options, it makes one as ``audit pack`` does (the
old spelling, hidden from help, kept for cron jobs), so it has its own BASE line; so is ``reconcile`` (bare, it
runs; ``reconcile merge`` merges a sliced run's checkpoints)."""

USES_API = {("events",), ("locate",), ("reconcile",), ("replay",), ("audit",), ("audit", "pack"), ("watch",)}
STORE_COMMANDS = {("archive", "ls"), ("reconcile",)}
"""Commands run against stores that fail (one lister, one checker: every command opens stores the same way)."""
READS_OBJECTS = {("archive", "cat"), ("reconcile",), ("replay",)}
NO_CONFIG = {("sandbox",), ("config", "init")}
"""The sandbox is a server of its own, and config init writes a config file: neither reads one."""
NEVER_RUN_WHOLE = {("sandbox",)}
"""Commands that serve until stopped: only inputs refused before they start apply."""


@dataclass
class World:
    """Everything the runs share: a store with one good event, config files, a signed pack, servers."""

    root: Path
    good_api: str
    sink: str
    pack: Path
    requests: list[bytes] = field(default_factory=list)
    """Every request the good API server was sent."""
    packs: Iterator[int] = field(default_factory=itertools.count)

    def fill(self, args: list[str]) -> list[str]:
        names = {
            "{store}": (self.root / "store").as_uri(),
            "{pack}": str(self.pack),
            "{new_pack}": str(self.root / f"pack-{next(self.packs)}"),
            "{reconcile_run}": (self.root / "run-reconcile").as_uri(),
            "{audit_run}": (self.root / "run-audit").as_uri(),
            "{sink}": self.sink,
            "{root}": str(self.root),
            "{closed}": servers.closed_port(),  # found when the case runs: a port free now, not at collection
        }
        return [names.get(arg, arg.replace("{root}", str(self.root))) for arg in args]


@dataclass(frozen=True)
class Case:
    """One bad input for one command: what to add or replace, and the exit codes the README gives for it."""

    name: str
    args: list[str]
    codes: frozenset[int]
    env: dict[str, str] = field(default_factory=dict)
    says: str | None = None
    prepare: Callable[[World], None] | None = None
    no_requests: bool = False
    """An output that is wrong: refused before any request reaches the API."""
    store: str | None = None
    """Another store URL in place of the good directory store (an S3 bucket, an Azure container)."""
    report: bool = False
    """The command's documented report names the fault (a reconcile finding, a replay problem line), not an
    error line."""


@contextmanager
def _counting_server(answer: Callable[[bytes], tuple[str, bytes]], seen: list[bytes]) -> Iterator[str]:
    def handle(conn: socket.socket, request: bytes, stop: threading.Event) -> None:
        seen.append(request)
        status, body = answer(request)
        servers.answer(status, body)(conn, request, stop)

    with servers.serving(handle) as url:
        yield url


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("corpus")
    store = root / "store" / LEAD
    store.mkdir(parents=True)
    (store / f"{EVENT}.json").write_bytes(encode(EVENT_BODY))
    (root / "afile").write_text("a file where a folder should be\n")
    (root / "inventories").mkdir()
    for name, (content, _, _) in INVENTORIES.items():
        if content is not None:
            (root / "inventories" / f"{name}.json").write_bytes(content)
    seen: list[bytes] = []

    def api(request: bytes) -> tuple[str, bytes]:
        line = request.split(b"\r\n", 1)[0]
        if b"/events/" in line:
            return "200 OK", encode(EVENT_BODY)
        return "200 OK", b"[]" if b"after_id=" in line else encode([EVENT_BODY])

    with (
        _counting_server(api, seen) as url,
        _counting_server(lambda request: ("201 Created", b'{"outcome":"success","lead":{"id":"x"}}'), []) as sink,
    ):
        env = environ(LEADCONDUIT_API_KEY=SECRET, LEADCONDUIT_URL=url, FIREHOSE_STATE=str(root / "made.sqlite"))
        made = invoke(["audit", "pack", "--start", DAY, "--end", DAY, "--out", str(root / "pack"), "--archive",
                       (root / "store").as_uri()], env)  # fmt: skip
        assert made.code == ExitCode.OK, made.stderr
        for command, run in (("reconcile", "run-reconcile"), ("audit", "run-audit")):  # one slice of one: mergeable
            sliced = invoke([*([command] if command == "reconcile" else ["audit", "pack"]), "--start", DAY, "--end",
                             DAY, "--archive", (root / "store").as_uri(), "--shards", "1", "--shard", "0",
                             "--run-state", (root / run).as_uri()], env)  # fmt: skip
            assert sliced.code == ExitCode.OK, sliced.stderr
        yield World(root, url, sink, root / "pack", seen)


# -- the table ---------------------------------------------------------------------------------------------------
def _option_cases(path: tuple[str, ...], command: click.Command) -> list[Case]:
    """Bad values for the options this command has, found from its own parameters."""
    found: list[Case] = []
    for param in command.params:
        if not isinstance(param, click.Option) or param.is_flag or param.count:
            continue
        flag = param.opts[-1]
        kind = param.type
        values: list[str] = []
        if flag in ("--start", "--end", "--until"):
            values = ["10000-01-01", "0001-01-01", "9999-12-31T23:59:59", "1969-12-31T23:59:59Z", "yesterday"]
        elif flag in ("--lag", "--recheck", "--expiring-within", "--settle-after", "--require-retention",
                      "--interval", "--deadline", "--down-after", "--overlap", "--alert-timeout",
                      "--repair-after"):  # fmt: skip
            values = ["inf", "99999999999d", "5", "5m", "-5d", "nan"]
            if flag == "--repair-after":
                values.append("1min")  # shorter than the default --deadline
            if flag == "--down-after":
                values.append("0s")  # every destination with an event in flight would be down at once
        elif flag == "--url":
            values = ["http://", "http://[::1", "ftp://x", "http://h:99999"]
        elif flag in ("--archive", "--from", "--ledger", "--run-state", "--inventory"):
            values = ["s3://[", "file://", "file:rel/dir", "file:///", "gopher://x"]
        elif flag == "--alert-url":  # the user info's password must not show in the error either
            values = ["http://", "ftp://u:corpus-pw-1@x/", "http://[::1", "http://h:99999", "hooks.example.com/x"]
        elif flag == "--alert-command":
            values = ["/nonexistent/notify --token t", "'unclosed", "   "]
        elif flag == "--log-format":
            values = ["xml", "JSON"]
        elif flag == "--executor":
            values = ["local:0", "local:x", "dask://", "ray://x"]
        elif flag == "--target":
            values = ["http://[zz]/", "gopher://x"]
        elif flag == "--rate":
            values = ["inf/s", "nan", "0", "1e-300", "-5/s", "fast"]
        elif flag == "--verify":
            values = ["sample:150", "sample:0", "sample:nan", "bogus"]
        elif flag == "--rules":
            values = ["not json", "{}", "[1]", "[" * 3000 + "]" * 3000]
        elif flag in ("--after-id", "--before-id", "--lead-id"):
            values = ["zz", "6920f1a1bbbbbbbbbbbbbbb"]
        elif isinstance(kind, (click.types.IntParamType, click.types.FloatParamType)):
            values = ["nan", "inf", "1e400", "abc"]
            low, high = getattr(kind, "min", None), getattr(kind, "max", None)
            if low is not None and low >= 0:
                values.append("-1")
            if high is not None:
                values.append(str(10**9))
        for value in values:
            found.append(Case(f"{flag} {value[:20]}", [flag, value], frozenset({USAGE}), says=flag.lstrip("-")))
    return found


def _config(world: World, name: str, content: bytes) -> str:
    path = world.root / "configs" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(content)
    return str(path)


INVENTORIES: dict[str, tuple[bytes | None, int, str]] = {
    "missing": (None, ARCHIVE, "missing.json"),
    "random bytes": (bytes(range(256)) * 4, ARCHIVE, "--inventory"),
    "not a manifest": (b'{"files": 3}', ARCHIVE, "not an S3 or Azure inventory manifest"),
    "orc": (b'{"sourceBucket": "store", "fileFormat": "ORC", "files": []}', USAGE, "'ORC' is not read"),
    "another bucket": (b'{"sourceBucket": "elsewhere", "fileFormat": "CSV", "files": []}', USAGE, "'elsewhere'"),
    "a file it lacks": (
        b'{"sourceBucket": "store", "fileFormat": "CSV", "fileSchema": "Bucket, Key", "files": [{"key": "no.csv.gz"}]}',
        ARCHIVE,
        "no.csv.gz",
    ),
}
"""Bad ``reconcile --inventory`` manifests: (content, or None for none at all; exit code; what the error says)."""

CONFIGS = {
    "random bytes": bytes(range(256)) * 4,
    "not toml": b"[leadconduit\nurl = ",
    "misspelt section": b"[leadconduitt]\nurl = 'https://x.example'\n",
    "unknown setting": b"[leadconduit]\nurll = 'https://x.example'\n",
    "nan timeout": b"[leadconduit]\ntimeout_seconds = nan\n",
    "huge attempts": b"[leadconduit]\nmax_attempts = 1000000000\n",
    "url without host": b"[leadconduit]\nurl = 'http://'\n",
    "deep toml": b"a = " + b"[" * 3000 + b"]" * 3000 + b"\n",
    "bad credential": b"[credentials.x]\nservice = 'gcs'\n",
}


def _table(path: tuple[str, ...], command: click.Command) -> list[Case]:
    cases = list(_option_cases(path, command))
    if path not in NO_CONFIG:
        for name in CONFIGS:
            cases.append(Case(f"config: {name}", ["--config", f"@config:{name}"], frozenset({CONFIG}),
                              says="configs/"))  # fmt: skip
        cases.append(Case("config: a folder", ["--config", "{root}"], frozenset({USAGE})))
        cases.append(Case("config: missing", ["--config", "/nonexistent/firehose.toml"], frozenset({CONFIG})))
    if path in USES_API:
        cases += [
            Case("api key env unset", ["--config", "@config:key env"], frozenset({CONFIG}), says="FIREHOSE_CORPUS_KEY"),
            Case("server: closed port", [], frozenset({API}), env={"LEADCONDUIT_URL": "{closed}"}),
            Case("server: junk", [], frozenset({API}), env={"LEADCONDUIT_URL": "@server:junk"}),
            Case("server: hangs", [], frozenset({API}), env={"LEADCONDUIT_URL": "@server:hang"}),
            Case("server: trickles headers", [], frozenset({API}), env={"LEADCONDUIT_URL": "@server:trickle_headers"}),
            Case("server: trickles body", [], frozenset({API}), env={"LEADCONDUIT_URL": "@server:trickle_body"}),
            Case("server: 500", [], frozenset({API}), env={"LEADCONDUIT_URL": "@server:500"}),
            Case("server: 401", [], frozenset({CONFIG}), env={"LEADCONDUIT_URL": "@server:401"}),
            Case("server: gzip junk", [], frozenset({ARCHIVE}), env={"LEADCONDUIT_URL": "@server:gzip_junk"}),
            Case("server: 3000 deep", [], frozenset({ARCHIVE}), env={"LEADCONDUIT_URL": "@server:deep_json"}),
            Case("server: not an array", [], frozenset({ARCHIVE}), env={"LEADCONDUIT_URL": "@server:object"}),
            Case("server: html", [], frozenset({ARCHIVE}), env={"LEADCONDUIT_URL": "@server:html"}),
        ]
    for param in command.params:
        if not isinstance(param, click.Option) or param.is_flag:
            continue
        flag = param.opts[-1]
        writes = flag in ("--output", "--report", "--dead-letter", "--port-file", "--out", "--signing-key")
        if writes:
            for name, where in (
                ("a missing folder", "{root}/nothere/x.out"),
                ("a folder whose parent is a file", "{root}/afile/x.out"),
                ("an existing folder", "{root}"),
            ):
                if flag == "--signing-key" and name == "a missing folder":
                    continue  # not wrong: a new key's folders are made
                cases.append(Case(f"{flag} {name}", [flag, where], frozenset({USAGE}), no_requests=True))
            if flag == "--signing-key":
                cases.append(Case("--signing-key not a key", [flag, "{root}/afile"], frozenset({CONFIG}),
                                  no_requests=True, says="--signing-key"))  # fmt: skip
            if os.geteuid() != 0:  # root writes read-only files: the case means nothing there
                cases.append(Case(f"{flag} a read-only file", [flag, "{root}/readonly"], frozenset({USAGE, CONFIG}),
                                  no_requests=True, prepare=_read_only))  # fmt: skip
            if flag in ("--output", "--report"):  # a full disk is known only when written: one line, exit 3
                cases.append(Case(f"{flag} /dev/full", [flag, "/dev/full"], frozenset({CONFIG}),
                                  says="No space left on device"))  # fmt: skip
        if flag == "--state":
            for name, where in (
                ("a folder", "{root}"),
                ("under a file", "{root}/afile/state.sqlite"),
                ("random bytes", "{root}/afile"),
            ):
                cases.append(Case(f"--state {name}", [flag, where], frozenset({CONFIG}), no_requests=True,
                                  says="state database"))  # fmt: skip
    if path in (("audit", "merge"), ("reconcile", "merge")):  # nothing to merge there, or not every slice
        cases.append(Case("--run-state empty", ["--run-state", "file://{root}/empty-run"], frozenset({USAGE}),
                          says="slice has a checkpoint there yet"))  # fmt: skip
        cases.append(Case("--shards more than ran", ["--shards", "2"], frozenset({USAGE}),
                          says="no checkpoint yet for slices 0, 1 of 2"))  # fmt: skip
    if path == ("replay",):  # --ids: a file of ids, read line by line, each bad line reported
        cases.append(Case("--ids random bytes", ["--ids", "{root}/junk.bin"], frozenset({ARCHIVE}), report=True,
                          says="--ids line 1", prepare=_junk_file))  # fmt: skip
        cases.append(Case("--ids missing", ["--ids", "{root}/nothere"], frozenset({USAGE}), says="--ids"))
        cases.append(Case("--ids a folder", ["--ids", "{root}"], frozenset({USAGE}), says="--ids"))
    if path == ("reconcile",):  # --inventory: manifests written by the world (INVENTORIES)
        for name, (_, exit_code, said) in INVENTORIES.items():
            cases.append(Case(f"--inventory {name}", ["--inventory", f"file://{{root}}/inventories/{name}.json"],
                              frozenset({exit_code}), says=said))  # fmt: skip
    if path == ("config", "init"):  # a file to write: never over one, never where it cannot be
        cases.append(Case("an existing file", ["{root}/afile"], frozenset({USAGE}), says="exists already"))
        cases.append(Case("a missing folder", ["{root}/nothere/x.toml"], frozenset({CONFIG}), says="cannot write"))
    if path == ("audit", "verify"):
        cases.append(Case("--public-key random bytes", ["--public-key", "{root}/junk.bin"], frozenset({USAGE}),
                          says="--public-key", prepare=_junk_file))  # fmt: skip
        cases.append(Case("not a pack", ["{root}/store"], frozenset({ARCHIVE}), says="not an audit pack"))
        for name in ("SHA256SUMS", "SHA256SUMS.sig", "signing-key.pub.pem", "manifest.ndjson", "summary.json"):
            for junk, content in (("random bytes", bytes(range(256)) * 8), ("3000 deep", b"[" * 3000 + b"]" * 3000)):
                cases.append(Case(f"pack: {name} {junk}", ["{root}/broken-pack"], frozenset({ExitCode.DIFFERENCES}),
                                  prepare=_broken_pack(name, content), report=True, says=name))  # fmt: skip
    if path in STORE_COMMANDS:  # stores that cannot be reached or signed in to
        s3, az = "s3://corpus-no-bucket", "az://corpus-no-container"
        endpoint = ["--endpoint-url", S3_ENDPOINT, "--region", "us-east-1"]
        report = path == ("reconcile",)  # a destination it cannot check: its events are error findings
        for name, store, args, env, code in (
            ("s3: endpoint refused", s3, ["--endpoint-url", "{closed}"], {}, ARCHIVE),
            ("s3: endpoint not a URL", s3, ["--endpoint-url", "http://[::1"], {}, CONFIG),
            ("s3: bad region", s3, [*endpoint[:2], "--region", "no region!"], {}, CONFIG),
            ("s3: unknown profile", s3, [*endpoint, "--profile", "corpus-nobody"], {}, CONFIG),
            ("s3: wrong keys", s3, endpoint, {"AWS_SECRET_ACCESS_KEY": "wrong"}, ARCHIVE),
            ("s3: no bucket", s3, endpoint, {}, ARCHIVE),
            ("az: no credential", az, [], {}, CONFIG),
            ("az: junk connection string", az, [], {"FIREHOSE_AZURE_CONNECTION_STRING": "junk"}, CONFIG),
        ):
            aws = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_CONFIG_FILE": "/nonexistent"}
            if report:  # reconcile checks every destination: one it cannot use is its events' error, exit 5
                code = ARCHIVE
            says = store.split("//")[1] if code == ARCHIVE else None
            cases.append(Case(name, args, frozenset({code}), env={**aws, **env}, store=store, report=report,
                              says=says))  # fmt: skip
    if path in READS_OBJECTS:
        for name, body in (
            ("junk", b"\x00\xff junk"),
            ("gzip junk", b"\x1f\x8b\x08\x00junk"),
            ("3000 deep", b"[" * 3000 + b"]" * 3000),
            ("empty", b""),
            ("not an object", b"[1,2,3]"),
            ("600 deep", encode({**EVENT_BODY, "vars": {**EVENT_BODY["vars"], "deep": _nested(300)}})),
        ):
            # Data that is not wrong is printed, compared (a difference) or, not being an event, not replayed.
            fine = name == "600 deep" or (name == "not an object" and path != ("reconcile",))
            codes = frozenset({ExitCode.OK, ExitCode.DIFFERENCES} if fine else {ARCHIVE})
            report = path != ("archive", "cat")
            cases.append(Case(f"object: {name}", [], codes, prepare=_broken_object(body), report=report,
                              says=None if fine else LEAD))  # fmt: skip
    return cases


def _read_only(world: World) -> None:
    path = world.root / "readonly"
    path.write_text("")
    path.chmod(0o444)


def _junk_file(world: World) -> None:
    (world.root / "junk.bin").write_bytes(bytes(range(256)) * 8 + b"\n" + b"[" * 3000)


def _broken_pack(name: str, content: bytes) -> Callable[[World], None]:
    def prepare(world: World) -> None:
        broken = world.root / "broken-pack"
        shutil.rmtree(broken, ignore_errors=True)
        shutil.copytree(world.pack, broken)
        (broken / name).write_bytes(content)

    return prepare


def _nested(levels: int) -> object:
    value: object = "x"
    for _ in range(levels):
        value = {"k": [value]}
    return value


def _broken_object(body: bytes) -> Callable[[World], None]:
    def prepare(world: World) -> None:
        bad = world.root / "broken" / LEAD
        bad.mkdir(parents=True, exist_ok=True)
        (bad / f"{EVENT}.json").write_bytes(body)

    return prepare


def _all_cases() -> list[tuple[tuple[str, ...], Case]]:
    found = []
    for path, command in command_paths(cli):
        if path in GROUPS_ONLY:
            continue
        assert path in BASE, f"firehose {' '.join(path)} is a new command: give it a BASE line in this corpus"
        for case in _table(path, command):
            if path in NEVER_RUN_WHOLE and case.codes != frozenset({USAGE}):
                continue
            found.append((path, case))
    return found


CASES = _all_cases()


def test_every_command_is_in_the_corpus() -> None:
    paths = {path for path, _ in command_paths(cli)} - GROUPS_ONLY
    assert paths == set(BASE), "BASE must name every command, no more"
    assert {path for path, _ in CASES} == paths


# -- running a case ----------------------------------------------------------------------------------------------
SERVERS: dict[str, Callable[[], servers.Handler]] = {
    "junk": lambda: servers.junk,
    "hang": lambda: servers.hang,
    "trickle_headers": lambda: servers.trickle_headers,
    "trickle_body": lambda: servers.trickle_body,
    "500": lambda: servers.answer("500 Internal Server Error", b'{"error":"boom"}'),
    "401": lambda: servers.answer("401 Unauthorized", b'{"error":"not authorized"}'),
    "gzip_junk": servers.gzip_junk,
    "deep_json": servers.deep_json,
    "object": lambda: servers.answer("200 OK", b'{"events":[]}'),
    "html": lambda: servers.answer("200 OK", b"<html>maintenance</html>", headers="Content-Type: text/html\r\n"),
}


def _run(world: World, path: tuple[str, ...], case: Case) -> Run:
    base = world.fill(BASE[path])
    if case.prepare is not None:
        case.prepare(world)
        base = [arg.replace((world.root / "store").as_uri(), (world.root / "broken").as_uri()) for arg in base]
    if case.store is not None:
        base = [case.store if arg == (world.root / "store").as_uri() else arg for arg in base]
    args = world.fill(case.args)
    if args[:1] == ["--config"] and args[1].startswith("@config:"):
        name = args[1].removeprefix("@config:")
        content = b"[leadconduit]\napi_key_env = 'FIREHOSE_CORPUS_KEY'\n" if name == "key env" else CONFIGS[name]
        args[1] = _config(world, name.replace(" ", "-"), content)
    if args[:1] == ["--config"]:
        command, extra = ["--config", args[1]], []  # a root option: before the command
    else:
        command, extra = [], args
    flags = {arg for arg in extra if arg.startswith("-")}
    kept = _without(base, flags)
    if path in (("audit", "verify"), ("config", "init")) and extra and not extra[0].startswith("-"):
        kept, extra = [*path, *extra], []  # another pack, or another file, in place of the good one
    env = environ(
        LEADCONDUIT_API_KEY=SECRET,
        LEADCONDUIT_URL=world.good_api,
        FIREHOSE_STATE=str(world.root / f"state-{abs(hash((path, case.name)))}.sqlite"),
        FIREHOSE_LEADCONDUIT_MAX_ATTEMPTS="1",
        FIREHOSE_LEADCONDUIT_TIMEOUT_SECONDS="0.5",
    )
    case_env = dict(zip(case.env, world.fill(list(case.env.values())), strict=True))
    target = case_env.get("LEADCONDUIT_URL", "")
    if target.startswith("@server:"):
        with servers.serving(SERVERS[target.removeprefix("@server:")]()) as url:
            return invoke([*command, *kept, *extra], {**env, **case_env, "LEADCONDUIT_URL": url})
    return invoke([*command, *kept, *extra], {**env, **case_env})


def _without(base: list[str], flags: set[str]) -> list[str]:
    """The base arguments without the options the case gives itself (an option and its value)."""
    kept, skip = [], False
    for arg in base:
        if skip:
            skip = False
            continue
        if arg in flags:
            skip = True
            continue
        kept.append(arg)
    return kept


@pytest.mark.parametrize(("path", "case"), CASES, ids=[f"{' '.join(p)}: {c.name}" for p, c in CASES])
def test_a_bad_input_is_one_line_with_the_documented_code(world: World, path: tuple[str, ...], case: Case) -> None:
    before = len(world.requests)
    run = _run(world, path, case)
    assert SECRET not in run.stdout + run.stderr, "the API key showed"
    assert "corpus-pw-1" not in run.stdout + run.stderr, "a webhook's password showed"
    assert run.code in case.codes, f"exit {run.code}, expected {sorted(case.codes)}: {run.stderr}"
    assert "Traceback" not in run.stdout + run.stderr, run.stderr
    if run.code in (ExitCode.USAGE, ExitCode.CONFIG) and "--report" not in case.args:
        # Refused before any work: no header, no half a document (a report file fails at the end, after the rows).
        assert run.stdout == "", f"stdout of a refused command: {run.stdout[:200]!r}"
    if run.code in (ExitCode.OK, ExitCode.DIFFERENCES):
        line = ""  # not a failure: data the command takes as it is
    elif case.report:
        line = run.stdout + run.stderr  # the finding or problem line names the object
    elif path == ("archive", "cat") and run.code == ARCHIVE:
        line = run.error_line()  # one line per object that could not be printed, then a count
    else:
        line = run.failure_line()
    if case.says and line:
        assert case.says in line, line
    if case.no_requests:
        assert len(world.requests) == before, "an output known to be wrong only at the end of the work"


# -- what only a real process shows -----------------------------------------------------------------------------
WRITES_STDOUT = [("events",), ("archive", "ls"), ("archive", "cat"), ("locate",), ("reconcile",), ("replay",)]


@pytest.mark.parametrize("path", WRITES_STDOUT, ids=" ".join)
def test_a_full_disk_and_a_closed_pipe_on_stdout(world: World, path: tuple[str, ...], tmp_path: Path) -> None:
    args = world.fill(BASE[path])
    env = process_env(LEADCONDUIT_API_KEY=SECRET, LEADCONDUIT_URL=world.good_api,
                      FIREHOSE_STATE=str(tmp_path / "state.sqlite"))  # fmt: skip
    with open("/dev/full", "w") as full:
        process = spawn(args, env, tmp_path, stdout=full)
        _, err = process.communicate(timeout=60)
    assert "Traceback" not in err and SECRET not in err, err
    errors = [line for line in err.splitlines() if line.startswith("firehose: error:")]
    assert process.returncode == CONFIG and len(errors) == 1 and "No space left on device" in errors[0], err
    reader, writer = os.pipe()
    os.close(reader)  # the reader went away before a byte was written
    process = spawn(args, env, tmp_path, stdout=writer)
    os.close(writer)
    _, err = process.communicate(timeout=60)
    assert process.returncode == ExitCode.CLOSED_PIPE and "Traceback" not in err and "error" not in err, err
