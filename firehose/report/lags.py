"""A reconcile's delivery lags (``reconciliation.lags``' report entries) as the text summary's lines."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def lag_lines(report: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The text summary's lines: one per destination with a lag known or unknown."""
    lines = []
    for destination, lag in sorted(report.items()):
        unknown = f" ({lag['unknown']:,} unknown)" if lag["unknown"] else ""
        if lag["objects"]:
            said = ", ".join(f"{name} {_seconds(lag[name])}" for name in ("p50", "p95", "p99", "max"))
            objects = f"{lag['objects']:,} object" + ("" if lag["objects"] == 1 else "s")
            lines.append(f"  delivery lag {destination}: {said} over {objects}{unknown}")
        elif lag["unknown"]:
            lines.append(f"  delivery lag {destination}: unknown{unknown}")
    return lines


def _seconds(value: float) -> str:
    return f"{value:.3g} s" if value < 100 else f"{value:,.0f} s"
