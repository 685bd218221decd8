"""Label vocabularies as analysts write them, mapped onto the canonical class names.

The label store keeps canonical names (``negative``, ``Fed | Central Banks``) so
that a stored label does not change meaning if class indices are ever reordered.
Analysts and files may write a label as the canonical name (any case), as the
dataset's integer, or, for sentiment, as Bearish/Bullish/Neutral.
"""

from __future__ import annotations

from models.labels import SENTIMENT_NAMES, TASKS, TOPIC_NAMES

TOPICS: tuple[str, ...] = TOPIC_NAMES
SENTIMENTS: tuple[str, ...] = SENTIMENT_NAMES

#: Twitter Financial News sentiment integers: 0 Bearish, 1 Bullish, 2 Neutral.
_SENTIMENT_DATASET_INTS = {0: "negative", 1: "positive", 2: "neutral"}
_SENTIMENT_ALIASES = {"bearish": "negative", "bullish": "positive", "neutral": "neutral"}


class UnknownLabel(ValueError):
    """A label that is not one of the task's classes; the message names both."""


def class_names(task: str) -> tuple[str, ...]:
    if task == "topic":
        return TOPICS
    if task == "sentiment":
        return SENTIMENTS
    raise UnknownLabel(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")


def canonical_label(task: str, value: object) -> str:
    """The canonical class name for ``value`` (a name, an alias, or the dataset's integer)."""
    names = class_names(task)
    text = str(value).strip()
    if not text:
        raise UnknownLabel(f"empty {task} label")
    if text.lstrip("-").isdigit():
        index = int(text)
        if task == "sentiment":
            if index in _SENTIMENT_DATASET_INTS:
                return _SENTIMENT_DATASET_INTS[index]
        elif 0 <= index < len(names):
            return names[index]
        raise UnknownLabel(f"{task} label {text} is out of range")
    folded = " ".join(text.lower().split())
    if task == "sentiment" and folded in _SENTIMENT_ALIASES:
        return _SENTIMENT_ALIASES[folded]
    for name in names:
        if name.lower() == folded or name.lower().replace(" | ", "|") == folded.replace(" | ", "|"):
            return name
    raise UnknownLabel(f"unknown {task} label {text!r}")


def class_index(task: str, name: str) -> int:
    """Position of a canonical name in the model head's output (0-based)."""
    return class_names(task).index(name)
