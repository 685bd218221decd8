"""Every finsentry metric, defined in one place.

One small class per stage; each takes the ``CollectorRegistry`` it registers
into (tests pass a fresh one and compare exact exposition). Conventions
(Prometheus naming guide): prefix ``finsentry_``, base units (seconds, bytes,
ratios 0..1), ``_total`` on counters only, label values from small fixed sets
(topic, sentiment, stage, reason; tickers only for a bounded top-N).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info  # noqa: F401

__all__ = ["CollectorRegistry"]
