"""Shared fixtures: the local stack's coordinates, and sandboxes running in a thread over real HTTP."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from firehose.archive import AzureCredential, S3Credential
from firehose.sandbox import Faults, FirehoseStream, Sandbox, Targets, make_server
from firehose.secret import Secret

API_KEY = "test-api-key-4f1b96c9150d8050e858c043"
"""The key the test sandboxes accept; tests assert it never shows in output."""

UNTIL = datetime(2026, 11, 20, tzinfo=UTC)
"""Seeded data ends here, a week before the machine's clock, so nothing generated has expired."""

# The local stack's development credentials (localstack/stack): loopback servers only.
S3_ENDPOINT = os.environ.get(
    "FIREHOSE_TEST_S3_ENDPOINT", f"http://127.0.0.1:{os.environ.get('FIREHOSE_S3_PORT', 8333)}"
)
AZURE_PORT = os.environ.get("FIREHOSE_AZURE_PORT", "10000")
AZURE_CONNECTION_STRING = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    f"BlobEndpoint=http://127.0.0.1:{AZURE_PORT}/devstoreaccount1;"
)
S3_CREDENTIAL = S3Credential(
    endpoint_url=S3_ENDPOINT, region="us-east-1", access_key_id="test", secret_access_key=Secret("test")
)
AZURE_CREDENTIAL = AzureCredential(connection_string=Secret(AZURE_CONNECTION_STRING))


def stack_config(path: Path) -> Path:
    """A firehose.toml mapping every credential to the local stack: S3 with its development keys, Azure through
    the connection string in ``$TEST_AZURE`` (unset: only a command that uses Azure fails)."""
    path.write_text(
        f'[credentials.default.aws]\nendpoint_url = "{S3_ENDPOINT}"\nregion = "us-east-1"\naccess_key_id = "test"\n'
        'secret_access_key = "test"\n[credentials.default.azure]\nconnection_string_env = "TEST_AZURE"\n'
    )
    return path


@contextlib.contextmanager
def small_filesystem(root: Path, size: str) -> Iterator[Path]:
    """A real filesystem of ``size`` (tmpfs) mounted at ``root``, to fill: the test is skipped where mounting is
    not allowed."""
    root.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(root)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {mounted.stderr.decode().strip()}")
    try:
        yield root
    finally:
        subprocess.run(["umount", str(root)], check=False)


def stack_env(running: RunningSandbox, folder: Path) -> dict[str, str]:
    """What a user sets to run firehose against ``running`` and the local stack: the API, a firehose.toml in
    ``folder`` mapping every credential to the stack, and a state database there."""
    return {
        "LEADCONDUIT_API_KEY": API_KEY,
        "LEADCONDUIT_URL": running.url,
        "FIREHOSE_CONFIG": str(stack_config(folder / "firehose.toml")),
        "TEST_AZURE": AZURE_CONNECTION_STRING,
        "FIREHOSE_STATE": str(folder / "state.sqlite"),
    }


