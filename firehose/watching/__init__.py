"""``firehose watch``: continuous assurance that events reach their archives (issue 15)."""
