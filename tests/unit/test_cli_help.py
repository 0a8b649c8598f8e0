"""Every command has help text with an example (a new command without one fails here)."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from firehose import __version__
from firehose.cli import cli


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found.extend(_commands(command, (*prefix, name)))
        else:
            found.append((*prefix, name))
    return found


@pytest.mark.parametrize("path", _commands(cli), ids=lambda p: " ".join(p) or "firehose")
def test_every_command_has_help_with_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output, f"`firehose {' '.join(path)} --help` has no Example"
    assert "firehose " in result.output.split("Example:", 1)[1]


def test_commands_are_what_the_readme_lists() -> None:
    assert {p[0] for p in _commands(cli) if p} >= {"events", "sandbox"}


def test_python_dash_m_and_version() -> None:
    result = subprocess.run([sys.executable, "-m", "firehose", "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"firehose, version {__version__}"


def test_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["reconcil"])
    assert result.exit_code == 2