def use_stack_env(running: RunningSandbox, folder: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """``stack_env`` set in this process's environment (for the library's ``Settings.load()``), and returned."""
    values = stack_env(running, folder)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@dataclass
class RunningSandbox:
    """A sandbox served on a free loopback port, with helpers to talk to it."""

    sandbox: Sandbox
    url: str
    bucket: str

    def get(self, path: str, params: Any = None, *, key: str | None = API_KEY) -> httpx.Response:
        auth = ("API", key) if key is not None else None
        return httpx.get(f"{self.url}{path}", params=params, auth=auth, timeout=30)

    def events(self, **params: Any) -> list[dict[str, Any]]:
        response = self.get("/events", params=params)
        assert response.status_code == 200, response.text
        result: list[dict[str, Any]] = response.json()
        return result

    def all_ids(self) -> list[str]:
        """Every id the sandbox serves, ascending (read straight from its store)."""
        return [event["id"] for event in self.sandbox_events()]

    def sandbox_events(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        after = None
        while True:
            params: dict[str, Any] = {"sort": "asc", "limit": 1000}
            if after:
                params["after_id"] = after
            page = self.events(**params)
            if not page:
                return events
            events.extend(page)
            after = page[-1]["id"]

    def submit_url(self, flow_index: int = 1, source_index: int = 0) -> str:
        flow = self.sandbox.flows[flow_index]
        return f"{self.url}/flows/{flow.id}/sources/{flow.sources[source_index].id}/submit"


def start_sandbox(
    targets: Targets,
    *,
    seed: int = 7,
    leads: int = 120,
    days: float = 30,
    until: datetime = UNTIL,
    drop_rate: float = 0.0,
    **kwargs: Any,
) -> tuple[RunningSandbox, Any]:
    bucket = kwargs.pop("bucket", f"fh-{uuid.uuid4().hex[:12]}")
    stream = FirehoseStream(targets, drop_rate=drop_rate, seed=seed)
    sandbox = Sandbox(api_key=API_KEY, stream=stream, seed=seed, bucket=bucket, faults=Faults(), **kwargs)
    sandbox.seed_data(leads=leads, days=days, until=until)
    server = make_server(sandbox)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    port = server.server_address[1]
    return RunningSandbox(sandbox, f"http://127.0.0.1:{port}", bucket), server


def firehose_written(running: RunningSandbox, timeout_seconds: float = 120) -> None:
    """Wait until the sandbox's firehose has written every event, and fail if any write failed: a test must not
    take a store the firehose could not write to (a bucket the local server failed to create) for a gap."""
    stream = running.sandbox.stream
    assert stream.wait(timeout_seconds), "firehose writes did not finish"
    assert stream.failed == 0, f"{stream.failed} firehose writes failed: {stream.errors}"


@contextlib.contextmanager
def stack_sandbox(**options: Any) -> Iterator[RunningSandbox]:
    """A sandbox (``start_sandbox``'s options) whose firehose writes to the local stack's S3 and Azure, buckets
    made, every write landed; stopped after."""
    targets = Targets(s3=S3_CREDENTIAL, azure=AZURE_CREDENTIAL, create_buckets=True)
    running, server = start_sandbox(targets, **options)
    try:
        firehose_written(running, 120)
        yield running
    finally:
        stop_sandbox(server, running)


def stop_sandbox(server: Any, running: RunningSandbox) -> None:
    server.shutdown()
    server.server_close()
    running.sandbox.live.close()
    running.sandbox.stream.close()


@pytest.fixture(scope="session")
def api_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """A seeded sandbox whose firehose writes to a temporary directory (no storage servers needed)."""
    root = tmp_path_factory.mktemp("firehose-dir")
    running, server = start_sandbox(Targets(directory=root, create_buckets=True))
    running.sandbox.stream.wait(60)
    yield running
    stop_sandbox(server, running)


@pytest.fixture()
def sandbox(api_sandbox: RunningSandbox) -> Iterator[RunningSandbox]:
    """The shared API sandbox with its faults reset before and after each test."""
    api_sandbox.sandbox.faults = Faults()
    yield api_sandbox
    api_sandbox.sandbox.faults = Faults()


@pytest.fixture(scope="session")
def stack() -> None:
    """The local S3 and Azure servers must be up (scripts/test starts them)."""
    for name, url, expected in (
        ("S3 (SeaweedFS)", f"{S3_ENDPOINT}/healthz", 200),
        ("Azure Blob (Azurite)", f"http://127.0.0.1:{AZURE_PORT}/devstoreaccount1?comp=list", 403),
    ):
        try:
            status = httpx.get(url, timeout=3).status_code
        except httpx.TransportError:
            status = None
        if status != expected:
            pytest.fail(f"{name} is not running at {url}: start it with `localstack/stack start`")


@pytest.fixture()
def cli_env(sandbox: RunningSandbox, tmp_path: Path) -> dict[str, str]:
    """Environment for CLI runs against the sandbox: only what a user would set, nothing from the shell."""
    return {"LEADCONDUIT_API_KEY": API_KEY, "LEADCONDUIT_URL": sandbox.url, "FIREHOSE_CONFIG": ""}


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings in the developer's shell must not leak into tests; no firehose.toml is picked up."""
    for name in list(os.environ):
        if name.startswith(("LEADCONDUIT_", "FIREHOSE_CONFIG", "AZURE_STORAGE")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
