"""One batch: good records scored in order, bad ones dead-lettered with their reason."""

from __future__ import annotations

import pytest

from pipeline.classify.process import score_batch
from tests.classify.helpers import BAD_RECORDS, Record, ScriptedClassifier, raw_bytes


def test_good_records_are_scored_and_bad_ones_dead_lettered_with_their_reason():
    records = [Record(raw_bytes("a1", title="Market crash deepens"), key=b"a1", offset=0)]
    for offset, (name, (value, _)) in enumerate(BAD_RECORDS.items(), start=1):
        records.append(Record(value, key=name.encode(), offset=offset, partition=2))
    records.append(Record(raw_bytes("a2"), key=b"a2", offset=99))

    result = score_batch(records, ScriptedClassifier(), max_text_chars=10_000)

    assert [a.id for a in result.scored] == ["a1", "a2"]
    assert [a.sentiment for a in result.scored] == ["negative", "positive"]
    assert result.scored[0].model_version == "scripted-1"
    assert result.scored[0].scored_at >= result.scored[0].fetched_at
    by_key = {d.key: d for d in result.dead}
    assert {k: d.reason for k, d in by_key.items()} == {k: r for k, (_, r) in BAD_RECORDS.items()}
    for name, (value, _) in BAD_RECORDS.items():
        letter = by_key[name]
        assert letter.stage == "classify" and letter.error
        assert letter.original_bytes() == value
        assert letter.partition == 2 and letter.source_topic == "news.raw"


def test_an_absurdly_long_text_is_dead_lettered_not_truncated():
    record = Record(raw_bytes("long", title="t", body="word " * 5_000), key=b"long")
    result = score_batch([record], ScriptedClassifier(), max_text_chars=1_000)
    assert result.scored == []
    assert result.dead[0].reason == "text_too_long"
    assert "25001 characters" in result.dead[0].error


def test_an_inference_failure_dead_letters_only_the_record_that_caused_it():
    records = [
        Record(raw_bytes("ok1"), offset=0),
        Record(raw_bytes("bad", title="poison pill headline"), key=b"bad", offset=1),
        Record(raw_bytes("ok2"), offset=2),
    ]
    classifier = ScriptedClassifier()
    result = score_batch(records, classifier, max_text_chars=10_000)
    assert [a.id for a in result.scored] == ["ok1", "ok2"]
    assert [(d.key, d.reason) for d in result.dead] == [("bad", "inference_failed")]
    assert "model exploded" in result.dead[0].error


def test_a_batch_of_only_bad_records_never_calls_the_model():
    classifier = ScriptedClassifier()
    result = score_batch([Record(b"nope")], classifier, max_text_chars=100)
    assert classifier.calls == [] and len(result.dead) == 1


@pytest.mark.parametrize("score", [1.5, -2.0])
def test_an_out_of_range_verdict_is_dead_lettered(score):
    class Broken(ScriptedClassifier):
        def predict(self, texts):
            from dataclasses import replace

            return [replace(p, sentiment_score=score) for p in super().predict(texts)]

    result = score_batch([Record(raw_bytes("x"))], Broken(), max_text_chars=100)
    assert result.scored == [] and result.dead[0].reason == "inference_failed"
