"""The feeds file: which sources to crawl, how often, and whether to fetch pages.

```yaml
defaults:                       # optional, applies to every source
  poll_interval_seconds: 300
  fetch_article: true
sources:
  - name: example-markets       # stable slug: metric label and news.raw `source`
    url: https://example.com/markets/rss.xml
    poll_interval_seconds: 120  # optional, overrides defaults
    fetch_article: false        # use the feed's summary as the body
  - name: example-sitemap
    url: https://example.com/news-sitemap.xml
    kind: sitemap               # XML (news) sitemap instead of RSS/Atom
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SOURCE_NAME = r"^[a-z0-9][a-z0-9_.\-]{0,63}$"


class SourcesError(ValueError):
    """A feeds file that cannot be used; the message names the file and the entry."""


class Source(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=SOURCE_NAME)
    url: str
    poll_interval_seconds: float = Field(ge=1.0)
    fetch_article: bool = True
    #: ``feed`` (RSS/Atom) or ``sitemap`` (XML sitemap / Google News sitemap).
    kind: Literal["feed", "sitemap"] = "feed"
    enabled: bool = True

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"url must be http(s), got {value!r}")
        return value


def load_sources(path: Path, default_poll_interval_seconds: float = 300.0) -> list[Source]:
    """Enabled sources of a feeds YAML file; raises SourcesError on any problem."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SourcesError(f"sources: cannot read {path}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("sources"), list):
        raise SourcesError(f"sources: {path}: expected a mapping with a `sources:` list")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise SourcesError(f"sources: {path}: `defaults` must be a mapping")
    defaults = {"poll_interval_seconds": default_poll_interval_seconds, **defaults}
    sources, names = [], set()
    for index, entry in enumerate(data["sources"]):
        if not isinstance(entry, dict):
            raise SourcesError(f"sources: {path}: entry {index} is not a mapping")
        try:
            source = Source(**{**defaults, **entry})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise SourcesError(
                f"sources: {path}: entry {index} ({entry.get('name', '?')}): "
                f"{where}: {first['msg']}"
            ) from exc
        if source.name in names:
            raise SourcesError(f"sources: {path}: duplicate source name {source.name!r}")
        names.add(source.name)
        if source.enabled:
            sources.append(source)
    return sources
