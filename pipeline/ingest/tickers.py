"""Tickers of an article: ``$CASHTAGS`` plus company names from a bundled table.

The table (``data/companies.csv``, provenance in ``data/README.md``) maps
spellings to tickers; spellings are matched case-sensitively as whole words.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_COMPANIES = Path(__file__).resolve().parent / "data" / "companies.csv"

#: $AAPL, $BRK.B, $aapl; not $5 or $5.2bn; not inside a word (US$).
CASHTAG = re.compile(r"(?<![\w$])\$([A-Za-z]{1,6}(?:\.[A-Za-z]{1,2})?)(?![\w.]*\d)(?!\w)")
#: Most tickers kept on one article (the message allows 64).
MAX_TICKERS = 32


class CompanyTableError(ValueError):
    """A companies CSV that is not in the documented format."""


@dataclass(frozen=True)
class Company:
    ticker: str
    name: str
    aliases: tuple[str, ...]
    exchange: str


def load_companies(path: Path = DEFAULT_COMPANIES) -> list[Company]:
    with Path(path).open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"ticker", "name", "aliases"} - set(reader.fieldnames or [])
        if missing:
            raise CompanyTableError(f"tickers: {path}: missing columns {sorted(missing)}")
        companies = []
        for line, row in enumerate(reader, start=2):
            ticker = (row["ticker"] or "").strip().upper()
            if not ticker or not (row["name"] or "").strip():
                raise CompanyTableError(f"tickers: {path}:{line}: empty ticker or name")
            aliases = tuple(a.strip() for a in (row["aliases"] or "").split(";") if a.strip())
            companies.append(
                Company(ticker, row["name"].strip(), aliases, (row.get("exchange") or "").strip())
            )
    return companies


class TickerTagger:
    """Finds tickers in text: cashtags first, then company aliases."""

    def __init__(self, companies: list[Company] | None = None) -> None:
        companies = load_companies() if companies is None else companies
        self._by_alias: dict[str, str] = {}
        for company in companies:
            for alias in company.aliases:
                self._by_alias.setdefault(alias, company.ticker)
        aliases = sorted(self._by_alias, key=len, reverse=True)
        self._pattern = (
            re.compile(r"(?<![\w&$])(" + "|".join(re.escape(a) for a in aliases) + r")(?![\w&])")
            if aliases
            else None
        )

    def tickers(self, *texts: str) -> list[str]:
        found: dict[str, None] = {}
        for text in texts:
            for match in CASHTAG.finditer(text or ""):
                found[match.group(1).upper()] = None
            if self._pattern is not None:
                for match in self._pattern.finditer(text or ""):
                    found[self._by_alias[match.group(1)]] = None
        return sorted(found)[:MAX_TICKERS]
