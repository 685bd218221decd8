"""The demo stream: labelled financial news with a known negative spike.

:func:`build_demo_stream` composes a JSONL replay file from the bundled
Twitter Financial News data, preferring the model's held-out splits
(``heldout_topic.csv`` / ``heldout_sentiment.csv``) so the demo shows texts the
model never trained on:

- a calm baseline: Poisson arrivals at ``rate_per_minute`` drawn from all texts
  (so the topic mix is the dataset's), plus ``key_rate_per_minute`` calm
  articles about the spike's key so that its trailing baseline has data;
- the spike: ``spike_per_minute`` extra *negative* articles about the key
  (a topic, or a ticker) for ``spike_minutes`` from ``spike_start_minute``,
  spread uniformly over that window.

Topic spikes use bearish texts that mention the topic (keywords below) and
texts labelled with the topic that read negative (a small lexicon). Ticker
spikes take bearish texts that name some company and rewrite that mention to
the key (``$XYZ`` -> ``$KEY``, a company name -> the key company's name): this
is synthetic, and said so in the ground truth.

Every row carries its ids and known labels (``truth_topic``,
``truth_sentiment``, ``spike``); the sidecar ``*.truth.json`` says where the
spike is (dimension, key, start, end) in the file's own times.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import random
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pipeline.ingest.tickers import CASHTAG, TickerTagger, load_companies
from pipeline.messages import format_time
from pipeline.settings import REPO_ROOT

DEMO_STREAM = Path(__file__).resolve().parent / "data" / "demo_stream.jsonl"
TRUTH_SCHEMA = 1

#: Twitter Financial News Sentiment label -> finsentry sentiment.
SENTIMENT_OF_LABEL = {"0": "negative", "1": "positive", "2": "neutral"}

#: Words that put a bearish text on a topic (case-insensitive, whole words).
TOPIC_KEYWORDS: dict[str, str] = {
    "Energy | Oil": r"oil|crude|opec\+?|brent|wti|gasoline|natural gas|energy|drilling|refiners?|"
    r"shale|exxon|chevron|petroleum|lng|pipelines?",
    "Earnings": r"earnings|eps|revenue|quarterly|guidance|q[1-4]|profits?|results|forecasts?",
    "Fed | Central Banks": r"fed|fomc|powell|central banks?|ecb|boj|rate hikes?|rate cuts?|lagarde",
    "Macro": r"gdp|inflation|cpi|jobs|unemployment|recession|economy|economic|pmi|"
    r"retail sales|payrolls",
    "Currencies": r"dollar|euro|yen|yuan|sterling|pound|currency|currencies|forex|fx",
    "Treasuries | Corporate Debt": r"treasury|treasuries|bonds?|yields?|debt|credit spreads?",
    "Gold | Metals | Materials": r"gold|silver|copper|metals?|iron ore|steel|aluminium|"
    r"aluminum|lithium",
    "Financials": r"banks?|lenders?|jpmorgan|goldman|citi|wells fargo|credit suisse|hsbc|insurers?",
    "IPO": r"ipo|listing|debut|spac",
    "Dividend": r"dividends?|payout|buyback",
    "Legal | Regulation": r"lawsuit|sued|sues|probe|sec|regulators?|fine[ds]?|antitrust|court",
    "M&A | Investments": r"merger|acquisition|acquire[sd]?|takeover|deal|stake|bid",
    "Personnel Change": r"ceo|cfo|resigns?|steps down|appoint(?:s|ed)?|chairman|executive",
}
#: Words that make a topic-labelled text read negative.
NEGATIVE_WORDS = (
    r"fall|falls|fell|falling|drop|drops|dropped|dropping|slump\w*|plunge\w*|plummet\w*|tumbl\w*|"
    r"slide|slides|slid|sink|sinks|sank|cut|cuts|miss|misses|missed|loss|losses|lower|weak\w*|"
    r"warn\w*|crash\w*|declin\w*|sell-?off|fears?|worst|downgrade\w*|halts?|layoffs?|slash\w*|"
    r"recession|default\w*|bankrupt\w*|probe|lawsuit|fined|slowdown|losing|crisis|collapse\w*"
)
_URL = re.compile(r"https?://\S+")


class DemoDataError(ValueError):
    """The data cannot make the requested stream (missing files, too few texts)."""


@dataclass(frozen=True)
class DemoSpec:
    """Knobs of the demo stream; times are event time in minutes from ``start``."""

    seed: int = 7
    start: datetime = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)
    duration_minutes: float = 40.0
    rate_per_minute: float = 24.0
    spike_dimension: Literal["topic", "ticker"] = "topic"
    spike_key: str = "Energy | Oil"
    spike_start_minute: float = 30.0
    spike_minutes: float = 5.0
    spike_per_minute: float = 8.0
    key_rate_per_minute: float = 1.0
    #: With a topic spike, the key's articles (calm and spike) also carry this ticker,
    #: so the same story shows as a ticker spike too ("" or None: no ticker).
    spike_ticker: str | None = "XOM"
    sources: tuple[str, ...] = ("demo-wire", "demo-markets", "demo-business", "demo-social")

    def __post_init__(self) -> None:
        problems = [
            (self.duration_minutes > 0, "duration_minutes must be > 0"),
            (self.rate_per_minute >= 0 and self.key_rate_per_minute >= 0, "rates must be >= 0"),
            (self.spike_per_minute > 0, "spike_per_minute must be > 0"),
            (self.spike_minutes > 0, "spike_minutes must be > 0"),
            (self.spike_start_minute >= 0, "spike_start_minute must be >= 0"),
            (
                self.spike_start_minute + self.spike_minutes <= self.duration_minutes,
                "the spike must end within duration_minutes",
            ),
            (self.spike_dimension in ("topic", "ticker"), "spike_dimension is topic or ticker"),
            (bool(self.sources), "at least one source"),
            (self.start.tzinfo is not None, "start must be timezone-aware"),
        ]
        for ok, message in problems:
            if not ok:
                raise DemoDataError(f"demo-stream: {message} ({self})")

    @property
    def spike_start(self) -> datetime:
        return self.start + timedelta(minutes=self.spike_start_minute)

    @property
    def spike_end(self) -> datetime:
        return self.spike_start + timedelta(minutes=self.spike_minutes)


@dataclass(frozen=True)
class Text:
    text: str
    topic: str | None = None
    sentiment: str | None = None


@dataclass
class _Pools:
    topic: list[Text]
    sentiment: list[Text]
    files: dict[str, str] = field(default_factory=dict)  # name -> sha256
    heldout: bool = False


def resolve_data_dir(configured: Path | None = None) -> Path:
    """``configured``, else models/data, else ../shared/data: the first that holds the CSVs."""
    candidates = (
        [configured]
        if configured
        else [REPO_ROOT / "models" / "data", REPO_ROOT.parent / "shared" / "data"]
    )
    for directory in candidates:
        if directory and _data_files(directory):
            return directory
    raise DemoDataError(
        f"demo-stream: no labelled data in {', '.join(str(c) for c in candidates)} "
        "(expected heldout_topic.csv + heldout_sentiment.csv, or twitter_topic_train.csv + "
        "twitter_sentiment_train.csv); set FINSENTRY_REPLAY_DATA_DIR or --data-dir"
    )


def _data_files(directory: Path) -> tuple[Path, Path, bool] | None:
    for topic, sentiment, heldout in (
        ("heldout_topic.csv", "heldout_sentiment.csv", True),
        ("twitter_topic_train.csv", "twitter_sentiment_train.csv", False),
    ):
        if (directory / topic).is_file() and (directory / sentiment).is_file():
            return directory / topic, directory / sentiment, heldout
    return None


def _norm(text: str) -> str:
    return " ".join(_URL.sub(" ", text.lower()).split())


def load_pools(data_dir: Path) -> _Pools:
    import csv

    from models.labels import TOPIC_NAMES  # light: names only, no torch

    found = _data_files(data_dir)
    if found is None:
        raise DemoDataError(f"demo-stream: no labelled CSVs in {data_dir}")
    topic_path, sentiment_path, heldout = found
    seen: set[str] = set()
    pools = _Pools([], [], heldout=heldout)
    for path, task in ((topic_path, "topic"), (sentiment_path, "sentiment")):
        pools.files[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
        with path.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                text = html.unescape((row.get("text") or "").strip())
                key = _norm(text)
                if not key or key in seen:
                    continue
                seen.add(key)
                label = (row.get("label") or "").strip()
                if task == "topic" and label.isdigit() and int(label) < len(TOPIC_NAMES):
                    pools.topic.append(Text(text, topic=TOPIC_NAMES[int(label)]))
                elif task == "sentiment" and label in SENTIMENT_OF_LABEL:
                    pools.sentiment.append(Text(text, sentiment=SENTIMENT_OF_LABEL[label]))
    return pools


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


class _Rewriter:
    """Ticker spikes: rewrite the first company mention of a text to the key's."""

    def __init__(self, key: str) -> None:
        self.key = key.upper().lstrip("$")
        companies = load_companies()
        self._key_name = next(
            (c.aliases[0] for c in companies if c.ticker == self.key and c.aliases), None
        )
        aliases = sorted(
            {a for c in companies for a in c.aliases if c.ticker != self.key}, key=len, reverse=True
        )
        self._alias = re.compile(
            r"(?<![\w&$])(" + "|".join(map(re.escape, aliases)) + r")(?![\w&])"
        )

    def rewrite(self, text: str) -> str | None:
        match = CASHTAG.search(text)
        if match and match.group(1).upper() != self.key:
            return text[: match.start()] + f"${self.key}" + text[match.end() :]
        match = self._alias.search(text)
        if match:
            return text[: match.start()] + (self._key_name or f"${self.key}") + text[match.end() :]
        return None


