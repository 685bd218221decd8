"""finsentry streaming pipeline: ingest, classify, aggregate, metrics, alerts.

Importing this package stays cheap: torch and pyflink are imported only by the
stages that need them.
"""

__version__ = "0.1.0"
