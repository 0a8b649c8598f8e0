"""firehose: read, reconcile, repair and replay LeadConduit firehose archives on S3 and Azure Blob."""

__version__ = "0.1.0"

__all__ = ["__version__"]
