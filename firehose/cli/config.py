"""``firehose config show`` and ``config init``: the settings as resolved, and a file to start from."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import click

from firehose.cli.app import cli, storage_settings
from firehose.cli.options import storage_options
from firehose.cli.output import binary_stdout, say
from firehose.errors import ConfigError, UsageError

TEMPLATE = """\
# firehose settings. Flags beat FIREHOSE_* environment variables, which beat this file, which beats the defaults.
# No secret belongs here: every *_env names the environment variable that holds it.

[leadconduit]
# url = "https://app.leadconduit.com"   # or LEADCONDUIT_URL / --url
api_key_env = "LEADCONDUIT_API_KEY"     # the variable holding the API key
# timeout_seconds = 60
# max_attempts = 6
# backoff_max_seconds = 30

# LeadConduit never gives out the storage secrets behind a firehose credential_id: map each one to a local way
# to reach its store. Any credential_id not listed uses the default of its service.
#
# [credentials."5fd4371e940df5a34a3888b2"]   # a firehose credential_id
# service = "aws"
# region = "us-east-1"
# access_key_id_env = "ARCHIVE_KEY_ID"
# secret_access_key_env = "ARCHIVE_SECRET"
#
# [credentials."5fd4371e940df5a34a3888b3"]
# service = "azure"
# connection_string_env = "ARCHIVE_AZURE"

[credentials.default.aws]
# profile = "archive-reader"              # or nothing: the AWS SDK's own chain (environment, profile, role)

# [credentials.default.azure]
# connection_string_env = "AZURE_STORAGE_CONNECTION_STRING"
"""


@cli.group("config")
def config_group() -> None:
    """The settings firehose would use here, and a config file to start from.

    \b
    Example:
      firehose config show
      firehose config init
    """


@config_group.command("show")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--url", help="LeadConduit base URL, as the other commands take it.")
@storage_options
@click.pass_context
def config_show(ctx: click.Context, /, fmt: str, url: str | None, **storage: Any) -> None:
    """Print the resolved settings, each with where it came from; secrets show as ***, never their value.

    \b
    Example:
      firehose config show
      firehose --config ops.toml config show --format json
    """
    settings = storage_settings(ctx, storage, url=url)
    described = settings.described()
    if fmt == "json":
        from firehose.report import json_document

        out = binary_stdout()
        out.write(json_document({"schema": "firehose.config/1", **described}))
        out.flush()
        return
    for line in _text(described):
        click.echo(line)


def _text(described: dict[str, Any]) -> list[str]:
    lines = []
    for name in ("config_file", "state_file", "sdk_reads"):
        lines.append(f"{name:<32} {_value(described[name]['value'])}  ({described[name]['from']})")
    for name, item in described["leadconduit"].items():
        lines.append(f"{'leadconduit.' + name:<32} {_value(item['value'])}  ({item['from']})")
    for name, fields in described["credentials"].items():
        lines.append(f"{'credentials.' + name:<32} " + (", ".join(f"{k}={v}" for k, v in fields.items()) or "-"))
    for name, fields in described["credential_overrides"].items():
        if fields:
            lines.append(f"{'overrides.' + name:<32} " + ", ".join(f"{k}={v}" for k, v in fields.items()))
    lines.extend(f"{'unusable credential':<32} {reason}" for reason in described["broken_credentials"])
    return lines


def _value(value: Any) -> str:
    return "-" if value is None else str(value)


@config_group.command("init")
@click.argument("path", required=False, default="firehose.toml")
def config_init(path: str) -> None:
    """Write a commented config file to start from (PATH, default ./firehose.toml); an existing file is left
    alone.

    \b
    Example:
      firehose config init
      firehose config init /etc/firehose/firehose.toml
    """
    target = Path(path)
    if target.exists() or target.is_symlink():
        raise UsageError(f"{path} exists already; firehose config init never overwrites a file")
    try:
        # Written whole beside it, then linked into place: a full disk or a kill leaves no cut file, and a file
        # made meanwhile is never overwritten (the link fails).
        descriptor, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    temporary = Path(name)
    try:
        with os.fdopen(descriptor, "w") as out:
            out.write(TEMPLATE)
        os.chmod(temporary, 0o644)  # a config file, no secret in it
        os.link(temporary, target)
    except FileExistsError:
        raise UsageError(f"{path} exists already; firehose config init never overwrites a file") from None
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        temporary.unlink(missing_ok=True)
    say(f"firehose config init: wrote {path}; `firehose config show` shows what it resolves to", level="info")
