"""`firehose archive ls`, `archive cat` and `locate` against a real archive the sandbox's firehose wrote to
SeaweedFS, Azurite and a directory."""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from firehose.archive import Store, StoreUrl, open_store
from firehose.archive.layout import parse_key
from firehose.archive.listing import list_window
from firehose.cli import cli
from firehose.errors import ExitCode
from firehose.event import EventView
from firehose.ids import seconds_of
from firehose.sandbox import Targets
from tests.conftest import (
    API_KEY,
    AZURE_CONNECTION_STRING,
    AZURE_CREDENTIAL,
    S3_CREDENTIAL,
    S3_ENDPOINT,
    UNTIL,
    RunningSandbox,
    firehose_written,
    start_sandbox,
    stop_sandbox,
)

pytestmark = pytest.mark.usefixtures("stack")
DAY = 86_400


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    root = tmp_path_factory.mktemp("dir-archive")
    targets = Targets(s3=S3_CREDENTIAL, azure=AZURE_CREDENTIAL, create_buckets=True)
    running, server = start_sandbox(targets, seed=31, leads=150, days=20, drop_rate=0.1)
    firehose_written(running, 120)
    # The same events written to a directory, laid out the same way, for file:// URLs.
    directory = start_sandbox(
        Targets(directory=root, create_buckets=True), seed=31, leads=150, days=20, bucket=running.bucket
    )
    firehose_written(directory[0], 60)
    running.directory_root = root  # type: ignore[attr-defined]
    yield running
    stop_sandbox(*reversed(directory))
    stop_sandbox(server, running)


@pytest.fixture()
def env(box: RunningSandbox, tmp_path: Path) -> dict[str, str]:
    flows = box.sandbox.flows
    aws_id = flows[0].firehose["credential_id"]
    azure_id = flows[1].firehose["services"]["azure"]["credential_id"]
    (tmp_path / "firehose.toml").write_text(
        f'[credentials."{aws_id}"]\nservice = "aws"\nendpoint_url = "{S3_ENDPOINT}"\nregion = "us-east-1"\n'
        'access_key_id = "test"\nsecret_access_key_env = "TEST_S3_SECRET"\n'
        f'[credentials."{azure_id}"]\nservice = "azure"\nconnection_string_env = "TEST_AZURE"\n'
    )
    return {
        "LEADCONDUIT_API_KEY": API_KEY,
        "LEADCONDUIT_URL": box.url,
        "FIREHOSE_CONFIG": str(tmp_path / "firehose.toml"),
        "TEST_S3_SECRET": "test",
        "TEST_AZURE": AZURE_CONNECTION_STRING,
    }


def invoke(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def store_for(box: RunningSandbox, scheme: str) -> Store:
    if scheme == "file":
        return open_store(StoreUrl("file", str(box.directory_root / "aws" / box.bucket), ""))  # type: ignore[attr-defined]
    return open_store(StoreUrl(scheme, box.bucket, ""), s3=S3_CREDENTIAL, azure=AZURE_CREDENTIAL)


def url_for(box: RunningSandbox, scheme: str, prefix: str) -> str:
    if scheme == "file":
        return f"file://{box.directory_root}/aws/{box.bucket}/{prefix}"  # type: ignore[attr-defined]
    return f"{scheme}://{box.bucket}/{prefix}"


def stored_keys(box: RunningSandbox, scheme: str, prefix: str) -> list[str]:
    """What a plain walk of the store finds under the URL (for file://, keys are relative to the URL's path)."""
    where = StoreUrl.parse(url_for(box, scheme, prefix))
    store = open_store(where, s3=S3_CREDENTIAL, azure=AZURE_CREDENTIAL)
    return [info.key for info in store.list(where.prefix + "/" if where.prefix else "")]


def credential_args(box: RunningSandbox, scheme: str) -> list[str]:
    flows = box.sandbox.flows
    if scheme == "s3":
        return ["--credential", flows[0].firehose["credential_id"]]
    if scheme == "az":
        return ["--credential", flows[1].firehose["services"]["azure"]["credential_id"]]
    return []


@pytest.mark.parametrize("scheme", ["s3", "az", "file"])
def test_ls_lists_every_archived_event_with_its_ids(box: RunningSandbox, env: dict[str, str], scheme: str) -> None:
    result = invoke(
        env, "archive", "ls", url_for(box, scheme, "events/home"), "--format", "ndjson", *credential_args(box, scheme)
    )
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["key"] for row in rows] == stored_keys(box, scheme, "events/home") and rows
    for row in rows[:20]:
        assert parse_key(row["key"]) == (row["lead_id"], row["event_id"])
        assert row["time"] and row["size"] > 0 and row["etag"] and row["last_modified"]
    assert f"{len(rows)} events in" in result.stderr


