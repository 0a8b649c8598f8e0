"""The audit pack's human report: one self-contained HTML page (inline CSS and SVG, no scripts, nothing fetched
from the network) with the findings, the counts and the coverage calendar drawn as a picture."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from html import escape
from typing import Any

STATUS_COLOURS = {
    "gap": ("#cf222e", "missing or differing events"),
    "error": ("#57606a", "could not be checked"),
    "repaired": ("#bf8700", "complete after repair"),
    "archived": ("#2da44e", "every event archived"),
    "expired": ("#8250df", "archived; the API's copy has expired"),
    "empty": ("#ebedf0", "no events"),
}
CELL, GAP = 14, 3


def day_status(counts: Mapping[str, int]) -> str:
    """One day's colour: the worst that happened to its events."""
    if counts.get("missing", 0) or counts.get("differing", 0):
        return "gap"
    if counts.get("errors", 0):
        return "error"
    if counts.get("repaired", 0):
        return "repaired"
    if counts.get("api_events", 0):
        return "archived"
    if counts.get("archive_only", 0):
        return "expired"
    return "empty"


def calendar_svg(start: date, end: date, coverage: Sequence[Mapping[str, Any]]) -> str:
    """Weeks as columns, Monday to Sunday as rows, a square per day coloured by ``day_status``."""
    per_day: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in coverage:
        for name, value in row.items():
            if isinstance(value, int):
                per_day[str(row["day"])][name] += value
    first_monday = start - timedelta(days=start.weekday())
    weeks = (end - first_monday).days // 7 + 1
    width, height = weeks * (CELL + GAP) + 40, 7 * (CELL + GAP) + 24
    cells = []
    moment = start
    while moment <= end:
        key = moment.isoformat()
        counts = per_day.get(key, {})
        status = day_status(counts)
        column = (moment - first_monday).days // 7
        x, y = 36 + column * (CELL + GAP), 20 + moment.weekday() * (CELL + GAP)
        detail = ", ".join(f"{name} {value}" for name, value in sorted(counts.items()) if value) or "no events"
        cells.append(
            f'<rect class="day" data-day="{key}" data-status="{status}" x="{x}" y="{y}" width="{CELL}" '
            f'height="{CELL}" rx="2" fill="{STATUS_COLOURS[status][0]}"><title>{key}: {escape(detail)}</title></rect>'
        )
        if moment.day == 1 or moment == start:
            cells.append(f'<text x="{x}" y="12" class="month">{moment:%b}</text>')
        moment += timedelta(days=1)
    labels = "".join(
        f'<text x="0" y="{20 + row * (CELL + GAP) + CELL - 3}" class="weekday">{name}</text>'
        for row, name in ((0, "Mon"), (2, "Wed"), (4, "Fri"))
    )
    return (
        f'<svg id="calendar" role="img" aria-label="coverage calendar" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">{labels}{"".join(cells)}</svg>'
    )


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in headers)
    body = (
        "".join("<tr>" + "".join(f"<td>{_cell(value)}</td>" for value in row) + "</tr>" for row in rows)
        or f'<tr><td colspan="{len(headers)}">none</td></tr>'
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    if text in ("PASS", "FAIL", "UNKNOWN"):
        return f'<span class="verdict {text.lower()}">{text}</span>'
    return escape(text)


def render_report(
    summary: Mapping[str, Any], coverage: Sequence[Mapping[str, Any]], retention: Sequence[Mapping[str, Any]]
) -> str:
    window = summary["window"]
    start, end = date.fromisoformat(window["start"][:10]), date.fromisoformat(window["end"][:10])
    totals = summary["coverage"]
    legend = "".join(
        f'<span class="key"><svg width="12" height="12"><rect width="12" height="12" rx="2" fill="{colour}"/></svg>'
        f" {escape(meaning)}</span>"
        for colour, meaning in STATUS_COLOURS.values()
    )
    checks = [
        (item["destination"], check["check"], check["verdict"], check["finding"])
        for item in retention
        for check in item["checks"]
    ]
    coverage_rows = [
        [row[name] for name in ("day", "destination", "api_events", "archived", "missing", "differing", "repaired",
                                "archive_only", "errors")]
        for row in coverage
    ]  # fmt: skip
    manifest = summary["manifest"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>firehose audit {escape(window["start"][:10])} to {escape(window["end"][:10])}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #1f2328; }}
h1 {{ font-size: 1.5em; }} h2 {{ font-size: 1.15em; margin-top: 2em; }}
table {{ border-collapse: collapse; width: 100%; font-size: 13px; }}
th, td {{ border-bottom: 1px solid #d0d7de; padding: 3px 6px; text-align: left; vertical-align: top; }}
.verdict {{ font-weight: 600; padding: 1px 6px; border-radius: 3px; color: white; }}
.pass {{ background: #2da44e; }} .fail {{ background: #cf222e; }} .unknown {{ background: #6e7781; }}
.month, .weekday {{ font-size: 10px; fill: #57606a; }} .key {{ margin-right: 1.2em; white-space: nowrap; }}
.figures td:first-child {{ width: 16em; }}
</style></head><body>
<h1>Retention evidence: {escape(window["start"][:10])} to {escape(window["end"][:10])}</h1>
<p>Made by firehose {escape(str(summary["firehose"]))} on {escape(str(summary["created_at"]))}. Content checked:
{escape(str(summary["verify"]))}. Required retention: {escape(str(summary["require_retention"] or "not given"))}.
Signing key SHA-256: <code>{escape(str(summary.get("signing_key_sha256", "")))}</code>.</p>
<table class="figures"><tbody>
<tr><td>Coverage</td><td>{_cell(summary["coverage_verdict"])}</td></tr>
<tr><td>Retention settings</td><td>{_cell(summary["retention_verdict"] or "not judged")}</td></tr>
<tr><td>Event objects the API says should exist (per destination)</td><td>{totals.get("api_events", 0)}</td></tr>
<tr><td>Archived</td><td>{totals.get("archived", 0)}</td></tr>
<tr><td>Missing / differing</td><td>{totals.get("missing", 0)} / {totals.get("differing", 0)}</td></tr>
<tr><td>Repaired</td><td>{totals.get("repaired", 0)}</td></tr>
<tr><td>Archive only (API copy expired)</td><td>{totals.get("archive_only", 0)}</td></tr>
<tr><td>Could not be checked</td><td>{totals.get("errors", 0)}</td></tr>
<tr><td>Objects hashed (manifest)</td><td>{manifest["objects"]} ({manifest["bytes"]} bytes,
{manifest["unreadable"]} unreadable)</td></tr>
</tbody></table>
<h2>Coverage calendar</h2>
{calendar_svg(start, end, coverage)}
<p>{legend}</p>
<h2>Retention settings</h2>
{_table(("destination", "check", "verdict", "finding"), checks)}
<h2>Coverage per day and destination</h2>
{
        _table(
            ("day", "destination", "API", "archived", "missing", "differing", "repaired", "archive only", "errors"),
            coverage_rows,
        )
    }
<p>Files: coverage.csv, coverage.json, manifest.ndjson (SHA-256 of every archived object), retention.json,
findings.ndjson, summary.json; SHA256SUMS lists each with its hash and SHA256SUMS.sig signs it (Ed25519,
signing-key.pub.pem). Check it with <code>firehose audit verify</code>, or by hand with
<code>sha256sum -c SHA256SUMS</code> and any Ed25519 tool.</p>
</body></html>
"""
