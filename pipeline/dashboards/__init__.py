"""Grafana dashboards in dashboards/: validation and upload."""