@pytest.mark.parametrize("scheme", ["s3", "az", "file"])
def test_ls_window_is_the_leads_made_in_it(box: RunningSandbox, env: dict[str, str], scheme: str) -> None:
    prefix = "events/home" if scheme == "az" else "events/auto"  # the legacy flow (auto) writes to S3 only
    first_day, last_day = (UNTIL.replace(day=UNTIL.day - n).strftime("%Y-%m-%d") for n in (7, 4))
    result = invoke(
        env,
        "archive",
        "ls",
        url_for(box, scheme, prefix),
        "--start",
        first_day,
        "--end",
        last_day,
        "--format",
        "ndjson",
        *credential_args(box, scheme),
    )
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    first = int(UNTIL.timestamp()) - 7 * DAY
    everything = stored_keys(box, scheme, prefix)
    expected = [k for k in everything if first <= seconds_of(parse_key(k)[0]) < first + 4 * DAY]  # type: ignore[index]
    assert [row["key"] for row in rows] == expected and expected


@pytest.mark.parametrize("scheme", ["s3", "az", "file"])
def test_parallel_slices_list_the_same_as_a_walk(box: RunningSandbox, scheme: str) -> None:
    """Small pages force the probe-then-slices path; it must give exactly the plain walk, in order."""
    where = store_for(box, scheme)
    small = open_store(
        StoreUrl(scheme, box.bucket if scheme != "file" else where.root.as_posix(), ""),  # type: ignore[attr-defined]
        s3=S3_CREDENTIAL,
        azure=AZURE_CREDENTIAL,
        page_size=25,
    )
    walk = [i.key for i in small.list("events/")]
    assert [i.key for i in list_window(small, "events/", start_seconds=None, end_seconds=None, workers=4)] == walk
    start, end = int(UNTIL.timestamp()) - 12 * DAY, int(UNTIL.timestamp()) - 3 * DAY
    window = [i.key for i in list_window(small, "events/home", start_seconds=start, end_seconds=end, workers=4)]
    assert window == [k for k in walk if k.startswith("events/home/") and start <= seconds_of(parse_key(k)[0]) <= end]  # type: ignore[index]
    assert len(window) > 10


def test_ls_formats(box: RunningSandbox, env: dict[str, str]) -> None:
    url, cred = url_for(box, "s3", "events/life"), credential_args(box, "s3")
    document = json.loads(invoke(env, "archive", "ls", url, "--format", "json", *cred).stdout)
    assert document["schema"] == "firehose.archive-ls/1" and document["url"] == url
    assert document["events"] == len(document["objects"]) > 0
    table = list(csv.DictReader(io.StringIO(invoke(env, "archive", "ls", url, "--format", "csv", *cred).stdout)))
    assert [row["key"] for row in table] == [row["key"] for row in document["objects"]]
    text = invoke(env, "archive", "ls", url, *cred).stdout.splitlines()
    assert text[0].split() == ["time", "lead_id", "event_id", "size", "etag", "last_modified", "key"]
    assert len(text) == len(table) + 1


def test_ls_skips_verification_files_and_counts_other_keys(box: RunningSandbox, env: dict[str, str]) -> None:
    store = store_for(box, "s3")
    store.write("events/life/leadconduit_verification_20261101120000123.txt", b"ok", if_absent=False)
    store.write("events/life/leadconduit-events/test.txt", b"ok", if_absent=False)
    store.write("events/life/notes/readme.md", b"hello", if_absent=False)
    url, cred = url_for(box, "s3", "events/life"), credential_args(box, "s3")
    plain = invoke(env, "archive", "ls", url, "--format", "ndjson", *cred)
    assert all("leadconduit" not in line and "readme" not in line for line in plain.stdout.splitlines())
    assert "2 verification files skipped; 1 keys outside the layout not listed (--all shows them)" in plain.stderr
    shown = invoke(env, "archive", "ls", url, "--format", "ndjson", "--all", *cred)
    extra = [json.loads(line) for line in shown.stdout.splitlines() if "readme" in line]
    assert extra and extra[0]["event_id"] is None


