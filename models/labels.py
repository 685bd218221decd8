"""Label sets of the two heads and the mapping from the datasets' own labels.

The topic head predicts the 20 classes of the Twitter Financial News Topic set,
in the dataset's label order (index == dataset integer). The sentiment head
predicts ``negative``, ``neutral``, ``positive`` (in that order); the Twitter
Financial News Sentiment set labels tweets 0 Bearish, 1 Bullish, 2 Neutral.
"""

from __future__ import annotations

#: Twitter Financial News Topic names; position == dataset label 0..19.
TOPIC_NAMES: tuple[str, ...] = (
    "Analyst Update",
    "Fed | Central Banks",
    "Company | Product News",
    "Treasuries | Corporate Debt",
    "Dividend",
    "Earnings",
    "Energy | Oil",
    "Financials",
    "Currencies",
    "General News | Opinion",
    "Gold | Metals | Materials",
    "IPO",
    "Legal | Regulation",
    "M&A | Investments",
    "Macro",
    "Markets",
    "Politics",
    "Personnel Change",
    "Stock Commentary",
    "Stock Movement",
)

#: Sentiment head classes; position == head index.
SENTIMENT_NAMES: tuple[str, ...] = ("negative", "neutral", "positive")

#: Twitter Financial News Sentiment integer -> sentiment head index.
DATASET_SENTIMENT_TO_INDEX: dict[int, int] = {0: 0, 1: 2, 2: 1}  # Bearish, Bullish, Neutral

#: Dataset names (lower case) accepted as sentiment labels too.
_SENTIMENT_ALIASES: dict[str, int] = {
    "bearish": 0,
    "bullish": 2,
    "negative": 0,
    "neutral": 1,
    "positive": 2,
}

TASKS: tuple[str, ...] = ("topic", "sentiment")

#: Label value meaning "this example carries no label for this task".
IGNORE_INDEX = -100


class LabelError(ValueError):
    """A label that does not belong to the task's label set."""


def num_classes(task: str) -> int:
    """Number of classes of ``task`` ("topic" or "sentiment")."""
    if task == "topic":
        return len(TOPIC_NAMES)
    if task == "sentiment":
        return len(SENTIMENT_NAMES)
    raise LabelError(f"labels: unknown task {task!r}; expected one of {TASKS}")


def class_names(task: str) -> tuple[str, ...]:
    num_classes(task)
    return TOPIC_NAMES if task == "topic" else SENTIMENT_NAMES


def topic_index(label: int | str) -> int:
    """Head index of a topic label: the dataset integer 0..19 (int or digit string)."""
    text = str(label).strip()
    try:
        value = int(text)
    except ValueError:
        raise LabelError(f"topic label {label!r}: expected an integer 0..19") from None
    if not 0 <= value < len(TOPIC_NAMES) or str(value) != text.lstrip("+"):
        raise LabelError(f"topic label {label!r}: expected an integer 0..19")
    return value


def sentiment_index(label: int | str) -> int:
    """Head index of a sentiment label.

    Accepts the dataset integers (0 Bearish, 1 Bullish, 2 Neutral, as int or
    digit string) or the names negative / neutral / positive (and bearish /
    bullish), case-insensitive.
    """
    if isinstance(label, bool):
        raise LabelError(f"sentiment label {label!r}: booleans are not labels")
    text = str(label).strip().lower()
    if text in _SENTIMENT_ALIASES:
        return _SENTIMENT_ALIASES[text]
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is not None and value in DATASET_SENTIMENT_TO_INDEX:
        return DATASET_SENTIMENT_TO_INDEX[value]
    raise LabelError(
        f"sentiment label {label!r}: expected 0 (Bearish), 1 (Bullish), 2 (Neutral) "
        "or one of negative, neutral, positive"
    )


def label_index(task: str, label: int | str) -> int:
    """Head index of ``label`` for ``task``; raises LabelError naming the value."""
    if task == "topic":
        return topic_index(label)
    if task == "sentiment":
        return sentiment_index(label)
    raise LabelError(f"labels: unknown task {task!r}; expected one of {TASKS}")
