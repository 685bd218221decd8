"""Drift statistics against the training distribution, and the review queue's focus."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry

from models.feedback.queue import Article, Candidate, Scores, drift_favour, rank
from models.labels import SENTIMENT_NAMES, TOPIC_NAMES
from pipeline.articles.drift import DriftMonitor, psi, review_focus, training_distribution
from pipeline.articles.store import ArticleStore
from pipeline.metrics.definitions import DriftMetrics
from pipeline.settings import ArticleStoreSettings, ModelSettings
from tests.articles.helpers import scored


@pytest.fixture(scope="module")
def expected():
    from models.registry import Registry

    model = ModelSettings()
    registry = Registry(model.registry_dir, model.base_model_dir)
    return training_distribution(registry.inspect(registry.current_version()))


def like_training(expected, n, rng, *, confidence=0.9):
    topics = rng.choices(list(expected["topic"]), weights=list(expected["topic"].values()), k=n)
    sentiments = rng.choices(list(expected["sentiment"]), weights=list(expected["sentiment"].values()), k=n)
    return [
        scored(f"a{i}", topic=t, sentiment=s, confidence=confidence)
        for i, (t, s) in enumerate(zip(topics, sentiments, strict=True))
    ]


def test_training_distribution_of_the_shipped_model(expected):
    assert set(expected["topic"]) == set(TOPIC_NAMES)
    assert set(expected["sentiment"]) == set(SENTIMENT_NAMES)
    for dist in expected.values():
        assert sum(dist.values()) == pytest.approx(1.0)
    assert max(expected["sentiment"], key=expected["sentiment"].get) == "neutral"


def test_psi_and_confidence_over_a_sliding_window(expected):
    now = [0.0]
    registry = CollectorRegistry()
    monitor = DriftMonitor(expected, DriftMetrics(registry), window_seconds=3600, clock=lambda: now[0])
    value = lambda name, **labels: registry.get_sample_value(name, labels)  # noqa: E731
    rng = random.Random(1)
    monitor.observe(like_training(expected, 2000, rng))
    assert value("finsentry_drift_psi", head="topic") < 0.05
    assert value("finsentry_drift_psi", head="sentiment") < 0.05
    assert value("finsentry_drift_window_articles") == 2000
    assert value("finsentry_drift_mean_confidence_ratio") == pytest.approx(0.9)
    assert value("finsentry_drift_low_confidence_ratio") == 0

    # An hour later the window holds only a one-topic, unsure stream.
    now[0] = 3601
    monitor.observe([scored(f"b{i}", topic="Fed | Central Banks", confidence=0.4) for i in range(300)])
    assert value("finsentry_drift_window_articles") == 300
    assert value("finsentry_drift_psi", head="topic") > 1.0
    assert (
        value("finsentry_drift_predicted_share_ratio", head="topic", **{"class": "Fed | Central Banks"}) == 1
    )
    assert value("finsentry_drift_low_confidence_ratio") == 1
    assert value("finsentry_drift_training_share_ratio", head="sentiment", **{"class": "neutral"}) == (
        pytest.approx(expected["sentiment"]["neutral"])
    )
    now[0] = 9000
    monitor.tick()
    assert value("finsentry_drift_window_articles") == 0
    assert value("finsentry_drift_psi", head="topic") == 0


def test_psi_of_identical_distributions_is_zero():
    dist = {"a": 0.5, "b": 0.5}
    assert psi(dist, dist) == 0
    assert psi(dist, {"a": 1.0, "b": 0.0}) > 1


def test_review_focus_and_queue_favour_the_drifting_slice(expected, tmp_path):
    store = ArticleStore(f"sqlite:///{tmp_path / 'a.db'}")
    settings = ArticleStoreSettings(drift_min_articles=50)
    rng = random.Random(2)
    store.upsert(like_training(expected, 200, rng))
    assert review_focus(store, expected, settings) == {}
    store.upsert(scored(f"fed{i}", topic="Fed | Central Banks") for i in range(400))
    focus = review_focus(store, expected, settings)
    assert focus["topic"][0] == "Fed | Central Banks"
    store.close()

    def candidate(i, topic, margin):
        topic_probs = [0.0] * len(TOPIC_NAMES)
        topic_probs[TOPIC_NAMES.index(topic)] = 1.0
        sentiment = (0.5 - margin / 2, 0.5 + margin / 2, 0.0)
        return Candidate(Article(f"c{i}", f"text {i}"), Scores(tuple(topic_probs), sentiment, "v"))

    # The drifting topic's articles are the *surer* ones: without the focus they come last.
    pool = [candidate(i, "Fed | Central Banks", 0.6) for i in range(10)]
    pool += [candidate(100 + i, "Earnings", 0.1) for i in range(10)]
    # (the one-topic stream is all "neutral" too, so focus the topic slice only)
    favoured = rank(pool, "sentiment", limit=10, favour=drift_favour({"topic": focus["topic"]}))
    ids = [c.article.article_id for c in favoured]
    assert len(ids) == len(set(ids)) == 10
    assert all(int(i[1:]) < 100 for i in ids[:5])  # the first half: the drifting slice
    assert drift_favour({}) is None