def test_cat_by_key_by_event_id_and_by_window(box: RunningSandbox, env: dict[str, str]) -> None:
    cred = credential_args(box, "s3")
    keys = [i.key for i in store_for(box, "s3").list("events/auto/")]
    key = keys[3]
    lead_id, event_id = parse_key(key)  # type: ignore[misc]
    by_key = invoke(env, "archive", "cat", f"s3://{box.bucket}", key, *cred)
    assert by_key.exit_code == 0 and json.loads(by_key.stdout)["id"] == event_id
    relative = invoke(env, "archive", "cat", f"s3://{box.bucket}/events/auto", key.removeprefix("events/auto/"), *cred)
    assert json.loads(relative.stdout)["id"] == event_id
    by_id = invoke(env, "archive", "cat", f"s3://{box.bucket}/events/auto", event_id, *cred)
    assert json.loads(by_id.stdout) == json.loads(by_key.stdout)
    with_lead = invoke(
        env, "archive", "cat", f"s3://{box.bucket}/events/auto", event_id, "--lead-id", lead_id, "--pretty", *cred
    )
    assert json.loads(with_lead.stdout)["id"] == event_id and with_lead.stdout.startswith("{\n")
    day = (UNTIL.replace(day=UNTIL.day - 2)).strftime("%Y-%m-%d")
    window = invoke(env, "archive", "cat", f"s3://{box.bucket}/events/auto", "--start", day, "--end", day, *cred)
    first = int(UNTIL.timestamp()) - 2 * DAY
    expected = [parse_key(k)[1] for k in keys if first <= seconds_of(parse_key(k)[0]) < first + DAY]  # type: ignore[index]
    assert [json.loads(line)["id"] for line in window.stdout.splitlines()] == expected and expected


def test_cat_reads_gzip_and_ndjson_and_reports_broken_objects(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path
) -> None:
    store = open_store(f"file://{tmp_path}/odd")
    store.create()
    lead = "6ae18ae9a55055783f30ae4b"
    event = {"id": "6ae18ae9a55055783f30ae4c", "type": "source"}
    store.write(f"{lead}/6ae18ae9a55055783f30ae4c.json.gz", gzip.compress(json.dumps(event).encode()))
    store.write(f"{lead}/6ae18ae9a55055783f30ae4d.json", b'{"id":"6ae18ae9a55055783f30ae4d"}\n{"id":"x2"}\n')
    store.write(f"{lead}/6ae18ae9a55055783f30ae4e.json", b'{"id": "6ae18ae9a55055783f30ae4e", trunc')
    store.write(f"{lead}/6ae18ae9a55055783f30ae4f.json", b'{"id":"6ae18ae9a55055783f30ae4f"}')
    result = CliRunner().invoke(cli, ["archive", "cat", f"file://{tmp_path}/odd", "--start", "2026-10-01"], env=env)
    ids = [json.loads(line)["id"] for line in result.stdout.splitlines()]
    assert ids == ["6ae18ae9a55055783f30ae4c", "6ae18ae9a55055783f30ae4d", "x2", "6ae18ae9a55055783f30ae4f"]
    assert result.exit_code == ExitCode.ARCHIVE
    assert "6ae18ae9a55055783f30ae4e.json: not valid JSON" in result.stderr
    assert "1 object could not be read" in result.stderr


def test_cat_of_an_unknown_event_says_so(box: RunningSandbox, env: dict[str, str]) -> None:
    result = CliRunner().invoke(
        cli,
        ["archive", "cat", url_for(box, "s3", "events/auto"), "0" * 8 + "a" * 16, *credential_args(box, "s3")],
        env=env,
    )
    assert result.exit_code == ExitCode.ARCHIVE
    assert f"event {'0' * 8 + 'a' * 16} not found under" in result.stderr


