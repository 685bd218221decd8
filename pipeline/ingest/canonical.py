"""Canonical URLs: one spelling per article, so that its id is stable.

The canonical form lower-cases scheme and host, drops default ports, the
fragment, ``www.``-less hosts are *not* merged (they can be different sites),
tracking parameters (``utm_*``, ``fbclid``, ...) are removed and the remaining
query parameters are sorted. The article id is
:func:`pipeline.messages.article_id` of this string.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from pipeline.messages import article_id

#: Exact query parameter names that only track the reader.
TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "dclid",
        "msclkid",
        "yclid",
        "mc_cid",
        "mc_eid",
        "igshid",
        "ref",
        "ref_src",
        "cmpid",
        "cmp",
        "src",
        "mod",
        "ncid",
        "ocid",
        "rss",
        "feedtype",
        "feedname",
        "_ga",
        "_hsenc",
        "_hsmi",
        "mkt_tok",
        "spm",
        "taid",
        "sr_share",
        "smid",
        "cid",
        "partner",
        "at_medium",
        "at_campaign",
    }
)
#: Prefixes of tracking parameter names.
TRACKING_PREFIXES = ("utm_", "at_", "pk_", "mtm_", "hsa_", "itm_")


class InvalidUrl(ValueError):
    """A link that is not an absolute http(s) URL."""


def canonical_url(url: str) -> str:
    """The canonical spelling of ``url``; raises :class:`InvalidUrl` for non-http(s) links."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidUrl(f"canonical_url: not an http(s) URL: {url[:200]!r}")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise InvalidUrl(f"canonical_url: URL has no host: {url[:200]!r}")
    try:
        host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        host = host.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = parts.port
    netloc = (
        host
        if port is None or (scheme, port) in (("http", 80), ("https", 443))
        else f"{host}:{port}"
    )
    path = quote(unquote(parts.path or "/"), safe="/:@!$&'()*+,;=-._~%")
    query = [
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if key.lower() not in TRACKING_PARAMS and not key.lower().startswith(TRACKING_PREFIXES)
    ]
    return urlunsplit((scheme, netloc, path, urlencode(sorted(query)), ""))


def url_id(url: str) -> str:
    """Stable article id of a link (its canonical URL hashed)."""
    return article_id(canonical_url(url))
