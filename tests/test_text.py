"""pipeline.text: cleaning is a fixed point and never throws, whatever the input."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.text import (
    clean_text,
    has_control_chars,
    has_surrogates,
    html_to_text,
    looks_like_html,
)

pieces = st.sampled_from([
    "<p>", "</p>", "<div>", "</div>", "<br/>", "<script>", "</script>", "<style>", "</style>",
    "<b", ">", "<", "&amp;", "&lt;", "&gt;", "&#1;", "&#xd800;", "&lt;p&gt;x&lt;/p&gt;", "<!--",
    "-->", "ACME", " ", "\n", "\x00", "\x85", "\ud800", "é", "<img src=x>",
])
messy = st.one_of(st.text(st.characters(codec=None)), st.lists(pieces, max_size=40).map("".join))


@settings(max_examples=300, deadline=None)
@given(messy, st.booleans())
def test_cleaning_is_a_fixed_point(text, markup):
    once = clean_text(text, markup=markup)
    assert clean_text(once, markup=markup) == once
    assert not has_surrogates(once) and not has_control_chars(once)
    once.encode("utf-8")
    if markup:
        assert not looks_like_html(once)


def test_html_becomes_its_visible_text():
    page = ("<!doctype html><html><head><title>t</title><style>p{color:red}</style></head>"
            "<body><h1>ACME</h1><p>Shares fell&nbsp;12%</p><script>x()</script>"
            "<ul><li>one</li><li>two</li></ul></body></html>")
    assert html_to_text(page) == "ACME\nShares fell 12%\none\ntwo"
    assert clean_text(page, markup=True) == "ACME\nShares fell 12%\none\ntwo"


def test_markup_without_text_becomes_empty():
    assert clean_text('<div><img src="a.png"><script>track()</script></div>', markup=True) == ""
    assert clean_text("<img src=a.png>", markup=True) == ""


def test_text_with_stray_angle_brackets_is_left_alone():
    for text in ("EPS < 1 and > 0", "<ACME> up 3%", "a<b and c>d"):
        assert clean_text(text, markup=True) == text


def test_long_pathological_input_is_linear_enough():
    # Patterns that make naive regexes backtrack: thousands of tags, no closing.
    text = "<a " * 20_000 + "x" + " " * 50_000
    assert isinstance(clean_text(text, markup=True), str)
    text = "<b>" * 30_000 + "<" + " " * 30_000 + "x"
    assert isinstance(clean_text(text, markup=True), str)