def _event(box: RunningSandbox, flow_index: int, *, archived: bool) -> dict:
    """An event of a flow whose every enabled destination has (or lacks) its object."""
    flow = box.sandbox.flows[flow_index]
    stores = {"aws": store_for(box, "s3"), "azure": store_for(box, "az")}
    for event in box.sandbox_events():
        if event["vars"]["flow"]["id"] != flow.id:
            continue
        view = EventView(event)
        present = [
            stores[d.service].head(d.key(view.lead_id, view.id)) is not None  # type: ignore[arg-type]
            for d in view.destinations()
        ]
        if present and all(present) == archived and any(present) == archived:
            return event
    raise AssertionError("no such event in the seed")


def test_locate_finds_an_event_in_both_services(box: RunningSandbox, env: dict[str, str]) -> None:
    event = _event(box, 1, archived=True)  # aws and azure both enabled
    result = invoke(env, "locate", event["id"], "--format", "json")
    report = json.loads(result.stdout)
    assert result.exit_code == 0 and report["schema"] == "firehose.locate/1"
    rows = report["destinations"]
    assert {row["service"] for row in rows} == {"aws", "azure"}
    assert all(row["status"] == "present" and row["size"] > 0 and row["etag"] for row in rows)
    lead = event["vars"]["lead"]["id"]
    assert {row["key"] for row in rows} == {f"events/home/{lead}/{event['id']}.json"}


def test_locate_exits_1_when_a_destination_lacks_it_and_lists_disabled_ones(
    box: RunningSandbox, env: dict[str, str]
) -> None:
    event = _event(box, 3, archived=False)  # aws only; azure disabled
    result = invoke(env, "locate", event["id"])
    assert result.exit_code == ExitCode.DIFFERENCES
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["status", "url"]
    assert any(line.startswith("missing") and "s3://" in line for line in lines)
    assert any(line.startswith("disabled") and "az://" in line for line in lines)


def test_locate_with_an_unmapped_azure_credential_exits_3_naming_it(box: RunningSandbox, env: dict[str, str]) -> None:
    event = _event(box, 2, archived=True)  # azure only, with its own credential_id
    azure_id = box.sandbox.flows[2].firehose["services"]["azure"]["credential_id"]
    unmapped = {**env, "FIREHOSE_CONFIG": "/dev/null"}
    result = CliRunner().invoke(cli, ["locate", event["id"]], env=unmapped)
    assert result.exit_code == ExitCode.CONFIG
    assert f'add [credentials."{azure_id}"] with service = "azure"' in result.stdout


def test_locate_with_an_archive_override_and_a_key_without_json(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path
) -> None:
    event = _event(box, 0, archived=True)
    moved = open_store(f"file://{tmp_path}/moved")
    moved.create()
    moved.write(f"restored/{event['vars']['lead']['id']}/{event['id']}", json.dumps(event).encode())
    result = invoke(env, "locate", event["id"], "--archive", f"file://{tmp_path}/moved/restored", "--format", "json")
    rows = json.loads(result.stdout)["destinations"]
    assert result.exit_code == 0 and len(rows) == 1
    assert rows[0]["status"] == "present" and rows[0]["key"].endswith(event["id"])


def test_missing_bucket_and_wrong_keys_exit_5_naming_the_bucket(box: RunningSandbox, env: dict[str, str]) -> None:
    missing = CliRunner().invoke(
        cli, ["archive", "ls", "s3://no-such-bucket-here/events", *credential_args(box, "s3")], env=env
    )
    assert missing.exit_code == ExitCode.ARCHIVE
    assert missing.stderr.strip().splitlines()[-1] == (
        "firehose: error: s3://no-such-bucket-here: bucket no-such-bucket-here does not exist"
    )
    wrong = {**env, "TEST_S3_SECRET": "not-the-secret-4242"}
    denied = CliRunner().invoke(
        cli, ["-vv", "archive", "ls", url_for(box, "s3", "events"), *credential_args(box, "s3")], env=wrong
    )
    assert denied.exit_code == ExitCode.ARCHIVE
    assert f"s3://{box.bucket}: access denied" in denied.stderr
    assert "not-the-secret-4242" not in denied.output and "not-the-secret-4242" not in denied.stderr
    bad_azure = {**env, "TEST_AZURE": AZURE_CONNECTION_STRING.replace("Eby8vdM02", "XXXXXXXXX")}
    denied = CliRunner().invoke(
        cli, ["archive", "ls", url_for(box, "az", ""), *credential_args(box, "az")], env=bad_azure
    )
    assert denied.exit_code == ExitCode.ARCHIVE and f"az://{box.bucket}: access denied" in denied.stderr
    assert "XXXXXXXXX" not in denied.stderr


