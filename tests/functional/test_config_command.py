"""`firehose config show` and `config init`: the settings as resolved, with where each came from, and never a
secret's value."""

from __future__ import annotations

import json
from pathlib import Path

from tests.functional.clirun import invoke

SECRET = "s3cr3t-value-never-shown-8c1f"


def test_show_names_each_source_and_hides_every_secret(tmp_path: Path) -> None:
    config = tmp_path / "firehose.toml"
    config.write_text(
        '[leadconduit]\nmax_attempts = 3\n[credentials."5fd4371e940df5a34a3888b2"]\nservice = "aws"\n'
        'endpoint_url = "http://user:pw@127.0.0.1:8333"\naccess_key_id = "AKIAEXAMPLE"\n'
        'secret_access_key_env = "ARCHIVE_SECRET"\n'
    )
    env = {
        "FIREHOSE_CONFIG": str(config),
        "LEADCONDUIT_API_KEY": SECRET,
        "ARCHIVE_SECRET": SECRET,
        "FIREHOSE_STATE": str(tmp_path / "s.db"),
        "AZURE_STORAGE_CONNECTION_STRING": f"AccountKey={SECRET}",
    }
    shown = invoke(["config", "show", "--url", "https://leads.example"], env)
    assert shown.code == 0, shown.stderr
    assert SECRET not in shown.stdout + shown.stderr and "pw@" not in shown.stdout
    lines = {line.split()[0]: line for line in shown.stdout.splitlines()}
    assert "https://leads.example" in lines["leadconduit.url"] and "(--url)" in lines["leadconduit.url"]
    assert "***" in lines["leadconduit.api_key"] and "(LEADCONDUIT_API_KEY)" in lines["leadconduit.api_key"]
    assert "3" in lines["leadconduit.max_attempts"] and "[leadconduit]" in lines["leadconduit.max_attempts"]
    assert "(default)" in lines["leadconduit.timeout_seconds"]
    assert str(tmp_path / "s.db") in lines["state_file"] and "(FIREHOSE_STATE)" in lines["state_file"]
    entry = lines["credentials.5fd4371e940df5a34a3888b2"]
    assert "secret_access_key=***" in entry and "access_key_id=AKIA***" in entry and "EXAMPLE" not in entry

    as_json = invoke(["config", "show", "--format", "json"], env)
    described = json.loads(as_json.stdout)
    assert described["schema"] == "firehose.config/1" and SECRET not in as_json.stdout
    assert described["credential_overrides"]["azure_sdk_variable"] == {"connection_string": "***"}


def test_init_writes_a_file_that_loads_and_never_overwrites_one(tmp_path: Path) -> None:
    path = tmp_path / "firehose.toml"
    made = invoke(["config", "init", str(path)], {})
    assert made.code == 0 and path.is_file(), made.stderr
    shown = invoke(["config", "show"], {"FIREHOSE_CONFIG": str(path)})
    assert shown.code == 0 and str(path) in shown.stdout, shown.stderr
    path.write_text("# mine\n")
    again = invoke(["config", "init", str(path)], {})
    assert again.code == 2 and "exists already" in again.stderr
    assert path.read_text() == "# mine\n"


def test_init_cut_short_leaves_no_file_that_would_block_the_next_one(tmp_path: Path) -> None:
    """With the file size limited (a full disk), init once left a cut file that parsed, and refused to redo it."""
    import resource
    import subprocess
    import sys

    path = tmp_path / "firehose.toml"

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (512, 512))

    subprocess.run([sys.executable, "-m", "firehose", "config", "init", str(path)], preexec_fn=small_files,
                   capture_output=True, timeout=60)  # fmt: skip
    assert not path.exists(), "no cut file in its place"
    made = invoke(["config", "init", str(path)], {})
    assert made.code == 0 and "[leadconduit]" in path.read_text()
