"""The command line: the only package that imports click, prints, reads flags or exits.

Each command parses its options, builds ``Settings``, makes one library call, renders the result and exits with
a code from ``errors.ExitCode``. One module per command; ``app`` is the group and how every command fails,
``options`` the shared flags and their parsers, ``output`` standard output for bytes. Heavy imports (boto3, azure)
happen inside the commands that need them.
"""

from firehose.cli import (  # noqa: F401
    archive,
    audit,
    config,
    events,
    history,
    locate,
    reconcile,
    reconcile_merge,
    replay,
    sandbox,
    watch,
)
from firehose.cli.app import cli, main

__all__ = ["cli", "main"]
