"""Label files in: CSV, JSONL, Label Studio; bad rows reported by line, good rows kept."""

from __future__ import annotations

import json

import pytest

from models.feedback.intake import ImportFailed, read_labels, text_article_id
from models.feedback.store import LabelStore


def test_csv_with_bad_rows_keeps_the_good_ones(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(
        "id,text,sentiment,topic,labeller,labelled_at\n"
        "a1,Stocks slump on rate fears,negative,,ann,2026-11-28T10:00:00Z\n"
        "a2,Fed holds rates,Neutral,1,ann,2026-11-28T10:01:00Z\n"
        "a3,,positive,,ann,2026-11-28T10:02:00Z\n"  # no text
        "a4,Apple beats estimates,great,,ann,2026-11-28T10:03:00Z\n"  # unknown label
        'a5,"Multi\nline headline",2,,bob,2026-11-28T10:04:00Z\n'  # dataset int 2 = neutral
        "a6,Oil jumps,,,ann,2026-11-28T10:05:00Z\n"  # no label at all
        "a7,Gold rallies,positive,,ann,yesterday\n"  # bad time
        "a8,Too many fields,positive,,ann,2026-11-28T10:06:00Z,extra\n",
        encoding="utf-8",
    )
    report = read_labels(path, labeller="default")
    assert report.rows == 8
    errors = {e.line: e.reason for e in report.errors}
    assert sorted(errors) == [4, 5, 8, 9, 10]  # a5 spans lines 6-7
    assert "no text" in errors[4]
    assert "unknown sentiment label 'great'" in errors[5]
    assert "no label" in errors[8]
    assert "not an RFC 3339 time" in errors[9]
    assert "more fields than the header" in errors[10]
    got = {(x.article_id, x.task): x.label for x in report.labels}
    assert got == {
        ("a1", "sentiment"): "negative",
        ("a2", "sentiment"): "neutral",
        ("a2", "topic"): "Fed | Central Banks",
        ("a5", "sentiment"): "neutral",
    }
    assert {x.labeller for x in report.labels} == {"ann", "bob"}

    store = LabelStore(f"sqlite:///{tmp_path / 'labels.db'}")
    assert store.add(report.labels).added == 4
    # Importing the same file again adds nothing.
    assert store.add(read_labels(path, labeller="default").labels).added == 0
    assert len(store.rows()) == 4


def test_jsonl_with_task_and_label_and_derived_ids(tmp_path):
    path = tmp_path / "labels.jsonl"
    lines = [
        json.dumps({"text": "Bank X fined by SEC", "task": "topic", "label": "Legal | Regulation"}),
        "{not json",
        json.dumps({"title": "Shares of Y", "body": "fall 5%", "label": 0}),  # needs --task
        json.dumps(["a", "list"]),
        "",
        json.dumps({"id": "z" * 200, "text": "long id", "sentiment": "positive"}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = read_labels(path, labeller="carol", task="sentiment")
    assert {e.line for e in report.errors} == {2, 4, 6}
    assert [(x.task, x.label) for x in report.labels] == [
        ("topic", "Legal | Regulation"),
        ("sentiment", "negative"),
    ]
    assert report.labels[0].article_id == text_article_id("Bank  X fined by SEC")
    assert report.labels[1].text == "Shares of Y\nfall 5%"
    assert all(x.labeller == "carol" and x.source == "jsonl" for x in report.labels)


def test_bare_label_without_task_is_a_row_error(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("text,label\nStocks up,1\n", encoding="utf-8")
    report = read_labels(path, labeller="x")
    assert [str(e) for e in report.errors] == [
        "line 2: 'label' needs a 'task' column (topic or sentiment) or --task"
    ]
    assert read_labels(path, labeller="x", task="topic").labels[0].label == "Fed | Central Banks"


def test_broken_label_studio_file_names_the_line(tmp_path):
    path = tmp_path / "export.json"
    path.write_text(
        '[\n {"data": {"text": "a"}, "annotations": []},\n {"data": oops}\n]', encoding="utf-8"
    )
    with pytest.raises(ImportFailed, match="line 3"):
        read_labels(path, labeller="x")
