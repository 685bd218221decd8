"""The conflict rule and the snapshot hash."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from models.feedback.store import Label, LabelStore, snapshot_hash

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def label(article, value, who, minutes, task="sentiment"):
    return Label(
        article, task, value, f"text of {article}", who, T0 + timedelta(minutes=minutes), "csv"
    )


def test_conflicts_are_kept_and_resolved_by_the_documented_rule(tmp_path):
    store = LabelStore(f"sqlite:///{tmp_path / 'l.db'}", trusted_labellers=["lead"])
    store.add(
        [
            # majority of labellers' latest votes wins; ann changed her mind
            label("a", "negative", "ann", 0),
            label("a", "positive", "ann", 5),
            label("a", "positive", "bob", 1),
            label("a", "neutral", "cy", 2),
            # a tie goes to the newest vote
            label("b", "negative", "ann", 0),
            label("b", "neutral", "bob", 3),
            # a trusted labeller outvotes everyone else
            label("c", "negative", "ann", 0),
            label("c", "negative", "bob", 0),
            label("c", "positive", "lead", 0),
            # no conflict
            label("d", "neutral", "ann", 0),
        ]
    )
    assert len(store.rows()) == 10  # nothing overwritten
    resolved = {r.article_id: r for r in store.resolved()}
    assert resolved["a"].label == "positive" and resolved["a"].votes == 2
    assert resolved["b"].label == "neutral"
    assert resolved["c"].label == "positive"
    assert resolved["d"].label == "neutral" and not resolved["d"].conflicting
    assert resolved["a"].conflicting


def test_snapshot_hash_depends_on_content_not_order(tmp_path):
    one = LabelStore(f"sqlite:///{tmp_path / 'one.db'}")
    two = LabelStore(f"sqlite:///{tmp_path / 'two.db'}")
    labels = [label("a", "negative", "ann", 0), label("b", "positive", "ann", 1)]
    one.add(labels)
    two.add(list(reversed(labels)))
    assert snapshot_hash(one.resolved()) == snapshot_hash(two.resolved())
    two.add([label("b", "neutral", "ann", 9)])
    assert snapshot_hash(one.resolved()) != snapshot_hash(two.resolved())


def test_labels_since_last_retrain(tmp_path):
    store = LabelStore(f"sqlite:///{tmp_path / 'l.db'}")
    store.add([label("a", "negative", "ann", 0), label("b", "negative", "ann", 0)])
    assert store.labels_since_last_retrain() == 2
    run = store.start_retrain(parent_version="v1", max_label_id=store.max_label_id())
    store.finish_retrain(run, outcome="rejected", candidate_version="v2", snapshot="h", report={})
    assert store.labels_since_last_retrain() == 0
    store.add([label("c", "negative", "ann", 0)])
    assert store.labels_since_last_retrain() == 1
    assert store.retrain_outcomes() == {"rejected": 1}
