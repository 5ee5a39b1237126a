"""pendo_sync: keep Pendo visitor and account fields in step with a data warehouse."""

__version__ = "0.1.0"
