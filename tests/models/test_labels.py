import pytest

from models.labels import (
    SENTIMENT_NAMES,
    TOPIC_NAMES,
    LabelError,
    label_index,
    sentiment_index,
    topic_index,
)


def test_label_sets():
    assert len(TOPIC_NAMES) == 20
    assert TOPIC_NAMES[0] == "Analyst Update" and TOPIC_NAMES[19] == "Stock Movement"
    assert SENTIMENT_NAMES == ("negative", "neutral", "positive")


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        (0, "negative"),
        (1, "positive"),
        (2, "neutral"),  # dataset: Bearish, Bullish, Neutral
        ("0", "negative"),
        (" 1 ", "positive"),
        ("2", "neutral"),
        ("negative", "negative"),
        ("Neutral", "neutral"),
        ("POSITIVE", "positive"),
        ("bearish", "negative"),
        ("Bullish", "positive"),
    ],
)
def test_sentiment_mapping(label, expected):
    assert SENTIMENT_NAMES[sentiment_index(label)] == expected


@pytest.mark.parametrize("label", [3, -1, "3", "good", "", "1.0", True])
def test_unknown_sentiment_label_is_named(label):
    with pytest.raises(LabelError, match="sentiment label"):
        sentiment_index(label)


def test_topic_labels():
    assert topic_index(0) == 0 and topic_index("19") == 19
    for bad in (20, -1, "x", "1.5", "Earnings"):
        with pytest.raises(LabelError, match="topic label"):
            topic_index(bad)


def test_label_index_unknown_task():
    with pytest.raises(LabelError, match="unknown task"):
        label_index("ticker", 1)
