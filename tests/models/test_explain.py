"""Explanations by occlusion on the shipped model: faithful, stable, cached."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.explain import Explainer, ExplainError, explain_texts, split_words

HEADLINE = "Oil major slashes dividend as profits collapse amid fraud lawsuit"


@pytest.fixture(scope="module")
def engine():
    from models.inference import EngineOptions, engine_from_registry
    from models.registry import Registry
    from pipeline.settings import ModelSettings

    settings = ModelSettings()
    registry = Registry(settings.registry_dir, settings.resolved_base_model_dir())
    return engine_from_registry(registry, options=EngineOptions(device="cpu", precision="fp32"))


def _p_negative(engine, text: str) -> float:
    _, sentiment = engine.probabilities([text])
    return float(sentiment[0, engine.sentiment_names.index("negative")])


def test_removing_the_top_words_lowers_the_negative_score(engine):
    explanation = Explainer(engine, top_k=3).explain(HEADLINE)
    assert explanation.sentiment.label == "negative"
    assert explanation.sentiment.probability > 0.8  # a strongly negative headline
    top = {w.index for w in explanation.sentiment.words}
    assert len(top) == 3 and all(w.weight > 0 for w in explanation.sentiment.words)
    assert explanation.sentiment.phrases and explanation.topic.words

    words = [HEADLINE[s:e] for s, e in split_words(HEADLINE)]
    without_top = " ".join(w for i, w in enumerate(words) if i not in top)
    rng = np.random.default_rng(0)
    others = [i for i in range(len(words)) if i not in top]
    without_random = " ".join(
        w for i, w in enumerate(words) if i not in set(rng.choice(others, 3, replace=False))
    )
    before = _p_negative(engine, HEADLINE)
    assert before == pytest.approx(explanation.sentiment.probability, abs=1e-3)
    # Faithful by definition: each weight is what removing that word alone costs.
    for word in explanation.sentiment.words:
        alone = " ".join(w for i, w in enumerate(words) if i != word.index)
        assert before - _p_negative(engine, alone) == pytest.approx(word.weight, abs=1e-3)
    # The top words carry the decision, more than three other words do. (Together
    # they need not cost more than the top one alone: words interact.)
    after_top = _p_negative(engine, without_top)
    assert after_top < before
    assert after_top < _p_negative(engine, without_random)


def test_explanations_are_stable_and_cached(engine):
    explainer = Explainer(engine, top_k=5)
    first = explainer.explain(HEADLINE)
    again = explain_texts(engine, [HEADLINE], top_k=5)[0]  # recomputed, not cached
    assert again.sentiment == first.sentiment and again.topic == first.topic
    assert explainer.explain(HEADLINE) is first
    assert (explainer.hits, explainer.misses) == (1, 1)
    restored = type(first).from_json(json.loads(json.dumps(first.to_json())))
    assert restored == first


def test_a_text_without_words_is_refused(engine):
    with pytest.raises(ExplainError, match="no words"):
        explain_texts(engine, ["   "])


def test_cli_explains_a_stored_article_and_keeps_the_explanation(engine, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from models import explain as explain_module
    from pipeline.articles.store import ArticleStore
    from pipeline.cli import app
    from tests.articles.helpers import scored

    url = f"sqlite:///{tmp_path / 'articles.db'}"
    store = ArticleStore(url)
    store.upsert([scored("art-1", title=HEADLINE, model_version=engine.version)])
    monkeypatch.setenv("FINSENTRY_ARTICLES_DATABASE_URL", url)
    monkeypatch.setattr(
        explain_module.Explainer, "from_settings", classmethod(lambda cls, **kw: cls(engine, **kw))
    )
    result = CliRunner().invoke(app, ["explain", "--id", "art-1", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["sentiment"]["label"] == "negative" and shown["sentiment"]["words"]
    assert store.get("art-1").explanation == shown
    result = CliRunner().invoke(app, ["explain", "--id", "missing"])
    assert result.exit_code == 2 and "no article 'missing'" in result.output
    result = CliRunner().invoke(app, ["explain", HEADLINE])
    assert result.exit_code == 0 and "sentiment: negative" in result.stdout
    store.close()
