"""Cleaning the free text of an article (title, body) into what the classifier reads.

Rules, in order (docs/reliability.md, "Bad input"):

1. Lone UTF-16 surrogates (``"\\ud800"`` is valid JSON but not Unicode) become
   U+FFFD, so that the text can always be written back as UTF-8.
2. A body that *is* HTML markup (it starts with a tag and has a closing tag, or
   consists of nothing but tags) is turned into its text: tags dropped, entities
   unescaped, ``script``/``style``/``template``/``noscript`` contents removed,
   block elements become line breaks. Text that merely contains ``<`` (``EPS < 1``)
   is left alone.
3. C0 and C1 control characters and DEL are removed, except tab, newline and
   carriage return.

The result is a fixed point: cleaning clean text changes nothing.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

_SURROGATE = re.compile(r"[\ud800-\udfff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_STARTS_WITH_TAG = re.compile(r"\s*<(?:!doctype|!--|[a-z][a-z0-9-]*(?:\s|/?>))", re.IGNORECASE)
_CLOSING_TAG = re.compile(r"</[a-z][a-z0-9-]*\s*>|/>", re.IGNORECASE)
# Unambiguous on purpose (each tag matches one way): no backtracking blow-up.
_ONLY_TAGS = re.compile(r"(?:\s*<[^<>]*>)+\s*")

_INVISIBLE = frozenset({"script", "style", "template", "noscript", "head", "title"})
_BLOCK = frozenset({
    "p", "div", "br", "li", "ul", "ol", "tr", "td", "th", "table", "section", "article",
    "header", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "hr",
})
#: At most this many markup-removal passes (markup that unescapes to markup).
_MAX_PASSES = 4


def replace_surrogates(text: str) -> str:
    return _SURROGATE.sub("\ufffd", text)


def has_surrogates(text: str) -> bool:
    return _SURROGATE.search(text) is not None


def has_control_chars(text: str) -> bool:
    """True when text holds a C0/C1 control other than tab, newline, carriage return."""
    return _CONTROL.search(text) is not None


def strip_control_chars(text: str) -> str:
    return _CONTROL.sub("", text)


def looks_like_html(text: str) -> bool:
    if not _STARTS_WITH_TAG.match(text):
        return False
    return _CLOSING_TAG.search(text) is not None or _ONLY_TAGS.fullmatch(text) is not None


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in _INVISIBLE:
            self._hidden += 1
        elif tag in _BLOCK:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs) -> None:
        if tag in _BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _INVISIBLE:
            self._hidden = max(0, self._hidden - 1)
        elif tag in _BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """The visible text of an HTML fragment or document, whitespace tidied."""
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    text = html.unescape("".join(parser.parts))
    # As a browser would: runs of whitespace collapse, blank lines go.
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def clean_text(text: str, *, markup: bool = False) -> str:
    """Apply the rules above; ``markup=True`` (bodies) enables the HTML rule."""
    text = strip_control_chars(replace_surrogates(text))
    if markup:
        for _ in range(_MAX_PASSES):
            if not looks_like_html(text):
                break
            text = html_to_text(text)
    text = strip_control_chars(text)
    if markup and looks_like_html(text):
        # Markup that keeps unescaping into markup: no readable text in it.
        text = ""
    return text
