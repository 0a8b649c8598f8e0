"""A LeadConduit-compatible local service for the demo, the tests and replay rehearsals (architecture.md §6)."""

from firehose.sandbox.server import Faults, Sandbox, default_until, make_server
from firehose.sandbox.stream import FirehoseStream, Targets

__all__ = ["Faults", "FirehoseStream", "Sandbox", "Targets", "default_until", "make_server"]
