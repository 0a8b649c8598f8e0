"""The command group: how every command fails (one line, an exit code, never a traceback), logging to stderr, and
the console script."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from firehose import __version__
from firehose.cli.output import say_error
from firehose.config import Settings, config_path, load_settings
from firehose.errors import ExitCode, FirehoseError, UsageError
from firehose.secret import redact_text

log = logging.getLogger("firehose")


class FirehoseCommand(click.Command):
    """A command whose options refuse an empty value: ``--start ''`` or ``--state ''`` was silently taken for the
    flag left out (a default database, the whole API window), never what was meant. Every command also takes
    ``-v`` and ``-q`` after its name (``firehose reconcile -v``), not only before it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(verbosity_options())

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rest = super().parse_args(ctx, args)
        _refuse_empty_values(ctx)
        return rest


def _refuse_empty_values(ctx: click.Context) -> None:
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if value == "" or (isinstance(value, tuple) and "" in value):
            raise click.BadParameter("an empty value; leave the option out or give one", ctx=ctx, param=param)


def _failing_context(exc: BaseException, default: click.Context | None) -> click.Context | None:
    """The innermost click context an exception passed through: the command that failed (``archive ls``), which
    neither a firehose error nor some of click's own parser errors (a missing option value) carry."""
    found = default
    trace = exc.__traceback__
    while trace is not None:
        for name in ("ctx", "sub_ctx"):
            value = trace.tb_frame.f_locals.get(name)
            if isinstance(value, click.Context):
                found = value
        trace = trace.tb_next
    return found


def _one_line(text: str) -> str:
    """A message on one line, whatever a library put in it."""
    return " ".join(text.split())


RECURSION_LIMIT = 4000
"""Python frames allowed: enough to walk the deepest JSON orjson reads (1,024 levels) from deep in a command."""