def _candidates(pools: _Pools, spec: DemoSpec) -> tuple[list[Text], list[Text]]:
    """(spike texts, calm key texts) for the spec's key, before shuffling."""
    negative = re.compile(rf"\b(?:{NEGATIVE_WORDS})\b", re.I)
    if spec.spike_dimension == "topic":
        from models.labels import TOPIC_NAMES

        if spec.spike_key not in TOPIC_NAMES:
            raise DemoDataError(
                f"demo-stream: unknown topic {spec.spike_key!r}; one of {list(TOPIC_NAMES)}"
            )
        words = TOPIC_KEYWORDS.get(spec.spike_key)
        about = re.compile(rf"\b(?:{words})\b", re.I) if words else None
        spike = [t for t in pools.topic if t.topic == spec.spike_key and negative.search(t.text)]
        if about:
            spike += [
                t for t in pools.sentiment if t.sentiment == "negative" and about.search(t.text)
            ]
        calm = [t for t in pools.topic if t.topic == spec.spike_key and not negative.search(t.text)]
        if about:
            calm += [
                t for t in pools.sentiment if t.sentiment != "negative" and about.search(t.text)
            ]
        return spike, calm
    rewriter = _Rewriter(spec.spike_key)
    spike, calm = [], []
    for item in pools.sentiment:
        rewritten = rewriter.rewrite(item.text)
        if rewritten is not None:
            (spike if item.sentiment == "negative" else calm).append(
                Text(rewritten, sentiment=item.sentiment)
            )
    return spike, calm


