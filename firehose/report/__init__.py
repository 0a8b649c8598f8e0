"""Rendering, in one place, and no click: ``rows`` (listings and findings as text, JSON, NDJSON or CSV,
streaming), ``tables`` (the text format's aligned columns: rich on a terminal, plain text elsewhere), ``html``
(the audit pack's page), ``diffs`` (a replay's dry-run diff), ``documents`` (report files and JSON lines),
``lags`` (a reconcile's delivery lags as summary lines) and ``progress`` (live bars on a terminal for the jobs'
``firehose.progress``). The command line picks a renderer and hands it the stream; jobs never import this
package (they take a ``firehose.progress.Progress`` or a page renderer as an argument)."""

from firehose.report.diffs import diff_lines
from firehose.report.documents import json_compact, json_document, json_line
from firehose.report.lags import lag_lines
from firehose.report.rows import FORMATS, RowWriter

__all__ = ["FORMATS", "RowWriter", "diff_lines", "json_compact", "json_document", "json_line", "lag_lines"]
