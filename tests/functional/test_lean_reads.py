"""The lean read path against stores that misbehave: throttling, failing, trickling, refusing, and answers it
does not understand. The store under test is a real ``S3Store`` or ``AzureStore`` whose endpoint is a real HTTP
server on loopback that answers what each test scripts."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

import firehose.http
from firehose.archive import AzureCredential, S3Credential, Store, StoreUrl, open_store
from firehose.errors import ArchiveAccessDenied, ArchiveError, ArchiveNotFound
from firehose.http import RetryPolicy
from firehose.secret import Secret
from tests.functional.replay.capture import Answer, Captured, CaptureServer

FAST = RetryPolicy(max_attempts=3, backoff_base_seconds=0.01, backoff_max_seconds=0.05)
BODY = b'{"id":"6ae18ae9a55055783f30ae4c"}'
AZURE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(firehose.http, "STORE_RETRY", FAST)
    monkeypatch.setattr(firehose.http, "STORE_TIMEOUT_SECONDS", 1.0)


def s3_store(url: str) -> Store:
    credential = S3Credential(endpoint_url=url, region="us-east-1", access_key_id="AKID", secret_access_key=Secret("s"))
    return open_store(StoreUrl("s3", "bucket", ""), s3=credential)


def azure_store(url: str) -> Store:
    connection = f"DefaultEndpointsProtocol=http;AccountName=acct;AccountKey={AZURE_KEY};BlobEndpoint={url}/acct;"
    return open_store(StoreUrl("az", "container", ""), azure=AzureCredential(connection_string=Secret(connection)))


STORES = {"s3": s3_store, "az": azure_store}


def scripted(*answers: Answer) -> CaptureServer:
    """A server that gives these answers in turn, then the last one for ever."""
    queue = list(answers)

    def answer(_: Captured) -> Answer:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return CaptureServer(answer=answer)


@pytest.fixture()
def servers() -> Iterator[list[CaptureServer]]:
    made: list[CaptureServer] = []
    yield made
    for server in made:
        server.close()


@pytest.mark.parametrize("scheme", ["s3", "az"])
def test_throttling_is_retried_and_every_attempt_is_signed_afresh(scheme: str, servers: list[CaptureServer]) -> None:
    server = scripted((503, {"Retry-After": "0"}, b"<Error><Code>SlowDown</Code></Error>"), (200, {}, BODY))
    servers.append(server)
    store = STORES[scheme](server.url)
    assert store.read("lead/event.json") == BODY
    assert len(server.requests) == 2
    for request in server.requests:
        assert request.method == "GET" and request.path.endswith("/lead/event.json")
        assert request.headers["Authorization"].startswith("AWS4-HMAC-SHA256" if scheme == "s3" else "SharedKey")
        assert "Accept-Encoding" not in request.headers, "stored bytes are read as they are, never decoded"
    store.close()


@pytest.mark.parametrize("scheme", ["s3", "az"])
def test_a_store_that_keeps_failing_is_an_error_naming_the_key(scheme: str, servers: list[CaptureServer]) -> None:
    server = scripted((500, {}, b"<Error><Code>InternalError</Code></Error>"))
    servers.append(server)
    store = STORES[scheme](server.url)
    with pytest.raises(ArchiveError, match=f"{scheme}://.*/lead/event.json: .*500"):
        store.read("lead/event.json")
    assert len(server.requests) == FAST.max_attempts
    store.close()


@pytest.mark.parametrize("scheme", ["s3", "az"])
def test_404_and_403_are_answers_not_retried(scheme: str, servers: list[CaptureServer]) -> None:
    missing = (404, {"x-ms-error-code": "BlobNotFound"}, b"<Error><Code>NoSuchKey</Code></Error>")
    server = scripted(missing, (403, {}, b"<Error><Code>AccessDenied</Code></Error>"))
    servers.append(server)
    store = STORES[scheme](server.url)
    with pytest.raises(ArchiveNotFound, match=r"lead/gone\.json: no such"):
        store.read("lead/gone.json")
    with pytest.raises(ArchiveAccessDenied, match=r"lead/locked\.json: access denied"):
        store.read("lead/locked.json")
    assert len(server.requests) == 2
    store.close()


def test_an_answer_the_lean_path_does_not_know_is_asked_again_through_boto3(servers: list[CaptureServer]) -> None:
    server = scripted((400, {}, b"<Error><Code>AuthorizationHeaderMalformed</Code></Error>"))
    servers.append(server)
    store = s3_store(server.url)
    with pytest.raises(ArchiveError, match=r"s3://bucket/lead/event\.json: AuthorizationHeaderMalformed"):
        store.read("lead/event.json")
    agents = [request.headers.get("User-Agent", "") for request in server.requests]
    assert "Boto3" in agents[-1] and "Boto3" not in agents[0]
    store.close()


def trickling_server(header_first: bool) -> tuple[str, threading.Event]:
    """A server that answers each connection a byte every 0.3 s (after a whole head if ``header_first``)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            listener.settimeout(0.2)
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=trickle, args=(connection,), daemon=True).start()
        listener.close()

    def trickle(connection: socket.socket) -> None:
        with connection:
            connection.recv(65536)
            head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
            data = head + b"x" * 1000 if header_first else head
            for index in range(len(data)):
                if stop.is_set():
                    return
                try:
                    connection.sendall(data[index : index + 1])
                except OSError:
                    return
                time.sleep(0.3)

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}", stop


