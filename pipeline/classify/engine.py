"""What the service needs from an inference engine, without importing torch.

The service talks to a :class:`Classifier`; ``models.inference.InferenceEngine``
is the real one, tests may pass any object with the same shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Prediction:
    """The verdict on one article.

    Probabilities are temperature-scaled (calibrated); ``sentiment_score`` is
    p(positive) - p(negative) in [-1, 1]; ``confidence`` is the calibrated
    probability of the chosen sentiment.
    """

    topic: str
    topic_score: float
    sentiment: str
    sentiment_score: float
    confidence: float
    model_version: str

    def verdict(self) -> dict[str, float | str]:
        """Keyword arguments for ``ScoredArticle.from_raw``."""
        return {
            "topic": self.topic,
            "topic_score": self.topic_score,
            "sentiment": self.sentiment,
            "sentiment_score": self.sentiment_score,
            "confidence": self.confidence,
            "model_version": self.model_version,
        }


@runtime_checkable
class Classifier(Protocol):
    """Scores texts; one :class:`Prediction` per text, in the order given."""

    @property
    def version(self) -> str: ...

    def predict(self, texts: Sequence[str]) -> list[Prediction]: ...
