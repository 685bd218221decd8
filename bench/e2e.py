"""End-to-end benchmark: the whole pipeline on the local stack.

Two runs through the real stack, each stage in its own process:

1. throughput: the bundled demo stream replayed as fast as Kafka takes it;
   sustained articles/s from the first record in news.raw to the last in
   news.scored, and p50/p99 latency from news.raw to news.scored and to the
   sentiment.windows record that first counts the article (Kafka timestamps);
2. detection: the demo stream at its normal compression; seconds from the
   first spike article to the delivered notification.

The baseline in the same run is the classifier engine alone on the same texts
(no Kafka, no Flink): the pipeline's share of it says what the plumbing costs.

    python bench/e2e.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from bisect import bisect_left
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.demo.run import DEFAULT_STREAM, DemoOptions, run_demo  # noqa: E402
from pipeline.demo.services import Ports  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from classifier import code_version, hardware  # noqa: E402  (one definition for every bench)

#: Ports of its own, so the benchmark can run beside a demo or the tests.
BENCH_PORTS = Ports(classifier=18001, exporter=18002, notifier=18003)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def _texts(stream: Path, limit: int | None) -> list[str]:
    rows = [json.loads(line) for line in stream.read_text().splitlines() if line.strip()]
    return [r.get("text") or r.get("title", "") for r in rows][:limit]


def engine_alone(texts: list[str]) -> float:
    """Items/s of the classifier engine on the same texts, in this process."""
    from models.inference import engine_from_registry
    from models.registry import Registry
    from pipeline.settings import ModelSettings

    settings = ModelSettings()
    engine = engine_from_registry(Registry(settings.registry_dir, settings.resolved_base_model_dir()))
    engine.predict(texts[:64])  # warm-up
    started = time.perf_counter()
    engine.predict(texts)
    return len(texts) / (time.perf_counter() - started)


def throughput_run(stream: Path) -> dict:
    result = run_demo(DemoOptions(stream=stream, rate_per_second=0, expect_alert=False,
                                  timeout_seconds=900, drain_timeout_seconds=60, ports=BENCH_PORTS))
    scored = result.readers["scored"]
    windows = result.readers["windows"]
    raw_ts = {}
    # news.raw timestamps are the replayer's produce times (CreateTime).
    from pipeline.demo.observe import TopicReader
    from pipeline.messages import decode_raw

    raw_reader = TopicReader(_kafka_for(result), _kafka_for(result).topic_raw, decode_raw)
    raw_reader.drain()
    raw_reader.close()
    for article, ts in zip(raw_reader.records, raw_reader.timestamps_ms, strict=True):
        raw_ts.setdefault(article.id, ts)
    first_scored: dict[str, int] = {}
    published: dict[str, datetime] = {}
    for article, ts in zip(scored.records, scored.timestamps_ms, strict=True):
        first_scored.setdefault(article.id, ts)
        published[article.id] = article.published_at
    to_scored = [(first_scored[i] - raw_ts[i]) / 1000 for i in first_scored if i in raw_ts]

    # The first `all` window (smallest length) that covers an article counts it.
    smallest = min((w.window_seconds for w in windows.records if w.dimension == "all"), default=0)
    alls = sorted((w.window_start, w.window_end, ts) for w, ts in zip(windows.records, windows.timestamps_ms,
                                                                     strict=True)
                  if w.dimension == "all" and w.window_seconds == smallest)
    starts = [w[0] for w in alls]
    to_windows = []
    for article_id, when in published.items():
        i = bisect_left(starts, when)
        if i == len(starts) or starts[i] != when:
            i -= 1
        if 0 <= i < len(alls) and alls[i][0] <= when < alls[i][1] and article_id in raw_ts:
            to_windows.append((alls[i][2] - raw_ts[article_id]) / 1000)
    span = (max(first_scored.values()) - min(raw_ts.values())) / 1000 if first_scored else None
    return {
        "articles": result.counts.raw,
        "scored_distinct": result.counts.scored_distinct,
        "dead_lettered": result.counts.dead_lettered,
        "counts_agree": result.counts.agree,
        "sustained_items_per_s": result.counts.scored_distinct / span if span else None,
        "latency_raw_to_scored_p50_s": _percentile(to_scored, 0.5),
        "latency_raw_to_scored_p99_s": _percentile(to_scored, 0.99),
        "latency_raw_to_window_p50_s": _percentile(to_windows, 0.5),
        "latency_raw_to_window_p99_s": _percentile(to_windows, 0.99),
        "articles_with_window_latency": len(to_windows),
    }


def _kafka_for(result):
    from pipeline.settings import KafkaSettings

    prefix = f"demo.{result.run_id}."
    base = KafkaSettings()
    return base.model_copy(update={f"topic_{t}": prefix + getattr(base, f"topic_{t}")
                                   for t in ("raw", "scored", "dlq", "windows")})


def detection_run(stream: Path, speedup: float) -> dict:
    result = run_demo(DemoOptions(stream=stream, speedup=speedup, timeout_seconds=900,
                                  stop_after_alert=True, ports=BENCH_PORTS))
    return {
        "speedup": speedup,
        "alert_delivered": bool(result.spike_notifications()),
        "detection_delay_wall_s": result.detection_delay_seconds,
        "detection_delay_event_min": (result.detection_delay_seconds * speedup / 60
                                      if result.detection_delay_seconds is not None else None),
        "alerts_fired": sorted(result.alerts_fired),
        "counts_agree": result.counts.agree,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Throughput run only (skip detection).")
    parser.add_argument("--json", action="store_true", help="Print only the JSON result.")
    parser.add_argument("--stream", type=Path, default=DEFAULT_STREAM)
    parser.add_argument("--speedup", type=float, default=10.0)
    args = parser.parse_args()

    texts = _texts(args.stream, None)
    result = {
        "benchmark": "e2e",
        "created_at": datetime.now(UTC).isoformat(),
        "code_version": code_version(),
        "hardware": hardware(),
        "config": {"stream": str(args.stream.relative_to(REPO) if args.stream.is_relative_to(REPO)
                                 else args.stream), "articles": len(texts), "speedup": args.speedup},
        "baseline_engine_items_per_s": engine_alone(texts),
        "throughput": throughput_run(args.stream),
    }
    if not args.quick:
        result["detection"] = detection_run(args.stream, args.speedup)
    sustained = result["throughput"]["sustained_items_per_s"]
    engine = result["baseline_engine_items_per_s"]
    result["pipeline_share_of_engine"] = sustained / engine if sustained else None
    out = REPO / "bench" / "results" / ("e2e-quick.json" if args.quick else "e2e.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
    if not args.json:
        print(f"engine alone: {result['baseline_engine_items_per_s']:.0f} items/s; "
              f"pipeline sustained: {sustained or 0:.0f} items/s")
    print(json.dumps(result, sort_keys=True, default=str))


if __name__ == "__main__":
    main()
