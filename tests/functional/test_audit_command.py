"""`firehose audit` and `audit verify` on the real local stack: a versioned SeaweedFS bucket under Object Lock
(COMPLIANCE default retention), one with a short lifecycle rule, and Azurite; the HTML report in a real
browser (headless Chromium from Debian, installed here when missing)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import uuid
import zlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner, Result

from firehose.archive import StoreUrl, open_store
from firehose.cli import cli
from firehose.errors import ExitCode
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
    stack_config,
    stack_env,
    start_sandbox,
    stop_sandbox,
)

pytestmark = pytest.mark.usefixtures("stack")
START = (UNTIL - timedelta(days=5)).strftime("%Y-%m-%d")
END = (UNTIL - timedelta(days=1)).strftime("%Y-%m-%d")
LOCK_DAYS = 3000  # COMPLIANCE: these test objects can never be deleted, so the tests keep them few


def s3() -> Any:
    return boto3.client(
        "s3", endpoint_url=S3_ENDPOINT, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningSandbox, dict[str, str]]]:
    """A sandbox whose S3 bucket is versioned under Object Lock, with 5% of writes dropped and then repaired."""
    bucket = f"audit-{uuid.uuid4().hex[:10]}"
    client = s3()
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    client.put_object_lock_configuration(
        Bucket=bucket,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": LOCK_DAYS}},
        },
    )
    targets = Targets(s3=S3_CREDENTIAL, azure=AZURE_CREDENTIAL, create_buckets=True)
    running, server = start_sandbox(targets, seed=23, leads=40, days=6, drop_rate=0.05, bucket=bucket)
    firehose_written(running, 120)
    work = tmp_path_factory.mktemp("audit")
    env = stack_env(running, work)
    repair = run(env, "reconcile", "--start", START, "--end", END, "--repair")
    assert repair.exit_code == ExitCode.OK, repair.stderr
    yield running, env
    stop_sandbox(server, running)


def run(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


@pytest.fixture(scope="module")
def pack(locked: tuple[RunningSandbox, dict[str, str]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    _, env = locked
    out = tmp_path_factory.mktemp("packs") / "evidence"
    result = run(env, "audit", "pack", "--start", START, "--end", END, "--out", str(out), "--require-retention", "7y")
    # Azurite reports no immutability policy, so retention FAILs overall (exit 1) while coverage PASSes.
    assert result.exit_code == ExitCode.DIFFERENCES, result.stderr
    assert "coverage PASS, retention FAIL" in result.stderr and "signing key made at" in result.stderr
    return out


def test_the_pack_holds_coverage_manifest_retention_summary_report_and_signature(
    pack: Path, locked: tuple[RunningSandbox, dict[str, str]]
) -> None:
    box, _ = locked
    names = {p.name for p in pack.iterdir()}
    assert names == {
        "coverage.csv", "coverage.json", "manifest.ndjson", "retention.json", "findings.ndjson", "summary.json",
        "report.html", "signing-key.pub.pem", "SHA256SUMS", "SHA256SUMS.sig",
    }  # fmt: skip
    assert (pack.parent / "evidence.signing-key.pem").exists(), "the private key is saved beside the pack, not in it"
    summary = json.loads((pack / "summary.json").read_text())
    assert summary["schema"] == "firehose.audit/1" and summary["coverage_verdict"] == "PASS"
    assert summary["coverage"]["repaired"] > 0 and summary["coverage"]["missing"] == 0
    coverage = json.loads((pack / "coverage.json").read_text())["coverage"]
    assert {row["day"] for row in coverage} <= {f"2026-11-{d}" for d in range(15, 20)}

    # Every archived event object of the period, hashed.
    lines = [json.loads(line) for line in (pack / "manifest.ndjson").read_text().splitlines()]
    store = open_store(StoreUrl("s3", box.bucket, ""), s3=S3_CREDENTIAL)
    sample = next(line for line in lines if line["destination"].startswith("s3://"))
    body, info = store.fetch(sample["key"])
    import hashlib

    assert sample["sha256"] == hashlib.sha256(body).hexdigest() and sample["version_id"] == info.version_id
    assert sample["retention_mode"] == "COMPLIANCE" and sample["retain_until"] > "2030"
    assert summary["manifest"]["objects"] == len(lines) > 0
    # Every object coverage counts as archived is in it: the period's feedback on older leads too.
    assert summary["manifest"]["archived_in_coverage"] == summary["coverage"]["archived"] == len(lines)
    assert summary["manifest"]["complete"] is True

    retention = {d["destination"]: d for d in json.loads((pack / "retention.json").read_text())["destinations"]}
    s3_checks = {
        c["check"]: c["verdict"] for d, item in retention.items() if d.startswith("s3://") for c in item["checks"]
    }
    assert s3_checks == {"object_lock": "PASS", "versioning": "PASS", "lifecycle": "PASS"}
    azure = next(item for d, item in retention.items() if d.startswith("az://"))
    azure_checks = {c["check"]: (c["verdict"], c["finding"]) for c in azure["checks"]}
    assert azure_checks["immutability"][0] == "FAIL" and "no immutability policy" in azure_checks["immutability"][1]
    assert azure_checks["lifecycle"][0] == "UNKNOWN" and "not reported by this endpoint" in azure_checks["lifecycle"][1]


def test_no_lead_data_in_the_pack(pack: Path, locked: tuple[RunningSandbox, dict[str, str]]) -> None:
    box, _ = locked
    leads = [e["vars"]["lead"] for e in box.sandbox_events() if e["type"] == "source"]
    text = "\n".join(path.read_text(errors="replace") for path in pack.iterdir())
    for lead in leads:
        for field in ("email", "phone_1", "last_name"):
            if lead.get(field):
                assert str(lead[field]) not in text, field


def test_verify_passes_untouched_then_catches_a_deleted_and_a_changed_object(
    pack: Path, locked: tuple[RunningSandbox, dict[str, str]], tmp_path: Path
) -> None:
    _, env = locked
    clean = run(env, "audit", "verify", str(pack))
    assert clean.exit_code == ExitCode.OK, clean.output
    assert "signature valid" in clean.stderr and "0 gone or changed" in clean.stderr
    copy = tmp_path / "copy"
    shutil.copytree(pack, copy)
    lines = [json.loads(line) for line in (copy / "manifest.ndjson").read_text().splitlines()]
    s3_lines = [line for line in lines if line["destination"].startswith("s3://")]
    bucket = s3_lines[0]["destination"].split("/")[2]
    client = s3()
    # The module's bucket is every test's: put back after (a test of the pack fetched the deleted object).
    original = client.get_object(Bucket=bucket, Key=s3_lines[1]["key"])["Body"].read()
    # versioned: a delete marker, locked versions stay
    marker = client.delete_object(Bucket=bucket, Key=s3_lines[0]["key"])["VersionId"]
    client.put_object(Bucket=bucket, Key=s3_lines[1]["key"], Body=b'{"changed": true}')
    try:
        found = run(env, "audit", "verify", str(copy), "--format", "json")
    finally:
        client.delete_object(Bucket=bucket, Key=s3_lines[0]["key"], VersionId=marker)  # the locked version is latest
        client.put_object(Bucket=bucket, Key=s3_lines[1]["key"], Body=original)  # locked: a version of the same bytes
    assert found.exit_code == ExitCode.DIFFERENCES
    report = json.loads(found.stdout)
    statuses = {item["key"]: (item["status"], item["reason"]) for item in report["changed"]}
    assert statuses[s3_lines[0]["key"]][0] == "gone" and "intact" in statuses[s3_lines[0]["key"]][1]
    assert statuses[s3_lines[1]["key"]][0] == "changed"
    assert len(statuses) == 2 and report["signature_ok"] is True


def test_verify_catches_a_tampered_pack_file_and_a_re_signed_pack(
    pack: Path, locked: tuple[RunningSandbox, dict[str, str]], tmp_path: Path
) -> None:
    _, env = locked
    copy = tmp_path / "tampered"
    shutil.copytree(pack, copy)
    (copy / "coverage.csv").write_text((copy / "coverage.csv").read_text().replace(",1,", ",0,", 1) + "\n")
    result = run(env, "audit", "verify", str(copy))
    assert result.exit_code == ExitCode.DIFFERENCES
    assert "coverage.csv: changed since the pack was signed" in result.stdout

    # Someone re-signs the altered pack with a key of their own: only a trusted key catches that.
    resigned = tmp_path / "resigned"
    out = run(  # the old spelling, bare `audit` with a pack's options: still makes one, saying what is new
        env, "audit", "--start", START, "--end", END, "--out", str(resigned), "--signing-key", str(tmp_path / "k")
    )
    assert out.exit_code in (ExitCode.OK, ExitCode.DIFFERENCES)
    assert "use `firehose audit pack`" in out.stderr.splitlines()[0] and (resigned / "SHA256SUMS.sig").exists()
    trusted = pack / "signing-key.pub.pem"
    caught = run(env, "audit", "verify", str(resigned), "--public-key", str(trusted))
    assert caught.exit_code == ExitCode.DIFFERENCES and "not the trusted key" in caught.stdout


def test_a_short_lifecycle_rule_fails_retention(locked: tuple[RunningSandbox, dict[str, str]], tmp_path: Path) -> None:
    _, env = locked
    bucket = f"audit-lc-{uuid.uuid4().hex[:8]}"
    client = s3()
    client.create_bucket(Bucket=bucket)
    client.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                {"ID": "thirty-days", "Status": "Enabled", "Filter": {"Prefix": "events/"}, "Expiration": {"Days": 30}}
            ]
        },
    )
    out = tmp_path / "lc"
    result = run(
        env, "audit", "pack", "--start", START, "--end", END, "--out", str(out), "--require-retention", "90d",
        "--archive", f"s3://{bucket}/events/auto",
    )  # fmt: skip
    assert result.exit_code == ExitCode.DIFFERENCES
    [item] = json.loads((out / "retention.json").read_text())["destinations"]
    checks = {c["check"]: (c["verdict"], c["finding"]) for c in item["checks"]}
    assert (
        checks["lifecycle"][0] == "FAIL"
        and "'thirty-days' deletes objects under events/ after 30 days" in checks["lifecycle"][1]
    )
    assert checks["object_lock"][0] == "FAIL" and checks["versioning"][0] == "FAIL"


# -- the HTML report in a real browser ----------------------------------------------------------------------
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    apt = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "chromium"]
    if subprocess.run(install, env=apt, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
        # A fresh machine's package lists may be missing or stale: refresh them once, then install.
        subprocess.run(["apt-get", "update", "-qq"], env=apt, check=True, stdout=subprocess.DEVNULL)
        subprocess.run(install, env=apt, check=True, stdout=subprocess.DEVNULL)
    return shutil.which("chromium") or "/usr/bin/chromium"


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of RGBA/RGB pixels of an 8-bit, non-interlaced PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, chunks, header = 8, b"", b""
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        body = data[offset + 8 : offset + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks += body
        offset += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6)
    step = 4 if colour == 6 else 3
    raw = zlib.decompress(chunks)
    rows, previous, stride = [], bytearray(width * step), width * step
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - step] if x >= step else 0
            up, corner = previous[x], previous[x - step] if x >= step else 0
            if kind == 1:
                line[x] = (line[x] + left) & 255
            elif kind == 2:
                line[x] = (line[x] + up) & 255
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                near = min((abs(p - left), left), (abs(p - up), up), (abs(p - corner), corner))[1]
                line[x] = (line[x] + near) & 255
        rows.append(bytes(line))
        previous = line
    return width, height, [bytes(b for i, b in enumerate(row) if i % step < 3) for row in rows]


def test_the_report_renders_the_calendar_in_a_real_browser(pack: Path, tmp_path: Path) -> None:
    html = (pack / "report.html").read_text()
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in html
    days = html.count('class="day"')
    assert days == 5, "one square per day of the period"
    shot = tmp_path / "report.png"
    subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,900", f"--screenshot={shot}",
         (pack / "report.html").as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    width, height, rows = png_pixels(shot.read_bytes())
    amber, green = bytes.fromhex("bf8700"), bytes.fromhex("2da44e")
    painted = {
        colour: sum(1 for row in rows for i in range(0, len(row), 3) if row[i : i + 3] == colour)
        for colour in (amber, green)
    }
    assert width >= 1000 and height >= 800
    # Repaired days are amber, complete ones green: a calendar square is 14 x 14 pixels.
    assert painted[amber] + painted[green] >= 5 * 14 * 14 - 50, painted


def test_verify_as_json_from_a_real_process_and_urls_named_once(
    pack: Path, locked: tuple[RunningSandbox, dict[str, str]], tmp_path: Path
) -> None:
    """Unbuffered (as under many schedulers), the JSON answer once ended in a traceback; and a gone object's URL
    repeated its prefix."""
    _, env = locked
    command = [sys.executable, "-m", "firehose", "audit", "verify", str(pack), "--format", "json"]
    clean = subprocess.run(command, env={**os.environ, **env, "PYTHONUNBUFFERED": "1"}, capture_output=True, text=True)
    answer = json.loads(clean.stdout)
    assert clean.returncode == ExitCode.OK and answer["ok"], clean.stderr
    assert answer["schema"] == "firehose.audit-verify/1" and "Traceback" not in clean.stderr
    copy = tmp_path / "copy"
    shutil.copytree(pack, copy)
    lines = [json.loads(line) for line in (copy / "manifest.ndjson").read_text().splitlines()]
    azure = next(line for line in lines if line["destination"].startswith("az://"))
    container = azure["destination"].split("/")[2]
    from azure.storage.blob import BlobServiceClient

    blob = BlobServiceClient.from_connection_string(AZURE_CONNECTION_STRING).get_blob_client(container, azure["key"])
    original = blob.download_blob().readall()
    blob.delete_blob()
    try:
        found = run(env, "audit", "verify", str(copy))
    finally:
        blob.upload_blob(original)  # the module's container is every test's: a clean verify after this one passes
    assert found.exit_code == ExitCode.DIFFERENCES
    assert f"gone: az://{container}/{azure['key']} (event {azure['event_id']})" in found.stdout


def test_verify_reports_manifest_lines_that_are_not_entries_and_goes_on(
    pack: Path, locked: tuple[RunningSandbox, dict[str, str]], tmp_path: Path
) -> None:
    _, env = locked
    copy = tmp_path / "odd"
    shutil.copytree(pack, copy)
    manifest = copy / "manifest.ndjson"
    good = manifest.read_text()
    manifest.write_text("{}\n" + good + '{"destination": "s3://x", "key": "k", "sha256": "nothex"}\nnot json\n')
    import hashlib

    sums = copy / "SHA256SUMS"
    sums.write_text(
        "".join(
            f"{hashlib.sha256(manifest.read_bytes()).hexdigest()}  manifest.ndjson\n" if "manifest.ndjson" in line
            else line + "\n"
            for line in sums.read_text().splitlines()
        )
    )  # fmt: skip
    result = run(env, "audit", "verify", str(copy), "--format", "json")
    assert result.exit_code == ExitCode.DIFFERENCES
    report = json.loads(result.stdout)
    invalid = [item["reason"] for item in report["changed"] if item["status"] == "invalid"]
    total = len(good.splitlines())
    assert invalid[0] == "manifest.ndjson line 1: no destination"
    assert f"manifest.ndjson line {total + 2}: sha256 is not a SHA-256 digest" in invalid
    assert any(reason.startswith(f"manifest.ndjson line {total + 3}") for reason in invalid)
    assert report["objects"] == total + 3 and len(invalid) == 3, "every line checked, the good ones too"


def test_the_manifest_holds_the_periods_feedback_on_older_leads_and_verify_sees_one_deleted(
    tmp_path: Path,
) -> None:
    """Coverage counts every archived event of the period, feedback days after a lead made before it included;
    the manifest once left those out, so deleting one went unseen by `audit verify`."""
    targets = Targets(s3=S3_CREDENTIAL, azure=AZURE_CREDENTIAL, create_buckets=True)
    box, server = start_sandbox(targets, seed=23, leads=120, days=10)
    try:
        firehose_written(box, 120)
        config = stack_config(tmp_path / "firehose.toml")
        env = {"LEADCONDUIT_API_KEY": API_KEY, "LEADCONDUIT_URL": box.url, "FIREHOSE_CONFIG": str(config),
               "TEST_AZURE": AZURE_CONNECTION_STRING, "FIREHOSE_STATE": str(tmp_path / "s.sqlite")}  # fmt: skip
        first, last = (UNTIL - timedelta(days=5)), (UNTIL - timedelta(days=1))
        out = tmp_path / "pack"
        made = run(env, "audit", "pack", "--start", f"{first:%Y-%m-%d}", "--end", f"{last:%Y-%m-%d}", "--out", str(out))
        assert made.exit_code in (ExitCode.OK, ExitCode.DIFFERENCES), made.stderr
        summary = json.loads((out / "summary.json").read_text())
        lines = [json.loads(line) for line in (out / "manifest.ndjson").read_text().splitlines()]
        assert summary["manifest"]["complete"] is True
        assert summary["manifest"]["archived_in_coverage"] == summary["coverage"]["archived"] == len(lines)
        start = int(first.timestamp())
        older = [line for line in lines if int(line["lead_id"][:8], 16) < start - 3600]
        assert older, "feedback in the period on leads made before it"
        gone = next(line for line in older if line["destination"].startswith("s3://"))
        s3().delete_object(Bucket=gone["destination"].split("/")[2], Key=gone["key"])
        checked = run(env, "audit", "verify", str(out), "--format", "json")
        assert checked.exit_code == ExitCode.DIFFERENCES
        assert [item["key"] for item in json.loads(checked.stdout)["changed"]] == [gone["key"]]
    finally:
        stop_sandbox(server, box)
