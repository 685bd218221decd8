import csv
import html
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.data import (
    SOURCE_FILES,
    DataError,
    Row,
    dedup_key,
    deduplicate,
    make_splits,
    normalise_text,
    read_labelled_csv,
)


def test_normalise_text():
    assert (
        normalise_text("AT&amp;T  beats\n estimates https://t.co/abc123 ") == "AT&T beats estimates"
    )
    assert dedup_key("Stocks RISE  https://t.co/x") == dedup_key("stocks rise https://t.co/y")


#: What normalise_text is defined to do, written the plain (slower) way: it must never change,
#: or the splits, dedup keys and held-out files move.
_REFERENCE_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)


def _reference_normalise(text: str) -> str:
    return re.sub(r"\s+", " ", _REFERENCE_URL.sub(" ", html.unescape(text))).strip()


_TRICKY = st.sampled_from(
    ["http://", "HTTPS://", "hTtP\u017f://", "www.", "WwW.", "&amp;", "&#x20;", "&nbsp;",
     "\u00a0", "\u2028", "\x1c", "\u3000", "\t", "\n", " ", "t.co/x", "$AAPL", "\u017f"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_TRICKY, st.text(max_size=6)), max_size=12).map("".join))
def test_normalise_text_matches_its_plain_definition(text):
    assert normalise_text(text) == _reference_normalise(text)


def test_normalise_text_matches_its_plain_definition_on_the_training_data():
    from models.data import DATA_DIR

    for name in SOURCE_FILES.values():
        with open(DATA_DIR / name, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                assert normalise_text(row["text"]) == _reference_normalise(row["text"])


def test_deduplicate_keeps_one_per_near_duplicate_group():
    rows = [
        Row("Fed hikes https://t.co/a", 1),
        Row("fed  hikes https://t.co/b", 1),
        Row("FED HIKES", 1),
        Row("Oil falls", 6),
    ]
    kept, stats = deduplicate(rows)
    assert len(kept) == 2 and stats["duplicates_dropped"] == 2


def test_deduplicate_conflicting_labels_keeps_majority():
    rows = [
        Row("Gold up https://t.co/a", 10),
        Row("gold up https://t.co/b", 10),
        Row("Gold up", 19),
    ]
    kept, stats = deduplicate(rows)
    assert [r.label for r in kept] == [10]
    assert stats["label_conflict_groups"] == 1


def _write(path, rows):
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


@pytest.fixture
def small_data(tmp_path):
    """Both tasks, with near-duplicate families and a text shared across tasks."""
    topic, sentiment = [], []
    for i in range(200):
        label = i % 4
        for copy in range(1 + i % 3):  # up to three copies differing only by link and case
            text = f"Headline number {i} about topic {label}"
            topic.append(((text.upper() if copy else text) + f" https://t.co/{i}x{copy}", label))
        sentiment.append((f"Sentiment story {i} https://t.co/s{i}", i % 3))
    sentiment += [(f"Headline number {i} about topic {i % 4}", 2) for i in range(0, 200, 7)]
    _write(tmp_path / SOURCE_FILES["topic"], topic)
    _write(tmp_path / SOURCE_FILES["sentiment"], sentiment)
    return tmp_path


def test_split_never_puts_near_duplicates_on_both_sides(small_data):
    splits = make_splits(small_data, heldout_fraction=0.2, validation_fraction=0.1, seed=3)
    train_keys = {dedup_key(e.text) for e in splits.train}
    val_keys = {dedup_key(e.text) for e in splits.validation}
    heldout_keys = {dedup_key(r.text) for rows in splits.heldout.values() for r in rows}
    assert heldout_keys and val_keys
    assert not train_keys & heldout_keys  # across both tasks
    assert not train_keys & val_keys
    assert not val_keys & heldout_keys
    # stratified: every topic label appears in the held-out split
    assert {r.label for r in splits.heldout["topic"]} == {0, 1, 2, 3}


def test_split_is_deterministic(small_data):
    a = make_splits(small_data, seed=5)
    b = make_splits(small_data, seed=5)
    assert a.heldout == b.heldout and a.snapshot_hash == b.snapshot_hash
    assert make_splits(small_data, seed=6).heldout != a.heldout


def test_read_labelled_csv_accepts_ints_and_names(tmp_path):
    path = tmp_path / "s.csv"
    _write(path, [("a", 0), ("b", "1"), ("c", "neutral"), ("d", "Positive")])
    assert [label for _, label in read_labelled_csv(path, "sentiment")] == [0, 2, 1, 2]


@pytest.mark.parametrize(
    ("rows", "task", "match"),
    [
        ([("ok", 0), ("bad", 7)], "sentiment", "row 2: unknown sentiment label '7'"),
        ([("ok", 0), ("bad", "bullishish")], "sentiment", "row 2: unknown sentiment label"),
        ([("ok", 3), ("x", 20)], "topic", "row 2: unknown topic label '20'"),
        ([("ok", 3), ("", 2)], "topic", "row 2: empty text"),
        ([], "topic", "no rows"),
    ],
)
def test_read_labelled_csv_bad_rows_name_the_row(tmp_path, rows, task, match):
    path = tmp_path / "bad.csv"
    _write(path, rows)
    with pytest.raises(DataError, match=match):
        read_labelled_csv(path, task)


def test_read_labelled_csv_bad_header(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("sentence,target\nx,1\n", encoding="utf-8")
    with pytest.raises(DataError, match="header must contain text,label"):
        read_labelled_csv(path, "topic")
