"""A replay's dry-run diff (``replaying.diff.request_diff``) for people: one line per change."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def diff_lines(diff: Mapping[str, Any]) -> list[str]:
    """A diff for people: one line per change."""
    lines = [
        f"event {diff['event_id']} (lead {diff['lead_id']}, flow {diff['flow_id']}, was {diff['original_outcome']})"
    ]
    url = diff["url"]
    if url["changed"]:
        lines += [f"  url  - {diff['method']} {url['from']}", f"       + {diff['method']} {url['to']}"]
    else:
        lines.append(f"  url    {diff['method']} {url['to']}")
    marks = {"removed": "-", "added": "+", "changed": "~"}
    for header in diff["headers"]:
        detail = _change_text(header)
        lines.append(f"  header {marks[header['change']]} {header['header']}: {detail}")
    body = diff["body"]
    if body["identical"]:
        lines.append(f"  body   {body['bytes']} bytes ({body['content_type']}), identical")
    for item in body["fields"]:
        if item["change"] == "unreadable":
            lines.append(f"  body   ! {item['reason']}")
            continue
        detail = _change_text(item)
        lines.append(f"  body {marks[item['change']]} {item['field']}: {detail}")
    return lines


def _change_text(change: Mapping[str, Any]) -> str:
    if change["change"] == "changed":
        return f"{change['from']} -> {change['to']}"
    return str(change.get("to", change.get("from")))