@pytest.mark.parametrize("header_first", [True, False])
def test_a_trickling_store_meets_a_deadline(header_first: bool) -> None:
    url, stop = trickling_server(header_first)
    store = s3_store(url)
    started = time.monotonic()
    try:
        with pytest.raises(ArchiveError, match=r"s3://bucket/k\.json: no whole answer within its deadline"):
            store.read("k.json")
    finally:
        stop.set()
        store.close()
    # 3 attempts, each cut at its deadline (1 s, plus 1 ms per KB of a declared body), and short waits between.
    assert time.monotonic() - started < 3 * 1.5 + 1


def test_a_refused_connection_is_retried_then_named() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = s3_store(f"http://127.0.0.1:{port}")
    with pytest.raises(ArchiveError, match=r"s3://bucket/k.json: cannot reach the store: connection refused \(gave up"):
        store.read("k.json")
    store.close()


def raw_server(answer: bytes) -> tuple[str, threading.Event, list[int]]:
    """A server that reads one request per connection and writes ``answer`` as given, then closes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    stop, served = threading.Event(), [0]

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.recv(65536)
                served[0] += 1
                connection.sendall(answer)
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}", stop, served


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\n"
        + BODY[:5]
        + b"\r\n"
        + f"{len(BODY) - 5:x}".encode()
        + b"\r\n"
        + BODY[5:]
        + b"\r\n0\r\nX-Trailer: t\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + BODY,
        b"HTTP/1.0 200 OK\r\nContent-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY,
    ],
    ids=["chunked", "until-close", "http-1.0"],
)
def test_every_way_a_body_may_be_delimited_is_read_whole(answer: bytes) -> None:
    url, stop, _ = raw_server(answer)
    store = s3_store(url)
    try:
        assert store.read("k.json") == BODY
        assert store.read("k.json") == BODY, "a closed connection is opened again for the next read"
    finally:
        stop.set()
        store.close()


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + BODY, "the server closed the connection mid-answer"),
        (b"garbage\r\n\r\n", "the answer is not HTTP"),
        (b"", "the server closed the connection"),
    ],
    ids=["cut-short", "not-http", "nothing"],
)
def test_a_store_that_lies_or_hangs_up_is_retried_then_an_error(answer: bytes, said: str) -> None:
    url, stop, served = raw_server(answer)
    store = s3_store(url)
    try:
        with pytest.raises(ArchiveError, match=rf"s3://bucket/k\.json: {said} \(gave up after 3 attempts\)"):
            store.read("k.json")
    finally:
        stop.set()
        store.close()
    assert served[0] == FAST.max_attempts


@pytest.mark.usefixtures("stack")
@pytest.mark.parametrize("scheme", ["s3", "az"])
def test_reads_through_many_thread_pools_share_a_bounded_number_of_connections(scheme: str) -> None:
    """Found by the property test as ``select()`` refusing a descriptor over 1023: connections were kept per
    thread, and each read_many (each window of a content run) reads through new threads, so a long run piled up
    thousands of sockets. Connections are lent per request and given back, so thread pools share them."""
    import uuid

    from firehose.archive.listing import read_many
    from tests.conftest import AZURE_CREDENTIAL, S3_CREDENTIAL

    store = open_store(StoreUrl(scheme, f"fd-{uuid.uuid4().hex[:10]}", ""), s3=S3_CREDENTIAL, azure=AZURE_CREDENTIAL)
    store.create()
    keys = [f"fd-test/{number}.json" for number in range(8)]
    for key in keys:
        store.write(key, b"{}")
    try:
        assert [body for _, body in read_many(store, keys, workers=8)] == [b"{}"] * 8
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(20):
            list(read_many(store, keys, workers=8))
        assert len(os.listdir("/proc/self/fd")) - before < 8, "connections of finished reads stay open"
    finally:
        store.close()


SHAPES = [
    f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURE_KEY};"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;",
    f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={AZURE_KEY};EndpointSuffix=core.windows.net",
    f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={AZURE_KEY};EndpointSuffix=core.chinacloudapi.cn",
    f"AccountName=acct;AccountKey={AZURE_KEY}",
    f"DefaultEndpointsProtocol=http;AccountName=acct;AccountKey={AZURE_KEY}",  # no suffix: the SDK says https
    f"BlobEndpoint=https://acct.blob.core.windows.net/;AccountName=acct;AccountKey={AZURE_KEY}",
    "BlobEndpoint=https://acct.blob.core.windows.net;SharedAccessSignature=sv=2021-12-02&ss=b&sig=abc%2Bdef",
]


@pytest.mark.parametrize("connection", SHAPES)
def test_the_lean_path_reads_a_connection_string_as_the_sdk_does(connection: str) -> None:
    """The lean path finds the container's URL and the signing account without the SDK (whose import costs a
    command 0.2 s): for every shape of connection string, what the SDK's own ContainerClient says."""
    from azure.storage.blob import ContainerClient

    from firehose.archive.azure import lean_reads_for

    lean = lean_reads_for("my-container", AzureCredential(connection_string=Secret(connection)))
    sdk = ContainerClient.from_connection_string(connection, "my-container")
    assert lean is not None
    assert lean.url == sdk.url
    assert (lean.shared_key.account if lean.shared_key else None) == (
        sdk.account_name if "AccountKey=" in connection else None
    )
    lean.close()


