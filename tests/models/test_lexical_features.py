"""One pass over the text for every lexical head (models/lexical_features.py) scores
exactly what sklearn's TfidfVectorizer.transform and the head's coefficients score."""

from __future__ import annotations

import copy
import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest
from scipy.sparse import hstack

from models.data import normalise_text
from models.lexical import _KINDS, KIND_NAMES, LexicalModel, _fit_head, _fit_vectorizers
from models.lexical_features import SharedTfidf

DATA = Path(__file__).resolve().parents[2] / "models" / "data"


def tweets(name: str, n: int) -> tuple[list[str], np.ndarray]:
    with open(DATA / name, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))[:n]
    return [normalise_text(r["text"]) for r in rows], np.array([int(r["label"]) for r in rows])


@pytest.fixture(scope="module")
def heads():
    """A topic and a sentiment head fitted on different real tweets: different vocabularies."""
    out = []
    for task, name in (("topic", "twitter_topic_train.csv"),
                       ("sentiment", "twitter_sentiment_train.csv")):
        texts, labels = tweets(name, 600)
        vectorizers, x = _fit_vectorizers(texts)
        head = _fit_head(task, vectorizers, x, labels, c=10.0)
        head.model_weight, head.temperature = 0.6, 1.3
        out.append(head)
    return out


def sklearn_scores(head, texts):
    x = hstack([head.vectorizers[kind].transform(texts) for kind, _ in _KINDS]).tocsr()
    return np.asarray(x @ head.coef.T) + head.intercept


#: Held-out tweets (unseen n-grams), one with no known n-gram at all, an empty one,
#: repeated n-grams, non-ASCII text.
TEXTS = tweets("heldout_topic.csv", 150)[0] + [
    "\u2603\u2603", "", "up up up up up", "Ölpreis fällt — €uro steigt 📉",
]


def test_scores_equal_sklearn_tfidf_for_every_head(heads):
    shared = SharedTfidf(heads, KIND_NAMES).scores(TEXTS)
    for head in heads:
        expected = sklearn_scores(head, TEXTS)
        np.testing.assert_allclose(shared[head.task], expected, rtol=1e-5, atol=1e-5)
        assert (shared[head.task].argmax(1) == expected.argmax(1)).all()
    # No known n-gram: the intercepts alone, as sklearn's all-zero row gives.
    unknown = TEXTS.index("\u2603\u2603")
    np.testing.assert_allclose(shared["topic"][unknown], heads[0].intercept)


def test_no_texts_give_empty_scores(heads):
    scores = SharedTfidf(heads, KIND_NAMES).scores([])
    assert scores["topic"].shape == (0, len(heads[0].intercept))
    assert scores["sentiment"].shape == (0, len(heads[1].intercept))


def test_mix_all_equals_each_head_mixed_alone(heads):
    model = LexicalModel({head.task: head for head in heads})
    encoder = {
        head.task: np.full((len(TEXTS), len(head.intercept)), 1 / len(head.intercept), np.float32)
        for head in heads
    }
    together = model.mix_all(encoder, TEXTS)
    for head in heads:
        alone = head.mix(encoder[head.task], TEXTS)
        np.testing.assert_allclose(together[head.task], alone, rtol=1e-6, atol=1e-7)


def test_a_head_at_weight_one_is_the_encoder_alone_and_not_analysed(heads):
    topic, sentiment = heads
    encoder_only = dataclasses.replace(topic, model_weight=1.0)
    model = LexicalModel({"topic": encoder_only, "sentiment": sentiment})
    probs = {"topic": np.ones((2, 20), np.float32) / 20, "sentiment": np.ones((2, 3)) / 3}
    mixed = model.mix_all(probs, ["stocks fall", "gold rises"])
    assert mixed["topic"] is probs["topic"]
    assert model._features.tasks == ["sentiment"]


def test_heads_whose_analysers_differ_are_refused(heads):
    from models.lexical import LexicalError

    topic, sentiment = heads
    odd = dataclasses.replace(sentiment, vectorizers=dict(sentiment.vectorizers))
    odd.vectorizers["chars"] = copy.deepcopy(sentiment.vectorizers["chars"])
    odd.vectorizers["chars"].set_params(ngram_range=(2, 4))
    with pytest.raises(LexicalError, match="chars vectorisers differ"):
        SharedTfidf([topic, odd], KIND_NAMES)
