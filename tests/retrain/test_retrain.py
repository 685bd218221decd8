"""Retrain end to end on the tiny world: gate, lineage, atomic promotion."""

from __future__ import annotations

import json
import threading

import pytest

from models.feedback.retrain import Retrainer, due, gate, metric_state
from models.registry import Registry
from pipeline.settings import RetrainSettings

from .conftest import shift_labels

FAST = dict(
    epochs=10,
    batch_size=16,
    learning_rate=2e-3,
    head_learning_rate=1e-2,
    min_new_labels=10,
    max_original_drop=0.05,
    replay_fraction=0.5,
)


def test_better_candidate_is_promoted_with_lineage(tiny_world):
    root, model_settings, data_dir, store = tiny_world
    store.add(shift_labels())
    registry = Registry(root, model_settings.base_model_dir)
    seen, stop = set(), threading.Event()

    def watch_pointer():  # what a hot-reloading classifier polls
        while not stop.is_set():
            seen.add(registry.current_version())

    watcher = threading.Thread(target=watch_pointer)
    watcher.start()
    try:
        report = Retrainer(store, model_settings, RetrainSettings(**FAST), data_dir=data_dir).run()
    finally:
        stop.set()
        watcher.join()
    assert report["outcome"] == "promoted", report["summary"]
    scores = report["scores"]
    assert (
        scores["candidate"]["new_labels"]["sentiment"]["macro_f1"]
        > scores["current"]["new_labels"]["sentiment"]["macro_f1"]
    )
    assert registry.current_version() == report["candidate"]
    assert seen <= {"v1-tiny", report["candidate"]}  # the pointer is never half-written
    entry = registry.get(report["candidate"])  # verified: hashes, base
    assert entry.parent == "v1-tiny"
    assert entry.manifest["data"]["snapshot_hash"] == report["lineage"]["label_snapshot"]
    assert entry.metrics["retrain"]["gate"]["passed"] is True
    assert entry.metrics["retrain"]["parent_scores"] == json.loads(json.dumps(scores["current"]))
    # The parent's TF-IDF model was refitted with the new labels, same C and weight.
    parent = registry.get("v1-tiny")
    assert entry.lexical["tasks"] == {
        task: {**meta, "features": entry.lexical["tasks"][task]["features"]}
        for task, meta in parent.lexical["tasks"].items()
    }
    assert "lexical_fit_seconds" in entry.metrics["retrain"]["training"]
    from models.labels import SENTIMENT_NAMES
    from models.loading import load_lexical

    refitted = load_lexical(entry).heads["sentiment"].probabilities(["CompanyA shares soar today"])
    assert SENTIMENT_NAMES[int(refitted.argmax())] == "positive"  # a verb only the labels had
    # A running classifier's watcher (the service's hot reload) loads the promoted entry.
    from models.inference import EngineOptions, engine_from_registry
    from pipeline.classify.reload import ModelWatcher

    def loader(version):
        return engine_from_registry(registry, version, options=EngineOptions(precision="fp32"))

    watcher = ModelWatcher(registry, loader, serving="v1-tiny", poll_seconds=3600)
    watcher.check_now()
    engine = watcher.take()
    assert engine.version == report["candidate"]
    assert engine.predict(["CompanyA shares soar today"])[0].sentiment == "positive"
    [run] = store.retrains()
    assert (run.outcome, run.parent_version, run.candidate_version) == (
        "promoted",
        "v1-tiny",
        report["candidate"],
    )
    assert store.labels_since_last_retrain() == 0
    assert Retrainer(store, model_settings, RetrainSettings(**FAST)).run()["outcome"] == "skipped"


def test_worse_candidate_is_not_promoted(tiny_world):
    root, model_settings, data_dir, store = tiny_world
    store.add(shift_labels(flip_train=True))  # trained part labelled wrongly
    report = Retrainer(store, model_settings, RetrainSettings(**FAST), data_dir=data_dir).run()
    assert report["outcome"] == "rejected", report["summary"]
    assert report["gate"]["new_label_gain"] <= 0
    registry = Registry(root, model_settings.base_model_dir)
    assert registry.current_version() == "v1-tiny"
    rejected = registry.get(report["candidate"])  # recorded, with lineage, not current
    assert rejected.parent == "v1-tiny"
    assert rejected.metrics["retrain"]["outcome"] == "rejected"
    assert store.retrains()[-1].outcome == "rejected"
    state = metric_state(store)
    assert state["outcomes"] == {"rejected": 1}
    # the serving model's scores are the parent's
    assert (
        state["scores"][("new_labels", "sentiment", "macro_f1")]
        == (report["scores"]["current"]["new_labels"]["sentiment"]["macro_f1"])
    )


