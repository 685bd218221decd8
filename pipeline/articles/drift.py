"""Model drift: what the model predicts now against what it was trained on.

Over a sliding window of the articles the sink stored (``drift_window_seconds``,
an hour by default, by the time the sink saw them), per head (topic, sentiment):

- the share of each predicted class, beside its share in the training data of
  the serving model (``label_counts["train"]`` of its registry entry);
- the population stability index of the two distributions,
  ``PSI = sum((actual - expected) * ln(actual / expected))`` with both shares
  floored at ``PSI_FLOOR`` so an empty class does not make it infinite
  (rule of thumb: < 0.1 stable, 0.1-0.25 moderate, > 0.25 a real shift);
- the mean confidence and the share of articles below
  ``low_confidence_threshold``.

The Prometheus rules in deploy/prometheus/rules/drift.yml alert on them, and
the review queue (``finsentry labels review``) favours the classes that drift
most (:func:`drifting_classes`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping

from pipeline.messages import ScoredArticle
from pipeline.metrics.definitions import DriftMetrics

log = logging.getLogger(__name__)

HEADS = ("topic", "sentiment")
#: Smallest share used in the PSI (an absent class counts as this share).
PSI_FLOOR = 1e-3


def shares(counts: Mapping[str, float], classes: Iterable[str]) -> dict[str, float]:
    total = sum(counts.values())
    return {c: (counts.get(c, 0) / total if total else 0.0) for c in classes}


def psi(expected: Mapping[str, float], actual: Mapping[str, float]) -> float:
    """Population stability index of two share distributions over the same classes."""
    total = 0.0
    for name in expected:
        e = max(expected[name], PSI_FLOOR)
        a = max(actual.get(name, 0.0), PSI_FLOOR)
        total += (a - e) * math.log(a / e)
    return total


def drifting_classes(
    expected: Mapping[str, float], actual: Mapping[str, float], *, top: int = 3
) -> list[str]:
    """Classes contributing most to the PSI because they are *over*-represented now."""
    contributions = {
        name: (max(actual.get(name, 0.0), PSI_FLOOR) - max(e, PSI_FLOOR))
        * math.log(max(actual.get(name, 0.0), PSI_FLOOR) / max(e, PSI_FLOOR))
        for name, e in expected.items()
        if actual.get(name, 0.0) > e
    }
    return [n for n, _ in sorted(contributions.items(), key=lambda kv: -kv[1])[:top]]


def training_distribution(entry) -> dict[str, dict[str, float]]:
    """Training shares per head from a registry entry's ``data.label_counts``.

    Counts are keyed by class index (``"0"``) in the order of
    ``models.labels.TOPIC_NAMES`` / ``SENTIMENT_NAMES``; names are accepted too.
    """
    from models.labels import SENTIMENT_NAMES, TOPIC_NAMES

    names = {"topic": TOPIC_NAMES, "sentiment": SENTIMENT_NAMES}
    counts = (entry.manifest.get("data") or {}).get("label_counts", {}).get("train", {})
    out = {}
    for head in HEADS:
        raw = counts.get(head) or {}
        by_name: Counter = Counter()
        for key, value in raw.items():
            name = names[head][int(key)] if str(key).isdigit() else key
            by_name[name] += int(value)
        if not by_name:
            raise ValueError(f"drift: registry entry {entry.version} has no {head} label counts")
        out[head] = shares(by_name, names[head])
    return out


class DriftMonitor:
    """Keeps the window of recent verdicts and publishes the drift gauges."""

    def __init__(
        self,
        expected: dict[str, dict[str, float]],
        metrics: DriftMetrics,
        *,
        window_seconds: float = 3600.0,
        low_confidence_threshold: float = 0.5,
        clock=time.monotonic,
    ) -> None:
        self.expected = expected
        self.metrics = metrics
        self.window_seconds = window_seconds
        self.low_confidence_threshold = low_confidence_threshold
        self._clock = clock
        self._seen: deque[tuple[float, str, str, float]] = deque()
        self._lock = threading.Lock()
        for head, dist in expected.items():
            for name, share in dist.items():
                metrics.training_share.labels(head, name).set(share)
        self._publish()

    @classmethod
    def for_current_model(cls, settings, metrics: DriftMetrics) -> DriftMonitor | None:
        """From the registry's current entry (``ModelSettings``); None if it has no counts."""
        from models.registry import Registry
        from pipeline.settings import ModelSettings

        model = ModelSettings()
        try:
            registry = Registry(model.registry_dir, model.base_model_dir)
            version = registry.current_version()
            if version is None:
                raise ValueError(f"registry {model.registry_dir}: no model promoted")
            entry = registry.inspect(version)  # the manifest only: no hashing, no torch
            expected = training_distribution(entry)
        except Exception as exc:  # noqa: BLE001 - the sink works without drift metrics
            log.warning("drift metrics off: no training distribution: %s", exc)
            return None
        log.info("drift against the training data of model %s", entry.version)
        return cls(
            expected,
            metrics,
            window_seconds=settings.drift_window_seconds,
            low_confidence_threshold=settings.low_confidence_threshold,
        )

    def observe(self, articles: list[ScoredArticle]) -> None:
        now = self._clock()
        with self._lock:
            for a in articles:
                self._seen.append((now, a.topic, a.sentiment, a.confidence))
        self._publish()

    def current(self) -> dict[str, dict[str, float]]:
        """Shares of each head's predicted classes in the window."""
        with self._lock:
            self._expire()
            counts = {head: Counter() for head in HEADS}
            for _, topic, sentiment, _ in self._seen:
                counts["topic"][topic] += 1
                counts["sentiment"][sentiment] += 1
        return {head: shares(counts[head], self.expected[head]) for head in HEADS}

    def _expire(self) -> None:
        horizon = self._clock() - self.window_seconds
        while self._seen and self._seen[0][0] < horizon:
            self._seen.popleft()

    def _publish(self) -> None:
        actual = self.current()
        m = self.metrics
        with self._lock:
            n = len(self._seen)
            confidences = [c for *_, c in self._seen]
        m.window_articles.set(n)
        for head in HEADS:
            for name, share in actual[head].items():
                m.predicted_share.labels(head, name).set(share)
            m.psi.labels(head).set(psi(self.expected[head], actual[head]) if n else 0.0)
        m.mean_confidence.set(sum(confidences) / n if n else 0.0)
        low = sum(1 for c in confidences if c < self.low_confidence_threshold)
        m.low_confidence_ratio.set(low / n if n else 0.0)

    def tick(self) -> None:
        """Expire old verdicts and refresh the gauges (call when idle, too)."""
        self._publish()


def review_focus(
    store, expected: dict[str, dict[str, float]], settings, *, now=None
) -> dict[str, list[str]]:
    """The drifting slice per head, from the article store's last ``drift_window_seconds``.

    A head whose PSI exceeds ``drift_psi_threshold`` over at least
    ``drift_min_articles`` articles (what ``ModelDrift`` fires on) maps to its
    over-represented classes; stable heads are left out.
    """
    from datetime import UTC, datetime, timedelta

    now = now or datetime.now(UTC)
    rows = store.query(since=now - timedelta(seconds=settings.drift_window_seconds), limit=None)
    if len(rows) < settings.drift_min_articles:
        return {}
    focus = {}
    for head in HEADS:
        actual = shares(Counter(getattr(r, head) for r in rows), expected[head])
        if psi(expected[head], actual) > settings.drift_psi_threshold:
            focus[head] = drifting_classes(expected[head], actual)
    return focus
