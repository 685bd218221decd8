"""Label Studio round trip: export pre-filled tasks, label them, import the export."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from models.feedback.intake import read_labels
from models.feedback.labelstudio import export_tasks, labeling_config
from models.feedback.queue import Article, Candidate, Scores
from models.feedback.store import LabelStore
from models.feedback.vocab import TOPICS


def scores(topic_index, sentiment):
    topic = [0.01] * 20
    topic[topic_index] = 0.81
    return Scores(tuple(topic), sentiment, "v7")


def test_round_trip_keeps_ids_and_labels(tmp_path):
    candidates = [
        Candidate(Article("id-1", "Fed signals pause", "reuters"), scores(1, (0.1, 0.8, 0.1))),
        Candidate(Article("id-2", "Acme to buy Widget Co", "ft"), scores(13, (0.1, 0.2, 0.7))),
        Candidate(Article("id-3", "Oil slides on glut", "wsj"), scores(6, (0.6, 0.3, 0.1))),
    ]
    tasks = export_tasks(candidates)
    assert tasks[0]["predictions"][0]["result"][0]["value"]["choices"] == ["Fed | Central Banks"]
    assert tasks[1]["predictions"][0]["model_version"] == "v7"

    # What Label Studio exports after two analysts worked on it: ids assigned by
    # Label Studio, the prediction kept, one correction, one cancelled annotation.
    exported = []
    for number, task in enumerate(tasks, start=1):
        result = json.loads(json.dumps(task["predictions"][0]["result"]))
        for item in result:
            item.pop("score")
        if task["data"]["article_id"] == "id-3":
            result[1]["value"]["choices"] = ["neutral"]  # analyst corrects the sentiment
        annotations = [
            {
                "id": 100 + number,
                "completed_by": {"id": 1, "email": "ann@example.com"},
                "result": result,
                "was_cancelled": False,
                "created_at": "2026-11-28T10:00:00.000000Z",
                "updated_at": f"2026-11-28T10:0{number}:00.000000Z",
            }
        ]
        if number == 2:
            annotations.append({"id": 200, "completed_by": 2, "result": [], "was_cancelled": True})
        exported.append(
            {
                "id": number,
                "data": task["data"],
                "annotations": annotations,
                "predictions": task["predictions"],
            }
        )
    path = tmp_path / "project-1-at-2026.json"
    path.write_text(json.dumps(exported, indent=2), encoding="utf-8")

    report = read_labels(path, labeller="unused")
    assert report.errors == []
    store = LabelStore(f"sqlite:///{tmp_path / 'l.db'}")
    store.add(report.labels)
    got = {(r.article_id, r.task): r.label for r in store.resolved()}
    assert got == {
        ("id-1", "topic"): "Fed | Central Banks",
        ("id-1", "sentiment"): "neutral",
        ("id-2", "topic"): "M&A | Investments",
        ("id-2", "sentiment"): "positive",
        ("id-3", "topic"): "Energy | Oil",
        ("id-3", "sentiment"): "neutral",
    }
    rows = {(r.article_id, r.task): r for r in store.rows()}
    assert rows[("id-3", "sentiment")].predicted_label == "negative"
    assert rows[("id-3", "sentiment")].model_version == "v7"
    assert rows[("id-1", "topic")].labeller == "labelstudio:ann@example.com"
    assert all(r.source == "label-studio" for r in rows.values())


def test_labeling_config_lists_every_class():
    root = ET.fromstring(labeling_config())
    choices = {c.get("name"): [x.get("value") for x in c] for c in root.iter("Choices")}
    assert choices["topic"] == list(TOPICS)
    assert choices["sentiment"] == ["negative", "neutral", "positive"]
