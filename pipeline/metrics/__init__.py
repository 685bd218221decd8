"""Prometheus metrics: definitions (one module), the /metrics server, the exporter."""