def test_a_sas_token_beside_an_account_url_reads_as_the_sdk_does() -> None:
    from azure.storage.blob import BlobServiceClient

    from firehose.archive.azure import lean_reads_for

    for url in ("https://acct.blob.core.windows.net", "https://acct.blob.core.windows.net/"):
        credential = AzureCredential(account_url=url, sas_token=Secret("?sv=2021-12-02&sig=abc"))
        lean = lean_reads_for("c1", credential)
        assert lean is not None and lean.shared_key is None
        assert lean.url == BlobServiceClient(url, credential="sv=2021-12-02&sig=abc").get_container_client("c1").url
        lean.close()


@pytest.mark.parametrize(
    ("answer", "error", "said"),
    [
        ((404, {"x-ms-error-code": "ContainerNotFound"}, b""), ArchiveNotFound, "container container does not exist"),
        ((403, {"x-ms-error-code": "AuthenticationFailed"}, b""), ArchiveAccessDenied, "access denied"),
        ((409, {"x-ms-error-code": "Odd"}, b""), ArchiveError, "HTTP 409 Odd"),
    ],
)
def test_a_lean_listing_that_fails_says_why_naming_the_container(
    answer: Answer, error: type[ArchiveError], said: str, servers: list[CaptureServer]
) -> None:
    """List Blobs now goes the lean path too (signed with Shared Key): its failures read as the SDK's did."""
    server = scripted(answer)
    servers.append(server)
    store = azure_store(server.url)
    with pytest.raises(error, match=f"az://container: {said}"):
        list(store.list())
    request = server.requests[0]
    assert request.headers["Authorization"].startswith("SharedKey acct:")
    assert "comp=list" in request.path and "restype=container" in request.path
    store.close()


def test_listing_and_reading_an_azure_container_does_not_load_the_sdk(stack: None) -> None:
    """A command that lists and reads an Azure container never imports azure-storage-blob: that import is 0.2 s
    of start-up, in which Azurite's one thread (or a real store) waits for nothing."""
    import subprocess
    import sys

    from tests.conftest import AZURE_CONNECTION_STRING

    code = (
        "import sys\n"
        "from firehose.archive import AzureCredential, StoreUrl, open_store\n"
        "from firehose.secret import Secret\n"
        f"cs = {AZURE_CONNECTION_STRING!r}\n"
        "store = open_store(StoreUrl('az', 'lean-no-sdk', ''), azure=AzureCredential(connection_string=Secret(cs)))\n"
        "try:\n"
        "    list(store.list())\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__)\n"
        "print(sorted(name for name in sys.modules if name.startswith('azure.storage')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.splitlines()[-1] == "[]", done.stdout + done.stderr


def test_the_lean_path_asks_for_a_service_version_that_takes_start_from_and_the_sdk_knows() -> None:
    """``startFrom`` (where a window's listing begins) came with service version 2026-02-06: an older version
    would have a real Azure account list the whole prefix from its start. The SDK must know the version too."""
    from azure.storage.blob._serialize import _SUPPORTED_API_VERSIONS

    from firehose.archive.azure import LEAN_API_VERSION

    assert LEAN_API_VERSION >= "2026-02-06"
    assert LEAN_API_VERSION in _SUPPORTED_API_VERSIONS
