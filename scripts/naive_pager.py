"""The baseline for `scripts/bench events`: the pager a user would write in fifteen lines (httpx, the
standard json module, sort=asc&limit=1000&after_id=...), printing NDJSON like `firehose events` does."""

from __future__ import annotations

import json
import os
import sys

import httpx


def main() -> None:
    url = os.environ["LEADCONDUIT_URL"] + "/events"
    auth = ("API", os.environ["LEADCONDUIT_API_KEY"])
    out = sys.stdout
    after = None
    with httpx.Client(auth=auth, timeout=60) as client:
        while True:
            params = {"sort": "asc", "limit": "1000", **({"after_id": after} if after else {})}
            page = client.get(url, params=params).raise_for_status().json()
            if not page:
                return
            for event in page:
                out.write(json.dumps(event) + "\n")
            after = page[-1]["id"]


if __name__ == "__main__":
    main()
