"""Replay: send the stored inbound requests of ``source`` events to a flow again, each lead once.

selection (the API, an archive, or a list of ids) → request (rebuild each from the event's ``request``, with the
operator's edits) → plan (once per lead, against the ledger) → diff (``dry_run``) or send (claimed first, rate
limited, retried) → settle (what is in doubt) → dead_letters. ``job.replay()`` runs them in that order.

A LeadConduit submit creates a new lead and runs every step again (deliveries, fees; facts.md §3.4), and there
is no idempotency key. So the ledger is written *before* a request goes out and again when its answer comes;
an event already ``sent`` is never posted again unless ``force``; one whose request went out without an answer
is ``unknown`` and is not retried unless ``retry_unknown``.
"""