def build_demo_stream(spec: DemoSpec, data_dir: Path | None = None) -> tuple[list[dict], dict]:
    """(rows, ground truth) of the demo stream; deterministic for a spec and data files."""
    directory = resolve_data_dir(data_dir)
    pools = load_pools(directory)
    rng = random.Random(spec.seed)
    spike_pool, calm_pool = _candidates(pools, spec)
    spike_pool = sorted(set(spike_pool), key=lambda t: t.text)
    calm_pool = sorted(set(calm_pool) - set(spike_pool), key=lambda t: t.text)
    rng.shuffle(spike_pool)
    rng.shuffle(calm_pool)

    seconds = spec.duration_minutes * 60
    events: list[tuple[float, str]] = []
    for minute in range(math.ceil(spec.duration_minutes)):
        width = min(60.0, seconds - minute * 60)
        for kind, rate in (("baseline", spec.rate_per_minute), ("key", spec.key_rate_per_minute)):
            for _ in range(_poisson(rng, rate * width / 60)):
                events.append((minute * 60 + rng.random() * width, kind))
    spike_count = round(spec.spike_per_minute * spec.spike_minutes)
    spike_from = spec.spike_start_minute * 60
    for _ in range(spike_count):
        events.append((spike_from + rng.random() * spec.spike_minutes * 60, "spike"))
    events.sort()

    need = {kind: sum(1 for _, k in events if k == kind) for kind in ("spike", "key", "baseline")}
    if need["spike"] > len(spike_pool):
        raise DemoDataError(
            f"demo-stream: {spec.spike_dimension} {spec.spike_key!r} has {len(spike_pool)} "
            f"negative texts in {directory}, the spike needs {need['spike']}: "
            "lower spike_per_minute or spike_minutes"
        )
    used = {t.text for t in spike_pool[: need["spike"]]}
    calm_pool = [t for t in calm_pool if t.text not in used]
    if need["key"] > len(calm_pool):
        raise DemoDataError(
            f"demo-stream: {spec.spike_key!r} has {len(calm_pool)} calm texts, the baseline needs "
            f"{need['key']}: lower key_rate_per_minute or duration_minutes"
        )
    used |= {t.text for t in calm_pool[: need["key"]]}
    general = sorted(
        (t for t in pools.topic + pools.sentiment if t.text not in used), key=lambda t: t.text
    )
    rng.shuffle(general)
    if need["baseline"] > len(general):
        raise DemoDataError(
            f"demo-stream: {len(general)} texts left for the baseline, {need['baseline']} needed: "
            "lower rate_per_minute or duration_minutes"
        )
    queues = {"spike": iter(spike_pool), "key": iter(calm_pool), "baseline": iter(general)}
    tagger = TickerTagger()
    rows, spike_ids = [], []
    for index, (offset, kind) in enumerate(events):
        item = next(queues[kind])
        row_id = f"demo-{spec.seed}-{index:05d}"
        tickers = tagger.tickers(item.text)
        if kind in ("spike", "key") and spec.spike_dimension == "ticker":
            tickers = sorted({*tickers, spec.spike_key.upper().lstrip("$")})
        elif kind in ("spike", "key") and spec.spike_ticker:
            tickers = sorted({*tickers, spec.spike_ticker.upper().lstrip("$")})
        rows.append(
            {
                "id": row_id,
                "published_at": format_time(spec.start + timedelta(seconds=offset)),
                "source": spec.sources[rng.randrange(len(spec.sources))],
                "text": item.text,
                "tickers": tickers,
                "truth_topic": spec.spike_key
                if kind != "baseline" and spec.spike_dimension == "topic"
                else item.topic,
                "truth_sentiment": "negative" if kind == "spike" else item.sentiment,
                "spike": kind == "spike",
            }
        )
        if kind == "spike":
            spike_ids.append(row_id)
    truth = {
        "schema": TRUTH_SCHEMA,
        "generator": "finsentry demo-stream",
        "spec": {**asdict(spec), "start": format_time(spec.start), "sources": list(spec.sources)},
        "stream_start": format_time(spec.start),
        "stream_end": format_time(spec.start + timedelta(minutes=spec.duration_minutes)),
        "articles": len(rows),
        "spike": {
            "dimension": spec.spike_dimension,
            "key": spec.spike_key.upper().lstrip("$")
            if spec.spike_dimension == "ticker"
            else spec.spike_key,
            "start": format_time(spec.spike_start),
            "end": format_time(spec.spike_end),
            "start_offset_seconds": spec.spike_start_minute * 60,
            "end_offset_seconds": (spec.spike_start_minute + spec.spike_minutes) * 60,
            "articles": len(spike_ids),
            "ids": spike_ids,
            "synthetic_rewrite": spec.spike_dimension == "ticker",
            "ticker": spec.spike_ticker.upper().lstrip("$")
            if spec.spike_ticker and spec.spike_dimension == "topic"
            else None,
        },
        "data": {"dir": _display(directory), "heldout": pools.heldout, "sha256": pools.files},
    }
    return rows, truth


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT.resolve()))
    except ValueError:
        return str(path)


def truth_path(stream: Path) -> Path:
    """``demo_stream.jsonl`` -> ``demo_stream.truth.json``."""
    return stream.with_name(stream.name.removesuffix(".jsonl").removesuffix(".csv") + ".truth.json")


def write_demo_stream(rows: Iterable[dict], truth: dict, out: Path) -> Path:
    """Write the JSONL and its sidecar; returns the sidecar's path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    sidecar = truth_path(out)
    sidecar.write_text(
        json.dumps(truth, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return sidecar


def rebase_truth(truth: dict, offset: timedelta, id_salt: str = "") -> dict:
    """The ground truth as the replay placed it: every time moved by ``offset``, ids salted."""
    from pipeline.ingest.replay import parse_time
    from pipeline.messages import article_id

    moved = json.loads(json.dumps(truth))
    for key in ("stream_start", "stream_end"):
        moved[key] = format_time(parse_time(truth[key]) + offset)
    for key in ("start", "end"):
        moved["spike"][key] = format_time(parse_time(truth["spike"][key]) + offset)
    if id_salt:
        moved["spike"]["ids"] = [article_id(source=id_salt, guid=i) for i in truth["spike"]["ids"]]
    moved["replay_offset_seconds"] = offset.total_seconds()
    return moved
