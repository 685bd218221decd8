"""The inference engine on a tiny random encoder: order, calibration, precisions, long texts."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from models.inference import (
    EngineError,
    EngineOptions,
    InferenceEngine,
    cpu_has_native_bf16,
    engine_from_registry,
)
from models.registry import Registry, RegistryError
from models.testing import make_tiny_entry, tiny_base_dir

TEXTS = [
    "Fed raises rates by 50bp, stocks slide",
    "$AAPL beats earnings estimates, shares jump 5% after hours",
    "Oil",
    "Treasury yields climb as inflation data surprises to the upside; the dollar strengthens "
    "against the yen and the euro while gold retreats from its record high",
    "Dividend declared",
]


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Registry:
    root = tmp_path_factory.mktemp("registry")
    make_tiny_entry(root, seed=0)
    return Registry(root, tiny_base_dir(root))


@pytest.fixture(scope="module")
def fp32(registry) -> InferenceEngine:
    return engine_from_registry(registry, options=EngineOptions(precision="fp32", batch_size=2))


def test_predictions_keep_input_order_whatever_the_batching(registry, fp32):
    # fp32: batches of 2 spread over worker threads; whole: one batch, torch's own threads.
    whole = engine_from_registry(
        registry, options=EngineOptions(precision="fp32", batch_size=64, cpu_parallelism="ops")
    )
    one_by_one = [fp32.predict([t])[0] for t in TEXTS]
    for a, b, c in zip(fp32.predict(TEXTS), whole.predict(TEXTS), one_by_one, strict=True):
        assert a.topic == b.topic == c.topic
        assert a.sentiment == b.sentiment == c.sentiment
        assert a.sentiment_score == pytest.approx(c.sentiment_score, abs=1e-5)
        assert a.topic_score == pytest.approx(b.topic_score, abs=1e-5)


def test_sentiment_score_is_positive_minus_negative_and_confidence_is_the_chosen_probability(fp32):
    topic, sentiment = fp32.probabilities(TEXTS)
    assert topic.shape == (len(TEXTS), 20) and sentiment.shape == (len(TEXTS), 3)
    np.testing.assert_allclose(topic.sum(axis=1), 1.0, atol=1e-5)
    for prediction, probs in zip(fp32.predict(TEXTS), sentiment, strict=True):
        assert prediction.sentiment_score == pytest.approx(probs[2] - probs[0], abs=1e-6)
        assert prediction.confidence == pytest.approx(probs.max(), abs=1e-6)
        assert prediction.sentiment == ("negative", "neutral", "positive")[int(probs.argmax())]
        assert prediction.model_version == fp32.version


def test_temperature_above_one_lowers_confidence_without_changing_labels(registry, fp32):
    loaded_model = fp32.model
    hot = InferenceEngine(
        loaded_model,
        fp32.tokenizer,
        version="hot",
        topic_names=fp32.topic_names,
        sentiment_names=fp32.sentiment_names,
        temperatures={"topic": 3.0, "sentiment": 3.0},
        options=EngineOptions(precision="fp32"),
    )
    for cold, warm in zip(fp32.predict(TEXTS), hot.predict(TEXTS), strict=True):
        assert cold.sentiment == warm.sentiment and cold.topic == warm.topic
        assert warm.confidence < cold.confidence
        assert warm.topic_score < cold.topic_score


def test_head_mode_tokenises_exactly_like_the_hf_tokenizer(fp32):
    texts = [*TEXTS, " ".join(TEXTS * 4), "", "é" * 300]
    expected = fp32.tokenizer(texts, truncation=True, max_length=fp32.options.max_tokens)
    ids, owners = fp32.token_ids(texts)
    assert owners is None and ids == expected["input_ids"]
    assert max(len(x) for x in ids) == fp32.options.max_tokens


def test_empty_input_gives_no_predictions(fp32):
    assert fp32.predict([]) == []


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_cpu_precisions_agree_with_fp32(registry, fp32, precision):
    if precision == "bf16" and not cpu_has_native_bf16():
        with pytest.raises(EngineError, match="emulated"):
            EngineOptions(precision="bf16", device="cpu").resolve()
        return
    engine = engine_from_registry(
        registry, options=EngineOptions(precision=precision, device="cpu")
    )
    assert engine.mode == f"cpu/{precision}"
    _, reference = fp32.probabilities(TEXTS)
    _, other = engine.probabilities(TEXTS)
    np.testing.assert_allclose(other, reference, atol=0.03)


def test_openvino_float_graph_agrees_with_torch_fp32(registry, fp32):
    engine = engine_from_registry(
        registry, options=EngineOptions(precision="openvino", device="cpu")
    )
    assert engine.mode == "cpu/openvino"
    assert getattr(engine.model, "second_look", None) is None
    reference = fp32.probabilities(TEXTS)
    for ours, theirs in zip(engine.probabilities(TEXTS), reference, strict=True):
        np.testing.assert_allclose(ours, theirs, atol=0.03)  # bf16 where the CPU has it


def test_openvino_int8_scores_close_calls_again_in_float(registry, fp32):
    from models.openvino_encoder import SecondLook

    engine = engine_from_registry(
        registry, options=EngineOptions(precision="openvino-int8", device="cpu")
    )
    second_look = engine.model.second_look
    assert isinstance(second_look, SecondLook) and 0 < second_look.margin < 1
    topic, sentiment = engine.probabilities(TEXTS)
    np.testing.assert_allclose(topic.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(sentiment, fp32.probabilities(TEXTS)[1], atol=0.05)
    # A margin of 1 makes every text a close call: what is served is the float graph's.
    engine.model.second_look = SecondLook(second_look.model, margin=1.0)
    engine.rows_scored = engine.rows_second_look = 0
    float_only = engine_from_registry(
        registry, options=EngineOptions(precision="openvino", device="cpu")
    )
    for ours, theirs in zip(
        engine.probabilities(TEXTS), float_only.probabilities(TEXTS), strict=True
    ):
        np.testing.assert_allclose(ours, theirs, atol=1e-6)
    assert engine.rows_scored == engine.rows_second_look == len(TEXTS)
    # A margin of 0 serves int8 alone, and it differs from the float graph somewhere.
    engine.model.second_look = SecondLook(second_look.model, margin=0.0)
    int8_only = engine.probabilities(TEXTS)
    assert engine.rows_second_look == len(TEXTS)  # unchanged: no text scored again
    assert not np.allclose(int8_only[0], float_only.probabilities(TEXTS)[0], atol=1e-6)


def test_openvino_int8_without_calibration_data_is_a_clear_engine_error(registry, monkeypatch):
    def unreadable():
        raise OSError("models/data/twitter_topic_train.csv: no such file")

    monkeypatch.setattr("models.data.make_splits", unreadable)
    with pytest.raises(EngineError, match="calibrates on the bundled training data"):
        engine_from_registry(registry, options=EngineOptions(precision="openvino-int8"))


def test_openvino_is_cpu_only(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    with pytest.raises(EngineError, match="not available on cuda"):
        EngineOptions(precision="openvino-int8", device="cuda").resolve()


def test_int8_deprecation_warnings_are_logged_not_leaked(registry, caplog):
    with warnings.catch_warnings(record=True) as leaked:
        warnings.simplefilter("always")
        with caplog.at_level("INFO", logger="models.inference"):
            engine = engine_from_registry(registry, options=EngineOptions(precision="int8"))
            engine.predict(TEXTS)
    assert not [w for w in leaked if "quantiz" in str(w.message).lower()]
    assert any("deprecation warnings expected" in r.getMessage() for r in caplog.records)


def test_chunks_mode_reads_the_whole_article_and_head_mode_only_the_lead(registry):
    lead = "Markets calm, nothing happens today. "
    tail = "Company files for bankruptcy, shares collapse, CEO arrested for fraud. " * 10
    article = lead + tail
    head = engine_from_registry(registry, options=EngineOptions(precision="fp32"))
    chunks = engine_from_registry(
        registry, options=EngineOptions(precision="fp32", long_text="chunks")
    )
    _, head_probs = head.probabilities([article, lead])
    _, chunk_probs = chunks.probabilities([article, lead])
    # A short text is one chunk: both modes agree on it.
    np.testing.assert_allclose(chunk_probs[1], head_probs[1], atol=1e-5)
    # The long article's chunk average includes the tail the head mode never sees.
    assert not np.allclose(chunk_probs[0], head_probs[0], atol=1e-4)
    np.testing.assert_allclose(chunk_probs.sum(axis=1), 1.0, atol=1e-5)


def test_max_chunks_bounds_the_work_and_counts_what_was_dropped(registry):
    engine = engine_from_registry(
        registry, options=EngineOptions(precision="fp32", long_text="chunks", max_chunks=2)
    )
    engine.predict(["word " * 500])
    assert engine.chunks_dropped > 0


def test_a_corrupt_entry_is_refused_with_a_registry_error(tmp_path):
    entry = make_tiny_entry(tmp_path, seed=3)
    (entry.path / "heads.safetensors").write_bytes(b"not a tensor file")
    registry = Registry(tmp_path, tiny_base_dir(tmp_path))
    with pytest.raises(RegistryError, match="corrupt"):
        engine_from_registry(registry, entry.version)


def test_options_are_validated():
    with pytest.raises(EngineError, match="batch_size"):
        EngineOptions(batch_size=0)
    with pytest.raises(EngineError, match="precision 'fp16' is not available on cpu"):
        EngineOptions(device="cpu", precision="fp16").resolve()
    with pytest.raises(EngineError, match="unknown device"):
        EngineOptions(device="tpu").resolve()
