"""Evidence for auditors: ``pack`` (coverage calendar, hash manifest, retention findings, signed), ``verify``
(a pack checked later against the archive), ``retention`` (settings judged against a required period) and
``job`` (``audit`` and ``verify_pack``, one call each)."""
