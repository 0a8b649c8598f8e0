"""Issue 11, item 16: every way click refuses a command line is one line, ``firehose: error: ...``, naming the
failing command's ``--help``, exit 2; never click's four-line Usage/Try/Error block, never two lines. The
cases are made from each command's own parameters, so a command or option added later is covered."""

from __future__ import annotations

import click
import pytest

from firehose.errors import ExitCode
from tests.functional.clirun import command_paths, environ, invoke


def _cases() -> list[tuple[str, list[str], str]]:
    cases: list[tuple[str, list[str], str]] = [
        ("no command", [], "firehose --help"),
        ("unknown command", ["reconcil"], "firehose --help"),
        ("no such option", ["--bogus"], "firehose --help"),
    ]
    for path, command in command_paths():
        words = list(path)
        shown = f"firehose {' '.join(path)} --help"
        arguments = [p for p in command.params if isinstance(p, click.Argument)]
        options = [p for p in command.params if isinstance(p, click.Option) and not p.is_flag and not p.count]
        filler = ["x" * (i + 1) for i, _ in enumerate(arguments)]
        if isinstance(command, click.Group):
            if not command.invoke_without_command:
                cases.append((f"{' '.join(path)}: no command", words, shown))
            cases.append((f"{' '.join(path)}: unknown command", [*words, "nope"], shown))
        cases.append((f"{' '.join(path)}: no such option", [*words, "--bogus", *filler], shown))
        if arguments and arguments[0].required:
            cases.append((f"{' '.join(path)}: missing argument", words, shown))
        if not isinstance(command, click.Group) and not any(a.nargs == -1 for a in arguments):
            cases.append((f"{' '.join(path)}: extra argument", [*words, *filler, "extra"], shown))
        for option in options:
            flag = option.opts[-1]
            cases.append((f"{' '.join(path)} {flag}: missing value", [*words, *filler, flag], shown))
            cases.append((f"{' '.join(path)} {flag}: empty value", [*words, *filler, flag, ""], shown))
            if isinstance(option.type, click.Choice):
                cases.append((f"{' '.join(path)} {flag}: bad choice", [*words, *filler, flag, "nope"], shown))
            if isinstance(option.type, (click.types.IntParamType, click.types.FloatParamType)):
                cases.append((f"{' '.join(path)} {flag}: not a number", [*words, *filler, flag, "abc"], shown))
    return cases


CASES = _cases()


@pytest.mark.parametrize(("case", "args", "help_of"), CASES, ids=[c[0] for c in CASES])
def test_every_usage_error_is_one_line_naming_the_commands_help(case: str, args: list[str], help_of: str) -> None:
    run = invoke(args, environ(FIREHOSE_STATE="/nonexistent-state-dir/state.sqlite"))
    line = run.only_line()
    assert run.code == ExitCode.USAGE, (case, run.stderr)
    assert line.endswith(f"(see {help_of})"), (case, line)


def test_a_firehose_usage_error_names_the_help_too() -> None:
    # Raised by the library (not click) after the flags were read: the same shape.
    run = invoke(["events", "--include", "a", "--exclude", "b"], environ(LEADCONDUIT_API_KEY="k"))
    assert run.code == ExitCode.USAGE
    assert "--include and --exclude" in run.only_line() and run.only_line().endswith("(see firehose events --help)")
