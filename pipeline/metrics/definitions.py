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


class LabelMetrics:
    """The label store, as of the last ``update`` (``finsentry retrain --watch`` refreshes
    it from the database every poll, so every labelling tool is counted, whichever
    process stored the label). ``source``: csv, jsonl, label-studio, review;
    ``task``: topic, sentiment."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._labels: dict[tuple[str, str], int] = {}
        self._pending = 0
        registry.register(self)

    def update(self, labels_by_source_task: dict[tuple[str, str], int], pending: int) -> None:
        self._labels = dict(labels_by_source_task)
        self._pending = int(pending)

    def describe(self):
        return []

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        labels = CounterMetricFamily(
            "finsentry_labels", "Labels stored, by intake source and task.", labels=["source", "task"]
        )
        for (source, task), count in sorted(self._labels.items()):
            labels.add_metric([source, task], count)
        yield labels
        yield GaugeMetricFamily(
            "finsentry_labels_pending",
            "Labels stored since the last finished retrain.",
            value=self._pending,
        )


class RetrainMetrics:
    """Retraining outcomes and the current model's evaluation, as of the last ``update``.

    ``outcome``: promoted, rejected (gate said no), failed (error). Scores are
    ratios in 0..1; ``split`` is ``original_heldout`` (the fixed held-out split of
    the original data) or ``new_labels`` (the held-out part of analysts' labels);
    ``metric`` is ``accuracy`` or ``macro_f1``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._outcomes: dict[str, int] = {}
        self._scores: dict[tuple[str, str, str], float] = {}
        self._last_finished: float | None = None
        self._last_duration: float | None = None
        registry.register(self)

    def update(
        self,
        outcomes: dict[str, int],
        scores: dict[tuple[str, str, str], float],
        last_finished_unix_seconds: float | None,
        last_duration_seconds: float | None,
    ) -> None:
        self._outcomes = dict(outcomes)
        self._scores = dict(scores)
        self._last_finished = last_finished_unix_seconds
        self._last_duration = last_duration_seconds

    def describe(self):
        return []

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        retrains = CounterMetricFamily(
            "finsentry_retrains", "Finished retrains by outcome.", labels=["outcome"]
        )
        for outcome in ("promoted", "rejected", "failed"):
            retrains.add_metric([outcome], self._outcomes.get(outcome, 0))
        yield retrains
        scores = GaugeMetricFamily(
            "finsentry_model_eval_score",
            "The current model's evaluation score (0..1) by split, task and metric.",
            labels=["split", "task", "metric"],
        )
        for key, value in sorted(self._scores.items()):
            scores.add_metric(list(key), value)
        yield scores
        if self._last_finished is not None:
            yield GaugeMetricFamily(
                "finsentry_retrain_last_finished_timestamp_seconds",
                "Unix time the last retrain finished (any outcome).",
                value=self._last_finished,
            )
        if self._last_duration is not None:
            yield GaugeMetricFamily(
                "finsentry_retrain_last_duration_seconds",
                "Wall-clock duration of the last retrain, training and evaluation.",
                value=self._last_duration,
            )
