"""The calm stream the chaos suite replays: N articles, evenly spaced in event time.

The bundled demo data holds ~3,600 distinct texts, fewer than the 10,000
articles of the full run, so texts repeat in a fixed cycle; every article has
its own id (``<run>-<index>``), so each one is a distinct article to every stage.
The demo stream's spike rows are left out: nothing on this stream should page.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.ingest.demo import DemoSpec, build_demo_stream
from pipeline.messages import format_time

START = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)
#: Event-time articles per minute: 60 s windows of ~120 articles.
EVENT_RATE_PER_MINUTE = 120


def write_calm_stream(path: Path, run_id: str, articles: int) -> list[str]:
    """Write ``articles`` rows (JSONL) to ``path``; returns their ids in order."""
    rows, _ = build_demo_stream(DemoSpec(duration_minutes=100.0, rate_per_minute=30.0))
    texts = [(r["text"], r["tickers"], r["source"]) for r in rows if not r["spike"]]
    spacing = timedelta(minutes=1) / EVENT_RATE_PER_MINUTE
    ids = []
    with path.open("w", encoding="utf-8") as out:
        for index in range(articles):
            text, tickers, source = texts[index % len(texts)]
            row_id = f"{run_id}-{index:05d}"
            ids.append(row_id)
            out.write(
                json.dumps(
                    {
                        "id": row_id,
                        "published_at": format_time(START + index * spacing),
                        "source": source,
                        "text": text,
                        "tickers": tickers,
                    }
                )
                + "\n"
            )
    return ids
