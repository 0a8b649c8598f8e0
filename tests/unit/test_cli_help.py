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


def test_audit_is_pack_and_verify_and_the_bare_form_is_hidden_but_kept() -> None:
    shown = CliRunner().invoke(cli, ["audit", "--help"]).output
    assert "pack" in shown and "verify" in shown and "--start" not in shown.split("Options:")[1]
    assert "--start" in CliRunner().invoke(cli, ["audit", "pack", "--help"]).output.split("Options:")[1]
    # Old cron lines (`firehose audit --start ...`) run as before, with one line pointing to `audit pack`.
    for args, noted in ((["audit", "--start", "2026-11-01"], True), (["audit", "-q", "--start", "2026-11-01"], False),
                        (["-q", "audit", "--start", "2026-11-01"], False)):  # fmt: skip
        result = CliRunner().invoke(cli, args)
        lines = result.stderr.splitlines()
        assert result.exit_code == 2 and lines[-1].startswith("firehose: error: audit needs --end"), result.stderr
        assert ("firehose audit pack" in result.stderr) == noted and len(lines) == 1 + noted, result.stderr
    bare = CliRunner().invoke(cli, ["audit"])
    assert bare.exit_code == 2 and "give a command: merge, pack, verify" in bare.stderr
    mixed = CliRunner().invoke(cli, ["audit", "--start", "2026-11-01", "verify", "."])  # never ignored in silence
    assert mixed.exit_code == 2 and "--start is not an option of `firehose audit verify`" in mixed.stderr
    mixed = CliRunner().invoke(cli, ["audit", "--workers", "4", "verify", "."])
    assert mixed.exit_code == 2 and "--workers goes after the subcommand: firehose audit verify" in mixed.stderr
    mixed = CliRunner().invoke(cli, ["audit", "--start", "2026-11-01", "merge", "--run-state", "file:///x"])
    assert mixed.exit_code == 2 and "--start is not an option of `firehose audit merge`" in mixed.stderr


def test_reconcile_runs_as_ever_and_merge_is_its_subcommand() -> None:
    """`reconcile merge` as the issue spells it, beside `reconcile --merge`; bare `reconcile` is still the run."""
    shown = CliRunner().invoke(cli, ["reconcile", "--help"]).output
    assert "--start" in shown and "merge" in shown.split("Commands:")[1]
    assert "--run-state" in CliRunner().invoke(cli, ["reconcile", "merge", "--help"]).output
    mixed = CliRunner().invoke(cli, ["reconcile", "--start", "2026-11-01", "merge", "--run-state", "file:///x"])
    assert mixed.exit_code == 2 and "error: --start is not an option of `firehose reconcile merge`" in mixed.stderr
    mixed = CliRunner().invoke(cli, ["reconcile", "--format", "json", "merge", "--run-state", "file:///x"])
    assert mixed.exit_code == 2 and "--format goes after the subcommand: firehose reconcile merge" in mixed.stderr
    unknown = CliRunner().invoke(cli, ["reconcile", "mrege"])
    assert unknown.exit_code == 2 and unknown.stdout == ""
    needs = CliRunner().invoke(cli, ["reconcile", "merge"])
    assert needs.exit_code == 2 and "--run-state" in needs.stderr
