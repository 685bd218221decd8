"""Why the model said what it said: word-level occlusion, faithful by construction.

For a text, every word is removed in turn and the variant is scored by the same
engine that serves the classifier (one batch: the original plus one variant per
word). A word's weight for a head is how much the probability of the class the
model predicted for the original drops without it:

    weight(word, head) = p(predicted class | text) - p(predicted class | text - word)

Positive weights pushed the decision, negative ones pulled against it. Because
the weights are differences of the model's own calibrated probabilities, they
are faithful to the model by definition (removing a word alone lowers the score
by exactly its weight; removing several together need not add up, since words
interact), at the cost of ``words + 1`` sequences per
text (docs/explain.md has the measured cost). Phrases are runs of adjacent
words that are among the top words.

Results are cached in an LRU keyed by (model version, text, top_k, class); the article
store keeps explanations of stored articles (``ArticleStore.set_explanation``).
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

#: Words are runs of non-space characters; punctuation stays with its word so
#: that removing a word never glues its neighbours together.
_WORD = re.compile(r"\S+")
#: Texts longer than this many words are explained on their first words only
#: (the classifier reads title + lead within its token budget anyway).
MAX_WORDS = 128

METHOD = "occlusion"


class ExplainError(ValueError):
    """The text cannot be explained; the message names the value."""


class ScoringEngine(Protocol):
    """What the explainer needs from :class:`models.inference.InferenceEngine`."""

    version: str
    topic_names: tuple[str, ...]
    sentiment_names: tuple[str, ...]

    def probabilities(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class WordWeight:
    word: str
    #: Position among the text's words (0-based).
    index: int
    #: Drop of the predicted class's probability when the word is removed.
    weight: float


@dataclass(frozen=True)
class HeadExplanation:
    """One head (sentiment or topic): the predicted class and the words behind it."""

    label: str
    probability: float
    words: list[WordWeight]
    phrases: list[str]


@dataclass(frozen=True)
class Explanation:
    text: str
    model_version: str
    sentiment: HeadExplanation
    topic: HeadExplanation
    method: str = METHOD
    #: Sequences scored (original + one per word) and wall time of that scoring.
    sequences: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Explanation:
        def head(h: dict[str, Any]) -> HeadExplanation:
            return HeadExplanation(
                label=h["label"],
                probability=h["probability"],
                words=[WordWeight(**w) for w in h["words"]],
                phrases=list(h["phrases"]),
            )

        return cls(
            text=data["text"],
            model_version=data["model_version"],
            sentiment=head(data["sentiment"]),
            topic=head(data["topic"]),
            method=data.get("method", METHOD),
            sequences=data.get("sequences", 0),
            seconds=data.get("seconds", 0.0),
            extra=data.get("extra", {}),
        )


def split_words(text: str) -> list[tuple[int, int]]:
    """Character spans of the words of ``text`` (at most ``MAX_WORDS``)."""
    return [m.span() for m in _WORD.finditer(text)][:MAX_WORDS]


def _without(text: str, spans: list[tuple[int, int]], drop: set[int]) -> str:
    kept = [text[start:end] for i, (start, end) in enumerate(spans) if i not in drop]
    return " ".join(kept)


def _phrases(words: list[str], top: list[WordWeight]) -> list[str]:
    """Runs of adjacent top words, in the order of their strongest word."""
    chosen = {w.index: w.weight for w in top}
    runs: list[tuple[float, str]] = []
    run: list[int] = []
    for i in sorted(chosen) + [None]:
        if run and (i is None or i != run[-1] + 1):
            runs.append((max(chosen[j] for j in run), " ".join(words[j] for j in run)))
            run = []
        if i is not None:
            run.append(i)
    return [text for _, text in sorted(runs, key=lambda r: -r[0])]


def _head(
    names: tuple[str, ...],
    probs: np.ndarray,
    words: list[str],
    top_k: int,
    target: str | None = None,
) -> HeadExplanation:
    """``probs``: row 0 the original, row 1 + i the text without word i.

    ``target``: the class to explain; None explains the predicted class.
    """
    if target is not None and target not in names:
        raise ExplainError(f"explain: unknown class {target!r} (one of {', '.join(names)})")
    cls = names.index(target) if target is not None else int(probs[0].argmax())
    drops = probs[0, cls] - probs[1:, cls]
    order = np.argsort(-drops, kind="stable")
    top = [
        WordWeight(word=words[i], index=int(i), weight=round(float(drops[i]), 4))
        for i in order[:top_k]
        if drops[i] > 0
    ]
    return HeadExplanation(
        label=names[cls],
        probability=round(float(probs[0, cls]), 4),
        words=top,
        phrases=_phrases(words, top),
    )


def explain_texts(
    engine: ScoringEngine,
    texts: list[str],
    *,
    top_k: int = 5,
    sentiment_class: str | None = None,
) -> list[Explanation]:
    """Explain several texts with one engine call (all variants in one batch).

    ``sentiment_class`` (e.g. ``negative``) explains that class instead of the
    predicted one: what an alert about negative news needs to show.
    """
    if top_k < 1:
        raise ExplainError(f"explain: top_k must be >= 1, got {top_k}")
    batch: list[str] = []
    layout: list[tuple[str, list[str], int]] = []
    for text in texts:
        spans = split_words(text)
        if not spans:
            raise ExplainError(f"explain: nothing to explain in {text[:60]!r} (no words)")
        words = [text[s:e] for s, e in spans]
        layout.append((text, words, len(batch)))
        batch.append(_without(text, spans, set()))
        batch.extend(_without(text, spans, {i}) for i in range(len(spans)))
    started = time.perf_counter()
    topic, sentiment = engine.probabilities(batch)
    seconds = time.perf_counter() - started
    out = []
    for text, words, start in layout:
        rows = slice(start, start + len(words) + 1)
        out.append(
            Explanation(
                text=text,
                model_version=engine.version,
                sentiment=_head(
                    tuple(engine.sentiment_names), sentiment[rows], words, top_k, sentiment_class
                ),
                topic=_head(tuple(engine.topic_names), topic[rows], words, top_k),
                sequences=len(words) + 1,
                # Shared batch: each text is charged its share of sequences.
                seconds=round(seconds * (len(words) + 1) / len(batch), 4),
            )
        )
    return out


class Explainer:
    """An engine plus an LRU cache of explanations. Thread-safe (one scoring at a time)."""

    def __init__(self, engine: ScoringEngine, *, top_k: int = 5, cache_size: int = 1024) -> None:
        self.engine = engine
        self.top_k = top_k
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, str, int, str | None], Explanation] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @classmethod
    def from_settings(cls, settings=None, **kwargs: Any) -> Explainer:
        """The registry's current model (``ModelSettings``), as the classifier serves it."""
        from models.inference import EngineOptions, engine_from_registry
        from models.registry import Registry
        from pipeline.settings import ModelSettings

        settings = settings or ModelSettings()
        registry = Registry(settings.registry_dir, settings.resolved_base_model_dir())
        options = EngineOptions(
            device=settings.device,
            num_threads=settings.torch_threads,
            batch_size=settings.batch_size,
        )
        return cls(engine_from_registry(registry, options=options, warmup=False), **kwargs)

    def explain(self, text: str, *, sentiment_class: str | None = None) -> Explanation:
        return self.explain_many([text], sentiment_class=sentiment_class)[0]

    def explain_many(self, texts: list[str], *, sentiment_class: str | None = None) -> list[Explanation]:
        version = self.engine.version
        with self._lock:
            found: dict[str, Explanation] = {}
            for text in texts:
                key = (version, text, self.top_k, sentiment_class)
                if key in self._cache:
                    self._cache.move_to_end(key)
                    found[text] = self._cache[key]
                    self.hits += 1
            missing = list(dict.fromkeys(t for t in texts if t not in found))
            if missing:
                self.misses += len(missing)
                for explanation in explain_texts(
                    self.engine, missing, top_k=self.top_k, sentiment_class=sentiment_class
                ):
                    found[explanation.text] = explanation
                    key = (version, explanation.text, self.top_k, sentiment_class)
                    self._cache[key] = explanation
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            return [found[t] for t in texts]