def test_a_missing_secret_variable_is_a_config_error(box: RunningSandbox, env: dict[str, str]) -> None:
    broken = {k: v for k, v in env.items() if k != "TEST_S3_SECRET"}
    result = CliRunner().invoke(
        cli, ["archive", "ls", url_for(box, "s3", "events"), *credential_args(box, "s3")], env=broken
    )
    assert result.exit_code == ExitCode.CONFIG
    assert "secret_access_key_env names TEST_S3_SECRET, which is not set" in result.stderr


def test_unknown_scheme_is_a_usage_error(env: dict[str, str]) -> None:
    result = CliRunner().invoke(cli, ["archive", "ls", "gs://bucket/x"], env=env)
    assert result.exit_code == ExitCode.USAGE
    assert "use one of s3://, az://, file://" in result.stderr


def test_an_unreachable_endpoint_exits_5_and_no_credentials_exits_3(env: dict[str, str]) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = ["archive", "ls", "s3://somewhere/events", "--endpoint-url", f"http://127.0.0.1:{port}"]
    bare = {**env, "FIREHOSE_CONFIG": "/dev/null"}
    keyed = {**bare, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    result = CliRunner().invoke(cli, args, env=keyed)
    assert result.exit_code == ExitCode.ARCHIVE
    assert result.stderr.strip().splitlines()[-1] == (
        f"firehose: error: s3://somewhere: cannot reach the S3 endpoint http://127.0.0.1:{port}"
    )
    nothing: dict[str, str | None] = {
        "AWS_ACCESS_KEY_ID": None,
        "AWS_SECRET_ACCESS_KEY": None,
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_PROFILE": None,
    }
    unkeyed = CliRunner().invoke(cli, args, env={**bare, **nothing})
    assert unkeyed.exit_code == ExitCode.CONFIG
    assert "s3://somewhere: no AWS credentials found: map the bucket's credential_id" in unkeyed.stderr
    no_profile = CliRunner().invoke(cli, [*args, "--profile", "nobody"], env={**bare, **nothing})
    assert no_profile.exit_code == ExitCode.CONFIG
    assert "s3://somewhere: AWS profile 'nobody' is not in the AWS config files" in no_profile.stderr


def test_a_malformed_connection_string_is_a_config_error_that_does_not_echo_it(env: dict[str, str]) -> None:
    garbage = "AccountKey=sup3r-s3cret-value;not a connection string"
    result = CliRunner().invoke(
        cli,
        ["archive", "ls", "az://c"],
        env={**env, "FIREHOSE_CONFIG": "/dev/null", "FIREHOSE_AZURE_CONNECTION_STRING": garbage},
    )
    assert result.exit_code == ExitCode.CONFIG
    assert "az://c: the Azure connection string or account URL is malformed" in result.stderr
    assert "sup3r" not in result.output and "sup3r" not in result.stderr


@pytest.mark.parametrize("scheme", ["s3", "file"])
def test_a_window_at_the_bucket_root_selects_no_deeper_keys_and_says_where_they_are(
    box: RunningSandbox, env: dict[str, str], scheme: str
) -> None:
    """`--start` alone at the root once listed every object from the window's start on, whatever its lead."""
    day = UNTIL.replace(day=UNTIL.day - 1).strftime("%Y-%m-%d")
    for window in (["--start", day], ["--start", day, "--end", day]):
        for command in ("ls", "cat"):
            result = invoke(env, "archive", command, url_for(box, scheme, ""), *window, *credential_args(box, scheme))
            assert result.exit_code == 0, result.stderr
            printed = result.stdout.splitlines()
            assert printed == [] if command == "cat" else len(printed) == 1, printed[:3]  # ls: its header only
            assert "deeper prefixes" in result.stderr and "/events/" in result.stderr, result.stderr
    at_prefix = invoke(env, "archive", "ls", url_for(box, scheme, "events/auto"), "--start", day, "--format",
                       "ndjson", *credential_args(box, scheme))  # fmt: skip
    rows = [json.loads(line) for line in at_prefix.stdout.splitlines()]
    first = int(UNTIL.timestamp()) - DAY
    assert rows and all(seconds_of(row["lead_id"]) >= first for row in rows)
