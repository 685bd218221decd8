"""The article store on SQLite: upsert by id, filters, ordering, retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline.articles.store import ArticleStore, ArticleStoreError
from tests.articles.helpers import scored


@pytest.fixture
def store(tmp_path):
    s = ArticleStore(f"sqlite:///{tmp_path / 'articles.db'}")
    yield s
    s.close()


def test_upsert_is_idempotent_and_newest_score_wins(store):
    a = scored("a", sentiment="neutral", tickers=["XOM"])
    assert store.upsert([a, a]) == 1
    assert store.upsert([a]) == 1
    assert store.count() == 1
    rescored = a.model_copy(
        update={
            "sentiment": "negative",
            "sentiment_score": -0.8,
            "tickers": ["CVX"],
            "scored_at": a.scored_at + timedelta(minutes=1),
            "model_version": "v2",
        }
    )
    store.set_explanation("a", {"model_version": "v1", "sentiment": []})
    store.upsert([rescored])
    store.upsert([a])  # the older score arriving late changes nothing
    got = store.get("a")
    assert (got.sentiment, got.sentiment_score, got.tickers, got.model_version) == (
        "negative",
        -0.8,
        ("CVX",),
        "v2",
    )
    assert got.explanation is None  # explained an older model
    assert store.count() == 1


def test_query_filters_and_orders(store):
    store.upsert(
        [
            scored("old", sentiment="negative", sentiment_score=-0.9, minutes_ago=120),
            scored("n1", sentiment="negative", sentiment_score=-0.5, minutes_ago=10, tickers=["XOM"]),
            scored("n2", sentiment="negative", sentiment_score=-0.9, minutes_ago=20),
            scored("p1", sentiment="positive", sentiment_score=0.7, minutes_ago=5, tickers=["xom"]),
            scored("t1", topic="Macro", sentiment="negative", sentiment_score=-0.95, minutes_ago=1),
        ]
    )
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    ids = lambda rows: [r.id for r in rows]  # noqa: E731
    assert ids(store.query(topic="Energy | Oil", since=hour_ago)) == ["p1", "n1", "n2"]
    assert ids(store.query(topic="Energy | Oil", sentiment="negative", since=hour_ago)) == [
        "n1",
        "n2",
    ]
    assert ids(store.query(ticker="$xom", since=hour_ago)) == ["p1", "n1"]
    assert ids(store.query(sentiment="negative", since=hour_ago, order="most_negative", limit=2)) == [
        "t1",
        "n2",
    ]
    with pytest.raises(ArticleStoreError, match="sentiment 'bad'"):
        store.query(sentiment="bad")


def test_prune_deletes_past_retention_with_tickers(store):
    store.upsert([scored("old", minutes_ago=600, tickers=["XOM"]), scored("new", tickers=["XOM"])])
    assert store.prune(datetime.now(UTC) - timedelta(hours=1)) == 1
    assert [r.id for r in store.query(ticker="XOM", since=None)] == ["new"]
