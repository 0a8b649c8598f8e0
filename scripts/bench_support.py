"""What the benchmark scripts share: the local stack's settings, the comparison tools, a sandbox process, and
peak-memory measurement of one command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from firehose.archive import AzureCredential, S3Credential, Store, StoreUrl, open_store
from firehose.secret import Secret

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
SANDBOX_KEY = "bench-key"


def stack_env() -> dict[str, str]:
    """This environment plus `localstack/stack env` (the local S3 and Azure endpoints and development keys)."""
    out = subprocess.run([str(ROOT / "localstack" / "stack"), "env"], capture_output=True, text=True, check=True)
    # rclone refuses any AWS_CA_BUNDLE over plain HTTP ("unable to load custom CA bundle"); loopback needs none.
    env = {name: value for name, value in os.environ.items() if name != "AWS_CA_BUNDLE"}
    for line in out.stdout.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value.strip("'")
    return env


def stack_config(env: dict[str, str], path: Path) -> Path:
    """A firehose.toml mapping every credential to the local stack, its keys read from the variables
    ``stack_env`` sets."""
    path.write_text(
        f'[credentials.default.aws]\nendpoint_url = "{env["FIREHOSE_TEST_S3_ENDPOINT"]}"\n'
        'region = "us-east-1"\naccess_key_id_env = "AWS_ACCESS_KEY_ID"\n'
        'secret_access_key_env = "AWS_SECRET_ACCESS_KEY"\n'
        '[credentials.default.azure]\nconnection_string_env = "AZURE_STORAGE_CONNECTION_STRING"\n'
    )
    return path


def rclone_env(env: dict[str, str], *, s3_endpoint: str | None = None, name: str = "SW") -> dict[str, str]:
    """rclone remotes for the local stack, by environment: ``sw:`` (S3 at ``s3_endpoint``, default SeaweedFS, or
    ``{name}:``) and ``az:`` (Azurite; Debian's rclone 1.60 takes an endpoint URL for Azure only in emulator mode)."""
    connection = env["AZURE_STORAGE_CONNECTION_STRING"]
    s3 = f"RCLONE_CONFIG_{name}_"
    return {
        s3 + "TYPE": "s3",
        s3 + "PROVIDER": "Other",
        s3 + "ENDPOINT": s3_endpoint or env["FIREHOSE_TEST_S3_ENDPOINT"],
        s3 + "ACCESS_KEY_ID": env["AWS_ACCESS_KEY_ID"],
        s3 + "SECRET_ACCESS_KEY": env["AWS_SECRET_ACCESS_KEY"],
        s3 + "REGION": "us-east-1",
        "RCLONE_CONFIG_AZ_TYPE": "azureblob",
        "RCLONE_CONFIG_AZ_USE_EMULATOR": "true",
        "RCLONE_CONFIG_AZ_ACCOUNT": "devstoreaccount1",
        "RCLONE_CONFIG_AZ_KEY": connection.split("AccountKey=")[1].split(";")[0],
        "RCLONE_CONFIG_AZ_ENDPOINT": connection.split("BlobEndpoint=")[1].rstrip(";"),
    }


def stack_stores(env: dict[str, str], bucket: str) -> tuple[Store, Store]:
    """The bucket on the local stack's S3 and the container on its Azure, opened with its development keys."""
    s3 = open_store(
        StoreUrl("s3", bucket, ""),
        s3=S3Credential(
            endpoint_url=env["FIREHOSE_TEST_S3_ENDPOINT"],
            region="us-east-1",
            access_key_id=env["AWS_ACCESS_KEY_ID"],
            secret_access_key=Secret(env["AWS_SECRET_ACCESS_KEY"]),
        ),
    )
    connection = Secret(env["AZURE_STORAGE_CONNECTION_STRING"])
    return s3, open_store(StoreUrl("az", bucket, ""), azure=AzureCredential(connection_string=connection))


def ensure_tools(packages: dict[str, str] | None = None) -> None:
    """Comparison tools from Debian's packages, installed as root if missing: ``{command: package}``, by
    default awscli and rclone."""
    packages = packages or {"aws": "awscli", "rclone": "rclone"}
    missing = [package for name, package in packages.items() if shutil.which(name) is None]
    if missing:
        print(f"installing {', '.join(missing)} from Debian", file=sys.stderr)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", *missing],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            stdout=subprocess.DEVNULL,
        )


def start_sandbox(
    env: dict[str, str], workdir: Path, *options: str, wait_for_firehose: bool = False
) -> tuple[subprocess.Popen[bytes], str]:
    """A `firehose sandbox` process with these options on a free port; its URL once it answers (and, if asked,
    once its firehose has written everything)."""
    port_file = workdir / "port"
    process = subprocess.Popen(
        [str(BIN / "firehose"), "sandbox", "--port", "0", "--port-file", str(port_file), *options],
        env={**env, "LEADCONDUIT_API_KEY": SANDBOX_KEY},
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 3600
    while not (port_file.exists() and port_file.read_text().strip()):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("bench: the sandbox did not start")
        time.sleep(0.2)
    url = f"http://127.0.0.1:{port_file.read_text().strip()}"
    while wait_for_firehose:
        status = httpx.get(f"{url}/_sandbox/status", auth=("API", SANDBOX_KEY), timeout=30).json()
        if status["firehose"]["pending"] == 0:
            print(
                f"sandbox: {status['events']:,} events; firehose wrote {status['firehose']['written']:,}, "
                f"dropped {status['firehose']['dropped']:,}",
                file=sys.stderr,
            )
            break
        time.sleep(2)
    return process, url


STACK_SERVERS = ("seaweedfs", "azurite")
"""The local stack's servers (their pid files are in ``localstack/.run``): they share this machine's cores with
firehose, so a bench charges their CPU too."""


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far; 0 for one that is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def servers_cpu(**others: int) -> dict[str, float]:
    """CPU seconds so far of each stack server that runs, and of ``others`` (name: pid), by name."""
    run_dir = Path(os.environ.get("FIREHOSE_STACK_DIR", ROOT / "localstack" / ".run"))
    pids = dict(others)
    for name in STACK_SERVERS:
        try:
            pids[name] = int((run_dir / f"{name}.pid").read_text().strip())
        except (OSError, ValueError):
            continue
    return {name: process_cpu(pid) for name, pid in pids.items()}


def peak_rss_mib(command: list[str], env: dict[str, str]) -> float:
    """Peak RSS of one command, measured by a fresh wrapper process so that no other child counts."""
    probe = (
        "import resource, subprocess, sys; "
        "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", probe, *command], env=env, capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) / 1024
