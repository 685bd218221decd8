"""pipeline.messages under arbitrary input (hypothesis) and its documented rules.

Properties: every message type survives encode -> decode unchanged; decoding
arbitrary bytes or arbitrary JSON raises InvalidMessage and nothing else, and
whatever it accepts can be encoded again; a dead letter gives back the original
bytes exactly. The bad-record corpus (tests/fixtures/bad_records.py) meets the
outcome it documents.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pipeline.messages import (
    MAX_DLQ_ORIGINAL_BYTES,
    DeadLetter,
    InvalidMessage,
    RawArticle,
    ScoredArticle,
    SentimentWindow,
    article_id,
    dead_letter,
    decode_dead_letter,
    decode_raw,
    decode_scored,
    decode_window,
    encode,
    format_time,
)
from tests.fixtures.bad_records import bad_records

QUICK = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies -------------------------------------------------------------------

offsets = st.builds(lambda m: timezone(timedelta(minutes=m)), st.integers(-14 * 60, 14 * 60))
times = st.datetimes(min_value=datetime(1990, 1, 2), max_value=datetime(2200, 1, 1),
                     timezones=st.one_of(st.just(UTC), offsets))
# Any Unicode, lone surrogates included: title and body are cleaned, never refused.
free_text = st.text(st.characters(codec=None), max_size=300)
markup = st.lists(
    st.sampled_from(["<p>", "</p>", "<div class='x'>", "</div>", "<br/>", "<script>",
                     "</script>", "&amp;", "&lt;p&gt;", "&#0;", "ACME", " falls ", "\n",
                     "<!-- c -->", "<", ">"]),
    max_size=30,
).map("".join)
identifier = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)
plain = st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=40)
tickers = st.lists(st.from_regex(r"\$?[A-Za-z]{1,5}(\.[A-Za-z])?", fullmatch=True), max_size=5)
langs = st.one_of(st.sampled_from(["en", "de", "pt-BR", "zh_Hant", "und", "English", ""]), plain)


@st.composite
def raw_articles(draw) -> RawArticle:
    fetched = draw(times)
    published = fetched - draw(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)))
    assume(published >= datetime(1990, 1, 1, tzinfo=UTC))
    title = draw(st.one_of(free_text, st.just("ACME falls")))
    body = draw(st.one_of(free_text, markup))
    article = RawArticle(
        id=draw(identifier), url=draw(plain), source=draw(identifier), title=title, body=body,
        published_at=published, fetched_at=fetched, lang=draw(langs), tickers=draw(tickers),
        duplicate_of=draw(st.none() | identifier),
    )
    assume(article.text)  # empty text is refused by rule, tested below
    return article


unit = st.floats(0, 1, allow_nan=False)
signed = st.floats(-1, 1, allow_nan=False)


@st.composite
def scored_articles(draw) -> ScoredArticle:
    return ScoredArticle.from_raw(
        draw(raw_articles()), topic=draw(plain.filter(bool)), topic_score=draw(unit),
        sentiment=draw(st.sampled_from(["negative", "neutral", "positive"])),
        sentiment_score=draw(signed), confidence=draw(unit), model_version=draw(identifier),
        scored_at=draw(times),
    )


@st.composite
def windows(draw) -> SentimentWindow:
    start = draw(times)
    counts = draw(st.lists(st.integers(0, 10**6), min_size=3, max_size=3))
    total = sum(counts)
    return SentimentWindow(
        window_start=start, window_end=start + timedelta(seconds=draw(st.integers(1, 86400))),
        dimension=draw(st.sampled_from(["all", "topic", "ticker"])), key=draw(plain),
        articles=total, negative=counts[0], neutral=counts[1], positive=counts[2],
        negative_ratio=counts[0] / total if total else 0.0, mean_sentiment=draw(signed),
        weighted_mean_sentiment=draw(st.none() | signed),
    )


json_scalars = (st.none() | st.booleans() | st.integers()
                | st.floats(allow_nan=False, allow_infinity=False) | free_text)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(free_text, inner, max_size=4),
    max_leaves=12,
)

# -- round trips ------------------------------------------------------------------


@QUICK
@given(raw_articles())
def test_raw_articles_round_trip(article):
    assert decode_raw(encode(article)) == article


@QUICK
@given(scored_articles())
def test_scored_articles_round_trip(article):
    assert decode_scored(encode(article)) == article


@QUICK
@given(windows())
def test_windows_round_trip(window):
    assert decode_window(encode(window)) == window


@QUICK
@given(st.binary(max_size=2000), st.none() | st.binary(max_size=40), st.sampled_from(
    [InvalidMessage("classify", "invalid_json", "x"), ValueError("boom \udc80"), RuntimeError()]))
def test_dead_letters_keep_the_original_bytes_exactly(original, key, error):
    letter = dead_letter(original, error, stage="classify", source_topic="news.raw",
                         partition=2, offset=7, key=key)
    decoded = decode_dead_letter(encode(letter))
    assert decoded == letter
    assert decoded.original_bytes() == original
    assert decoded.key_bytes() == key
    assert decoded.original_size_bytes == len(original)
    assert decoded.original_sha256 == hashlib.sha256(original).hexdigest()
    assert decoded.original_truncated is None


def test_a_dead_letter_of_a_huge_record_keeps_a_prefix_and_the_fingerprint():
    original = b'{"body": "' + b"\x00" * (3 * MAX_DLQ_ORIGINAL_BYTES) + b'"}'
    letter = decode_dead_letter(encode(dead_letter(original, ValueError("x"), stage="classify")))
    assert letter.original_truncated is True
    assert letter.original_bytes() == original[:MAX_DLQ_ORIGINAL_BYTES]
    assert letter.original_size_bytes == len(original)
    assert letter.original_sha256 == hashlib.sha256(original).hexdigest()
    # Control bytes go as base64, so the record stays well under the broker's 4 MiB.
    assert letter.original_encoding == "base64"
    assert len(encode(letter)) < 1.5 * MAX_DLQ_ORIGINAL_BYTES


def test_a_dead_letter_keeps_readable_utf8_as_text():
    letter = dead_letter('{"title": "Börse fällt"}'.encode(), ValueError("x"), stage="classify")
    assert letter.original_encoding == "utf-8" and letter.original == '{"title": "Börse fällt"}'


# -- nothing but InvalidMessage -----------------------------------------------------

DECODERS = [decode_raw, decode_scored, decode_window, decode_dead_letter]


def _decodes_or_refuses(decoder, data: bytes) -> None:
    try:
        message = decoder(data)
    except InvalidMessage as exc:
        assert exc.stage and exc.reason and exc.detail
        return
    # Whatever is accepted can be written again and reads back the same.
    assert decoder(encode(message)) == message


@QUICK
@given(st.sampled_from(DECODERS), st.binary(max_size=500))
def test_arbitrary_bytes_raise_only_invalid_message(decoder, data):
    _decodes_or_refuses(decoder, data)


@QUICK
@given(st.sampled_from(DECODERS), json_values, st.booleans())
def test_arbitrary_json_raises_only_invalid_message(decoder, value, ascii_only):
    _decodes_or_refuses(decoder, json.dumps(value, ensure_ascii=ascii_only,
                                            allow_nan=False).encode("utf-8", "surrogatepass"))


def _valid_raw_dict() -> dict:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    return json.loads(encode(RawArticle(
        id=article_id("https://example.com/a"), url="https://example.com/a", source="wire",
        title="ACME falls", body="ACME cut its forecast.", published_at=now, fetched_at=now,
        lang="en", tickers=["ACME"])))


@QUICK
@given(st.sampled_from(sorted(_valid_raw_dict())), json_values, st.booleans())
def test_any_field_of_a_raw_article_replaced_by_any_json_decodes_or_is_refused(field, value, drop):
    payload = _valid_raw_dict()
    if drop:
        del payload[field]
    else:
        payload[field] = value
    _decodes_or_refuses(decode_raw, json.dumps(payload).encode())


@QUICK
@given(st.sampled_from(sorted(_valid_raw_dict())), st.text(st.characters(codec=None), max_size=20))
def test_strings_with_surrogates_and_controls_never_break_re_encoding(field, text):
    payload = _valid_raw_dict()
    payload[field] = text if field != "tickers" else [text]
    _decodes_or_refuses(decode_raw, json.dumps(payload).encode())  # ensure_ascii: \\udxxx escapes


# -- documented rules ------------------------------------------------------------

CORPUS = bad_records(run="unit", now=datetime(2026, 11, 28, 12, 0, tzinfo=UTC))


@pytest.mark.parametrize("record", CORPUS, ids=lambda r: r.name)
def test_every_bad_record_meets_its_documented_outcome(record):
    if record.outcome == "dead_letter":
        with pytest.raises(InvalidMessage) as refused:
            decode_raw(record.value, stage="classify")
        assert refused.value.reason == record.reason, refused.value.detail
        assert refused.value.stage == "classify"
        letter = decode_dead_letter(encode(dead_letter(record.value, refused.value,
                                                       stage="classify", key=record.key)))
        assert letter.reason == record.reason
        assert letter.original_bytes() == (record.value or b"")[:MAX_DLQ_ORIGINAL_BYTES]
    else:
        article = decode_raw(record.value, stage="classify")
        for name, expected in record.expected.items():
            assert getattr(article, name) == expected, name
        assert decode_raw(encode(article)) == article


def test_the_corpus_covers_what_issue_10_lists():
    names = {r.name for r in CORPUS}
    assert {"invalid_json", "missing_source", "tickers_is_a_string", "empty_text", "text_10mb",
            "invalid_utf8", "html_only_body", "control_characters", "other_language",
            "reused_id_first", "reused_id_second"} <= names
    assert len({r.key for r in CORPUS if not r.name.startswith("reused_id")}) == len(CORPUS) - 2


def test_times_are_kept_to_the_millisecond_and_written_with_four_digit_years():
    t = datetime(812, 3, 4, 5, 6, 7, 891_234, tzinfo=timezone(timedelta(hours=2)))
    assert format_time(t) == "0812-03-04T03:06:07.891Z"
    now = datetime(2026, 11, 28, 12, 0, 0, 123_456, tzinfo=UTC)
    article = RawArticle(id="a", source="s", title="t", published_at=now, fetched_at=now)
    assert article.published_at.microsecond == 123_000


def test_a_time_out_of_range_in_utc_is_refused_not_crashed():
    payload = _valid_raw_dict() | {"published_at": "0001-01-01T00:00:00+05:00"}
    with pytest.raises(InvalidMessage, match="out of range"):
        decode_raw(json.dumps(payload).encode())


def test_text_that_merely_contains_angle_brackets_is_not_treated_as_html():
    body = "<ACME> EPS < 1.0 and revenue > 2bn"
    now = datetime(2026, 11, 28, tzinfo=UTC)
    assert RawArticle(id="a", source="s", body=body, published_at=now, fetched_at=now).body == body


def test_base64_dead_letters_decode_back_from_the_wire_as_base64():
    wire = encode(dead_letter(b"\xff\xfe", ValueError("x"), stage="classify"))
    assert json.loads(wire)["original"] == base64.b64encode(b"\xff\xfe").decode()
    assert isinstance(decode_dead_letter(wire), DeadLetter)