class FirehoseGroup(click.Group):
    """Turns every ``FirehoseError`` into one line on stderr and its exit code; Ctrl-C into 130; the option
    parser's errors into the same one line (``firehose: error: ...``, naming ``--help``), exit 2; anything
    else (a bug) into one line and exit 70, never a traceback (``-v`` shows it)."""

    command_class = FirehoseCommand
    group_class = type  # subgroups (archive, audit) are FirehoseGroups too: the same empty-value rule

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not any(param.name == "verbose" for param in self.params):  # every group, the root included
            self.params.extend(verbosity_options())

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rest = super().parse_args(ctx, args)
        _refuse_empty_values(ctx)
        return rest

    def main(  # type: ignore[override]  # click's overloads; the behaviour is the same
        self, args: Sequence[str] | None = None, prog_name: str | None = None, standalone_mode: bool = True,
        **kwargs: Any,
    ) -> Any:  # fmt: skip
        # JSON may nest 1,024 levels (orjson's limit) and events are data from outside: Python's default of 1,000
        # frames made any walk of a legal document (repr, ==, the diff of a body) fail. 4,000 leaves room for the
        # stack below; deeper input (XML has no limit) is refused where it is read.
        sys.setrecursionlimit(max(sys.getrecursionlimit(), RECURSION_LIMIT))
        _reset_verbosity()  # each invocation starts plain (tests run many in one process)
        if not standalone_mode:
            return super().main(args, prog_name, standalone_mode=False, **kwargs)
        try:
            code = super().main(args, prog_name, standalone_mode=False, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:  # bare `firehose` or a bare group: name the commands
            group = exc.ctx.command if exc.ctx else self
            names = ", ".join(sorted(group.commands)) if isinstance(group, click.Group) else ""
            where = exc.ctx.command_path if exc.ctx else "firehose"
            say_error(f"firehose: error: give a command: {names} (see {where} --help)")
            code = ExitCode.USAGE
        except click.UsageError as exc:
            failed = _failing_context(exc, exc.ctx)
            command = failed.command_path if failed else "firehose"
            say_error(f"firehose: error: {_one_line(exc.format_message())} (see {command} --help)")
            code = ExitCode.USAGE
        except click.ClickException as exc:
            say_error(f"firehose: error: {_one_line(exc.format_message())}")
            code = exc.exit_code
        except click.Abort:
            say_error("firehose: interrupted")
            code = ExitCode.INTERRUPTED
        except Exception as exc:  # a bug before any command ran (while parsing): one line, not a traceback
            code = _internal_error(exc)
        try:  # what is still buffered goes out now, where a failure can be told, not at exit
            if not sys.stdout.closed:
                sys.stdout.flush()
        except BrokenPipeError:
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            code = code or ExitCode.CLOSED_PIPE
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            say_error(f"firehose: error: cannot write output: {exc.strerror or exc}")
            code = ExitCode.CONFIG
        sys.exit(int(code or 0))

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as exc:  # a bad flag or value: name the command's --help, as click's own errors do
            failed = _failing_context(exc, ctx) or ctx
            say_error(f"firehose: error: {_one_line(str(exc))} (see {failed.command_path} --help)")
            ctx.exit(int(exc.exit_code))
        except FirehoseError as exc:
            say_error(f"firehose: error: {_one_line(str(exc))}")
            ctx.exit(int(exc.exit_code))
        except BrokenPipeError:
            # The reader went away (`| head`): stop quietly, as a program killed by SIGPIPE would (141), never
            # with 1, which means "differences found". Later writes at exit go nowhere instead of failing.
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(int(ExitCode.CLOSED_PIPE))
        except OSError as exc:  # writing our own output failed: a full disk, /dev/full, an I/O error
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            where = f"{exc.filename}: " if exc.filename else "output: "
            say_error(f"firehose: error: cannot write {where}{exc.strerror or exc}")
            ctx.exit(int(ExitCode.CONFIG))
        except KeyboardInterrupt:
            say_error("firehose: interrupted")
            ctx.exit(int(ExitCode.INTERRUPTED))
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise  # click's own ways out (ctx.exit is a RuntimeError): main() reports them
        except Exception as exc:
            ctx.exit(_internal_error(exc))


def _internal_error(exc: BaseException) -> int:
    """A bug, not a bad input: one line naming the exception, never a traceback on stderr (``-v`` adds it, for a
    bug report). The text goes through the credential filter like every log line."""
    detail = redact_text(_one_line(str(exc)))[:300]
    say_error(
        f"firehose: error: internal error (a bug in firehose; -v shows where): {type(exc).__name__}"
        + (f": {detail}" if detail else "")
    )
    if log.isEnabledFor(logging.INFO):
        import traceback

        from firehose.cli.output import log_format, log_line

        # Through the credential filter too (a vendor's exception quotes the URL it was given, SAS token and all);
        # under --log-format json, one line whose field holds it.
        trace = redact_text("".join(traceback.format_exception(exc)).rstrip())
        shown = log_line("traceback", level="error", fields={"traceback": trace}) if log_format() == "json" else trace
        click.echo(shown, err=True)
    return int(ExitCode.INTERNAL)


def settings_from(ctx: click.Context, **overrides: Any) -> Settings:
    root = ctx.find_root()
    path = config_path(root.params.get("config"), os.environ, Path.cwd())
    settings = load_settings(config_file=path, env=os.environ, overrides=overrides)
    if root.params.get("config"):
        source = "--config"
    elif os.environ.get("FIREHOSE_CONFIG"):
        source = "FIREHOSE_CONFIG"
    else:
        source = "./firehose.toml, found here" if path else "none"
    return dataclasses.replace(settings, sources={**settings.sources, "config_file": source})


_verbosity_set = False
"""Whether a -v or -q (given before the command or after it) has set the logging level already."""


def _reset_verbosity() -> None:
    global _verbosity_set
    from firehose.cli import output

    _verbosity_set = False
    output._quiet = False
    output.set_log_format("text")


def verbosity_options() -> list[click.Option]:
    """``-v``/``--verbose`` and ``-q``/``--quiet``, for the group and for every command."""
    return [
        click.Option(
            ["-v", "--verbose"], count=True, expose_value=False, callback=_verbose,
            help="More detail on stderr (-vv for HTTP requests).",
        ),
        click.Option(
            ["-q", "--quiet"], is_flag=True, expose_value=False, callback=_quiet,
            help="Only errors and problems on stderr: no summary or progress (for cron).",
        ),
        click.Option(
            ["--log-format"], type=click.Choice(["text", "json"]), expose_value=False, is_eager=True,
            envvar="FIREHOSE_LOG_FORMAT", callback=_log_format,
            help="Lines on stderr as text, or one JSON object each (time, level, message, fields) for log "
            "shippers. [default: text, or $FIREHOSE_LOG_FORMAT]",
        ),
    ]  # fmt: skip


def _verbose(ctx: click.Context, param: click.Parameter, value: int) -> None:
    global _verbosity_set
    if value:
        total = ctx.find_root().meta.get("firehose.verbose", 0) + value  # -v before the command and after it add up
        ctx.find_root().meta["firehose.verbose"] = total
        _log_to_stderr(logging.INFO if total == 1 else logging.DEBUG)
        _verbosity_set = True


def _log_format(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        from firehose.cli.output import set_log_format

        set_log_format(value)


def _quiet(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    global _verbosity_set
    if value:
        from firehose.cli.output import be_quiet

        be_quiet()  # summaries and progress go; problems (warnings) and errors stay
        _log_to_stderr(logging.WARNING)
        _verbosity_set = True


@click.group(cls=FirehoseGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="firehose")
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML config file (default: $FIREHOSE_CONFIG, else ./firehose.toml if present).",
)
def cli(config: str | None) -> None:
    """Read, reconcile and replay LeadConduit firehose archives.

    The API key comes from LEADCONDUIT_API_KEY; the API URL from --url, LEADCONDUIT_URL or the config file.

    \b
    Example:
      export LEADCONDUIT_API_KEY=...
      firehose events --start 2026-11-01 --type source > events.ndjson
    """
    if not _verbosity_set:
        _log_to_stderr(logging.WARNING)


def _log_to_stderr(level: int) -> None:
    """Library log records (retries, progress) go to stderr, prefixed; -vv adds httpx's request lines."""
    from firehose.secret import RedactingFilter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LineFormatter())
    handler.addFilter(RedactingFilter())  # whatever a library logs (httpx's request lines), no credential shows
    for name in ("firehose", "httpx"):
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, "firehose_cli", False)]:
            logger.removeHandler(old)
        handler.firehose_cli = True  # type: ignore[attr-defined]  # marks handlers this function owns
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(level if name == "firehose" or level <= logging.DEBUG else logging.WARNING)


