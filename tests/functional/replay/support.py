"""Helpers of the replay tests: run the command, and read what the target received."""

from __future__ import annotations

import base64
from typing import Any

from click.testing import CliRunner, Result

from firehose.cli import cli
from tests.conftest import UNTIL, RunningSandbox

WINDOW = ["--start", "2026-11-14", "--end", UNTIL.isoformat()]


def replay(env: dict[str, str], *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["replay", *args], env=env, input=input, catch_exceptions=False)


def failed_sources(box: RunningSandbox) -> list[dict[str, Any]]:
    return [
        e
        for e in box.sandbox_events()
        if e["type"] == "source"
        and e["outcome"] in ("error", "failure")
        and e["id"][:8] <= f"{int(UNTIL.timestamp()):08x}"
    ]


def received(box: RunningSandbox) -> list[dict[str, Any]]:
    return list(box.sandbox.submissions)


def body_of(submission: dict[str, Any]) -> bytes:
    return base64.b64decode(submission["body_base64"])
