"""LabelMetrics / RetrainMetrics exposition, and the watch loop serving them."""

from __future__ import annotations

import threading
import time

import httpx
from prometheus_client import generate_latest

from models.feedback.retrain import Retrainer, watch_loop
from pipeline.metrics.definitions import CollectorRegistry, LabelMetrics, RetrainMetrics
from pipeline.settings import RetrainSettings

from .conftest import shift_labels


def test_exposition():
    registry = CollectorRegistry()
    labels, retrains = LabelMetrics(registry), RetrainMetrics(registry)
    labels.update({("csv", "sentiment"): 3, ("review", "topic"): 1}, pending=4)
    retrains.update(
        {"promoted": 2, "rejected": 1},
        {("new_labels", "sentiment", "macro_f1"): 0.75},
        1764331200.0,
        95.5,
    )
    assert generate_latest(registry).decode() == (
        "# HELP finsentry_labels_total Labels stored, by intake source and task.\n"
        "# TYPE finsentry_labels_total counter\n"
        'finsentry_labels_total{source="csv",task="sentiment"} 3.0\n'
        'finsentry_labels_total{source="review",task="topic"} 1.0\n'
        "# HELP finsentry_labels_pending Labels stored since the last finished retrain.\n"
        "# TYPE finsentry_labels_pending gauge\n"
        "finsentry_labels_pending 4.0\n"
        "# HELP finsentry_retrains_total Finished retrains by outcome.\n"
        "# TYPE finsentry_retrains_total counter\n"
        'finsentry_retrains_total{outcome="promoted"} 2.0\n'
        'finsentry_retrains_total{outcome="rejected"} 1.0\n'
        'finsentry_retrains_total{outcome="failed"} 0.0\n'
        "# HELP finsentry_model_eval_score The current model's evaluation score (0..1) by split, "
        "task and metric.\n"
        "# TYPE finsentry_model_eval_score gauge\n"
        'finsentry_model_eval_score{metric="macro_f1",split="new_labels",task="sentiment"} 0.75\n'
        "# HELP finsentry_retrain_last_finished_timestamp_seconds Unix time the last retrain "
        "finished (any outcome).\n"
        "# TYPE finsentry_retrain_last_finished_timestamp_seconds gauge\n"
        "finsentry_retrain_last_finished_timestamp_seconds 1.7643312e+09\n"
        "# HELP finsentry_retrain_last_duration_seconds Wall-clock duration of the last retrain, "
        "training and evaluation.\n"
        "# TYPE finsentry_retrain_last_duration_seconds gauge\n"
        "finsentry_retrain_last_duration_seconds 95.5\n"
    )


def test_watch_loop_serves_label_metrics(tiny_world, tmp_path):
    _, model_settings, data_dir, store = tiny_world
    store.add(shift_labels()[:3])
    settings = RetrainSettings(trigger_new_labels=1000, poll_seconds=0.2, metrics_port=0)
    stop = threading.Event()
    targets = tmp_path / "targets"
    thread = threading.Thread(
        target=watch_loop,
        args=(Retrainer(store, model_settings, settings), stop),
        kwargs={"targets_dir": targets},
    )
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not list(targets.glob("retrain-*.json")) and time.monotonic() < deadline:
            time.sleep(0.05)
        [target] = targets.glob("retrain-*.json")
        port = target.stem.split("-")[-1]
        body = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert 'finsentry_labels_total{source="csv",task="sentiment"} 3.0' in body
        assert "finsentry_labels_pending 3.0" in body
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert not list(targets.glob("retrain-*.json"))  # deregistered on exit