class _LineFormatter(logging.Formatter):
    """``firehose: MESSAGE``, or with ``--log-format json`` one JSON object: ``time``, ``level``, ``message``
    and the record's ``fields`` (``extra={"fields": {...}}``), read when each line is written (the flag may come
    after the handler was made)."""

    def __init__(self) -> None:
        super().__init__("firehose: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        from firehose.cli.output import log_format, log_line

        if log_format() != "json":
            return super().format(record)
        text = record.getMessage()
        if record.exc_info:
            text += " " + _one_line(self.formatException(record.exc_info))
        fields = getattr(record, "fields", None)
        return log_line(
            text, level=record.levelname.lower(), fields=fields if isinstance(fields, dict) else None,
            created=record.created,
        )  # fmt: skip


STORAGE_FLAGS = ("endpoint_url", "region", "profile", "account_url")
"""The ``storage_options`` that are settings (``--credential`` and ``--workers`` are the command's own)."""


def storage_settings(ctx: click.Context, params: dict[str, Any], **overrides: Any) -> Settings:
    """Settings with the command's storage flags (``**storage`` of a command with ``storage_options``) and any
    other flags that override settings (``url``, ``state_file``)."""
    return settings_from(ctx, **{name: params.get(name) for name in STORAGE_FLAGS}, **overrides)


def _steady_malloc() -> None:
    """Tune glibc's malloc, before any thread starts, so that a long run's RSS follows its live data.

    Two settings, each measured on a 30-day reconcile of 50,000 events (peak RSS, against a 3-day run's 88 MiB):
    glibc gives threads their own arenas (up to eight per core) and keeps what they freed, 120 MiB; capped at
    two arenas, 106 MiB; and with large buffers (listing pages of 1 to 3 MB) always in their own mappings,
    returned when freed, instead of in the arenas once glibc's adaptive threshold has risen past them, 99 MiB.
    Speed did not change measurably. ``MALLOC_ARENA_MAX`` in the environment leaves both alone.
    """
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # not glibc (musl): nothing to tune
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, 2)  # M_ARENA_MAX (glibc's malloc.h)
        libc.mallopt(-3, 256 * 1024)  # M_MMAP_THRESHOLD: fixed, so no longer adaptive


def main(argv: list[str] | None = None) -> None:
    """The console script."""
    _steady_malloc()
    cli.main(args=argv, prog_name="firehose")
