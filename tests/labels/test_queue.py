"""Review queue order (uncertainty with class balance) and the terminal loop."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from models.feedback.queue import Article, Candidate, Scores, rank
from models.feedback.review import key_map, review

TOPIC = tuple([1.0] + [0.0] * 19)


def cand(ident, sentiment):
    return Candidate(Article(ident, f"text {ident}"), Scores(TOPIC, sentiment, "v1"))


def test_least_sure_first_with_class_balance():
    items = [
        cand("neu-sure", (0.05, 0.9, 0.05)),
        cand("neu-unsure", (0.3, 0.4, 0.3)),
        cand("neu-mid", (0.2, 0.6, 0.2)),
        cand("neg-unsure", (0.45, 0.4, 0.15)),
        cand("pos-sure", (0.0, 0.1, 0.9)),
        cand("labelled", (0.34, 0.33, 0.33)),
    ]
    queue = rank(items, "sentiment", exclude={"labelled"})
    ids = [c.article.article_id for c in queue]
    # first round: one per predicted class, most uncertain first; then the rest of neutral
    assert ids == ["neg-unsure", "neu-unsure", "pos-sure", "neu-mid", "neu-sure"]
    # classes with fewer stored labels come first
    queue = rank(
        items,
        "sentiment",
        label_counts=Counter(negative=5, neutral=5),
        exclude={"labelled"},
        limit=2,
    )
    assert [c.article.article_id for c in queue] == ["pos-sure", "neg-unsure"]


def test_entropy_strategy():
    items = [cand("a", (0.5, 0.5, 0.0)), cand("b", (0.4, 0.3, 0.3))]
    assert rank(items, "sentiment", strategy="margin")[0].article.article_id == "a"
    assert rank(items, "sentiment", strategy="entropy")[0].article.article_id == "b"


def test_review_one_key_per_label():
    queue = [
        cand("a", (0.6, 0.3, 0.1)),
        cand("b", (0.2, 0.5, 0.3)),
        cand("c", (0.1, 0.2, 0.7)),
        cand("d", (0.1, 0.2, 0.7)),
    ]
    keys = iter(["\r", "x", "p", " ", "q"])
    saved, shown = [], []
    summary = review(
        queue,
        "sentiment",
        read_key=lambda: next(keys),
        show=shown.append,
        save=saved.append,
        labeller="ann",
        clock=lambda: datetime(2026, 11, 28, tzinfo=UTC),
    )
    assert [(s.article_id, s.label, s.predicted_label) for s in saved] == [
        ("a", "negative", "negative"),
        ("b", "positive", "neutral"),
    ]
    assert (summary.confirmed, summary.corrected, summary.skipped, summary.quit_early) == (
        1,
        1,
        1,
        True,
    )
    assert any("means nothing here" in line for line in shown)
    assert all(
        s.source == "review" and s.labeller == "ann" and s.model_version == "v1" for s in saved
    )


def test_topic_keys_cover_every_topic_once():
    keys = key_map("topic")
    assert len(keys) == 20 and len(set(keys.values())) == 20
    assert not set(keys) & {" ", "q", "\r"}
