"""Canonical URLs, ids, tickers, near-duplicates, the feeds file."""

from __future__ import annotations

import csv

import pytest

from pipeline.ingest.canonical import InvalidUrl, canonical_url, url_id
from pipeline.ingest.neardup import NearDuplicateIndex
from pipeline.ingest.sources import SourcesError, load_sources
from pipeline.ingest.tickers import DEFAULT_COMPANIES, TickerTagger, load_companies
from pipeline.messages import article_id


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        (
            "HTTPS://Example.COM:443/a/b?utm_source=rss&id=7&fbclid=x#top",
            "https://example.com/a/b?id=7",
        ),
        ("http://example.com:80", "http://example.com/"),
        ("http://example.com:8080/x?b=2&a=1", "http://example.com:8080/x?a=1&b=2"),
        ("https://example.com/caf%C3%A9?utm_medium=feed&mc_cid=1", "https://example.com/caf%C3%A9"),
        ("https://example.com/café", "https://example.com/caf%C3%A9"),
        ("https://Bücher.example/", "https://xn--bcher-kva.example/"),
        ("http://[::1]:8000/p", "http://[::1]:8000/p"),
    ],
)
def test_canonical_url(url, canonical):
    assert canonical_url(url) == canonical
    assert url_id(url) == article_id(canonical)


def test_invalid_urls():
    for url in ("ftp://example.com/x", "javascript:alert(1)", "/relative", "http:///nohost"):
        with pytest.raises(InvalidUrl):
            canonical_url(url)


def test_ticker_table_shape():
    with DEFAULT_COMPANIES.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    tickers = [r["ticker"] for r in rows]
    assert len(rows) >= 300 and len(set(tickers)) == len(tickers)
    assert all(r["name"].strip() for r in rows)
    aliases = [a for r in rows for a in r["aliases"].split(";") if a]
    assert len(aliases) == len(set(aliases)), "an alias must name one company"
    assert len(load_companies()) == len(rows)


def test_tickers_from_cashtags_and_names():
    tagger = TickerTagger()
    assert tagger.tickers("$AAPL and $brk.b up; Microsoft's cloud; JPMorgan cuts") == [
        "AAPL",
        "BRK.B",
        "JPM",
        "MSFT",
    ]
    assert tagger.tickers("US$5bn deal worth $5.2 billion, $100") == []
    assert tagger.tickers("shoppers target bargains; Visa requirements") == []  # ordinary words
    assert tagger.tickers("Target Corp and Visa Inc report") == ["TGT", "V"]
    assert tagger.tickers("AT&T and Johnson & Johnson") == ["JNJ", "T"]


def test_near_duplicates_across_rewrites():
    index = NearDuplicateIndex(threshold=0.6, num_perm=128, horizon_seconds=3600)
    story = (
        "Crude oil futures slumped more than six percent on Tuesday after producers signalled that "
        "output cuts agreed earlier this year would be unwound faster than expected, sending "
        "energy "
        "shares sharply lower across markets."
    )
    original = index.signature("Wire desk. " + story)
    assert index.find(original) is None
    index.add("a", original, added_at=100.0)
    assert index.find(index.signature(story + " Syndicated from the wire.")) == "a"
    assert (
        index.find(
            index.signature(
                "Apple unveiled a new phone with a faster chip and a better camera "
                "at its annual event in California on Tuesday afternoon."
            )
        )
        is None
    )
    assert index.signature("too short to judge") is None
    restored = index.from_bytes(index.to_bytes(original))
    assert restored is not None and restored.jaccard(original) == 1.0
    assert index.expire(now=100.0 + 3601) == 1 and len(index) == 0


def test_feeds_file(tmp_path):
    path = tmp_path / "feeds.yaml"
    path.write_text(
        "defaults: {poll_interval_seconds: 120}\n"
        "sources:\n"
        "  - {name: a, url: 'https://example.com/a.xml'}\n"
        "  - {name: b, url: 'https://example.com/b.xml',\n"
        "     poll_interval_seconds: 30, fetch_article: false}\n"
        "  - {name: c, url: 'https://example.com/c.xml', enabled: false}\n"
    )
    a, b = load_sources(path)
    assert (a.name, a.poll_interval_seconds, a.fetch_article) == ("a", 120, True)
    assert (b.poll_interval_seconds, b.fetch_article) == (30, False)
    for bad, message in (
        ("sources: [{name: a, url: 'ftp://x'}]", "url"),
        ("sources: [{name: 'Bad Name', url: 'https://x'}]", "name"),
        ("sources: [{name: a, url: 'https://x'}, {name: a, url: 'https://y'}]", "duplicate"),
        ("sources: [{name: a, url: 'https://x', poll: 3}]", "poll"),
        ("just text", "sources"),
    ):
        path.write_text(bad)
        with pytest.raises(SourcesError, match=message):
            load_sources(path)


def test_example_feeds_file_loads():
    from pipeline.settings import REPO_ROOT

    names = [s.name for s in load_sources(REPO_ROOT / "docs" / "feeds.example.yaml")]
    assert names == ["fed-press", "ecb-press", "sec-press"]
