"""Reconciling the archive against ``GET /events``: ``classify`` (pure rules: what should be where, and what was
found), ``run`` (the windowed run: paging, listing, reading, repairing, checkpoints in the state database),
``expiry`` (the at-risk rule and the order gaps are listed in) and ``job`` (one call, one result)."""