def test_gate_rule():
    settings = RetrainSettings(max_original_drop=0.01, min_new_label_gain=0.0)

    def scores(b_brier, a_f1, b_acc=0.5):
        return {
            "new_labels": {
                "sentiment": {"n": 10, "brier": b_brier, "accuracy": b_acc, "macro_f1": 0.5},
                "topic": {"n": 0},
            },
            "original_heldout": {
                "sentiment": {"n": 50, "accuracy": 0.9, "macro_f1": a_f1, "brier": 0.2},
                "topic": {"n": 50, "accuracy": 0.8, "macro_f1": 0.8, "brier": 0.3},
            },
        }

    # (b) defaults to the Brier score, where lower is better
    assert gate(scores(0.5, 0.9), scores(0.3, 0.895), settings).passed
    no_gain = gate(scores(0.5, 0.9), scores(0.5, 0.9), settings)
    assert not no_gain.passed and "(b)" in no_gain.reasons[0]
    worse = gate(scores(0.5, 0.9), scores(0.6, 0.9), settings)
    assert not worse.passed and "brier improvement -0.1000" in worse.reasons[0]
    forgot = gate(scores(0.5, 0.9), scores(0.3, 0.85), settings)
    assert not forgot.passed and "(a) original held-out sentiment" in forgot.reasons[0]
    # one example fewer right on a few labels does not veto a better-calibrated candidate
    one_flip = scores(0.3, 0.9, b_acc=0.4)
    assert gate(scores(0.5, 0.9), one_flip, settings).passed
    by_accuracy = RetrainSettings(new_label_metric="accuracy", max_original_drop=0.01)
    decision = gate(scores(0.5, 0.9), one_flip, by_accuracy)
    assert not decision.passed and "accuracy improvement -0.1000" in decision.reasons[0]
    # (a) defaults to macro-F1: a forgotten class shows there first
    assert not gate(scores(0.5, 0.9), scores(0.3, 0.85), settings).passed
    # and with the Brier score on (a), a rise is a drop
    on_brier = RetrainSettings(original_metric="brier", max_original_drop=0.01)
    worse_a = scores(0.3, 0.9)
    worse_a["original_heldout"]["topic"]["brier"] = 0.32
    decision = gate(scores(0.5, 0.9), worse_a, on_brier)
    assert not decision.passed and "(a) original held-out topic: brier worse by 0.0200" in (
        decision.reasons[0]
    )


def test_triggers(tiny_world):
    _, _, _, store = tiny_world
    settings = RetrainSettings(trigger_new_labels=5, schedule_seconds=None)
    assert due(store, settings) is None
    store.add(shift_labels()[:4])
    assert due(store, settings) is None
    store.add(shift_labels()[4:5])
    assert "5 new labels" in due(store, settings)
    assert "schedule" in due(store, RetrainSettings(trigger_new_labels=None, schedule_seconds=60))


def test_cli_retrain_exit_status_and_json(tiny_world, monkeypatch):
    import json as _json

    from typer.testing import CliRunner

    from pipeline.cli import app

    root, model_settings, _, store = tiny_world
    store.add(shift_labels())
    env = {
        "FINSENTRY_MODEL_REGISTRY_DIR": str(root),
        "FINSENTRY_MODEL_BASE_MODEL_DIR": str(model_settings.base_model_dir),
        "FINSENTRY_MODEL_DEVICE": "cpu",
        "FINSENTRY_MODEL_TORCH_THREADS": "1",
        "FINSENTRY_LABELS_DATABASE_URL": store.url,
        # unreachable (accuracy, macro-F1 and Brier improve by at most 1, 1, 2): rejected
        "FINSENTRY_RETRAIN_MIN_NEW_LABEL_GAIN": "2.5",
        **{f"FINSENTRY_RETRAIN_{k.upper()}": str(v) for k, v in FAST.items()},
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(app, ["retrain", "--json"])
    assert result.exit_code == 1, result.output
    report = _json.loads(result.stdout)
    assert report["outcome"] == "rejected" and report["current"] == "v1-tiny"
    assert "(b)" in report["gate"]["reasons"][0]
    again = CliRunner().invoke(app, ["retrain"])
    assert again.exit_code == 0 and "no new labels" in again.stdout


def test_one_retrain_at_a_time(tiny_world):
    from models.feedback.retrain import RetrainError, _exclusive, _lock_path

    root, model_settings, data_dir, store = tiny_world
    store.add(shift_labels())
    retrainer = Retrainer(store, model_settings, RetrainSettings(**FAST), data_dir=data_dir)
    with _exclusive(_lock_path(root)), pytest.raises(RetrainError, match="another retrain"):
        retrainer.run()
    assert store.retrains() == []


@pytest.mark.parametrize(
    ("value", "reason"),
    [("-1", "greater than or equal to 0"), (str(2**32), "less than or equal to 4294967295")],
)
def test_seed_outside_numpys_range_is_refused_by_name(monkeypatch, value, reason):
    from pydantic import ValidationError

    monkeypatch.setenv("FINSENTRY_RETRAIN_SEED", value)
    with pytest.raises(ValidationError, match=rf"seed\n  Input should be {reason}"):
        RetrainSettings()
    monkeypatch.setenv("FINSENTRY_RETRAIN_SEED", str(2**32 - 1))
    assert RetrainSettings().seed == 2**32 - 1
