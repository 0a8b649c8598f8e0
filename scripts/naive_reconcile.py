"""The naive baseline for `scripts/bench reconcile`: page /events for the fields presence needs, and HEAD every
event's key in each of its destinations, one by one. What a first script would do; `firehose reconcile` lists
key ranges instead.

usage: python scripts/naive_reconcile.py --start T --end T   (LEADCONDUIT_*, FIREHOSE_CONFIG as for firehose)
"""

from __future__ import annotations

import argparse
import os
from datetime import datetime
from pathlib import Path

from firehose.api import EventQuery, LeadConduit
from firehose.archive import StoreUrl, open_store
from firehose.config import load_settings
from firehose.event import EventView
from firehose.http import HttpClient


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--start", required=True)
    parser.add_argument("--end", required=True)
    args = parser.parse_args()
    settings = load_settings(config_file=Path(os.environ["FIREHOSE_CONFIG"]), env=os.environ)
    query = EventQuery(
        start=datetime.fromisoformat(args.start),
        end=datetime.fromisoformat(args.end),
        include=("id", "type", "vars.lead.id", "firehose", "expires_at"),
    )
    stores = {}
    missing = present = 0
    with HttpClient(settings.api.url, auth=("API", settings.api.require_key().reveal())) as http:
        for event in LeadConduit(http).iter_events(query):
            view = EventView(event)
            for destination in view.destinations():
                name = (destination.scheme, destination.bucket)
                if name not in stores:
                    where = StoreUrl(destination.scheme, destination.bucket, "")
                    stores[name] = (
                        open_store(where, s3=settings.credentials.s3())
                        if destination.scheme == "s3"
                        else open_store(where, azure=settings.credentials.azure_for())
                    )
                if stores[name].head(destination.key(view.lead_id or "", view.id)) is None:
                    missing += 1
                else:
                    present += 1
    print(f"present {present}, missing {missing}")


if __name__ == "__main__":
    main()
