"""Aggregation job throughput (Kafka in, Kafka out) and window delay, one run.

    python bench/aggregate.py            # 200,000-article backlog, 90 s live stream
    python bench/aggregate.py --quick    # 40,000 articles, 40 s live stream

Needs the local stack (``finsentry stack up``); uses fresh ``bench.<id>.*`` topics.
One job (``python -m pipeline.aggregate``, the same as ``finsentry aggregate``) runs
with the default settings except a 10 s tumbling window (so the live phase sees
several windows; the delay does not depend on the window length) and
``startup_mode=earliest-offset``. Two phases:

1. Backlog throughput. The articles are in ``news.scored`` before the job starts
   (event times spread evenly, ~50 per event-second, 20 topics, 0-2 of 50 tickers,
   2% re-deliveries). A tumbling window ending at E is emitted once the job has
   read everything up to E + out-of-orderness, so the Kafka timestamps of the
   successive ``all`` windows (set when the sink writes them, before the commit)
   give articles processed per second of job time. The end-to-end figure (first
   article read to last window committed, startup excluded) is also reported.
   Baseline in the same run: a plain kafka-python consumer that only reads and
   decodes the same backlog with ``messages.decode_scored`` (what a per-record
   Python aggregator could do at best, before any counting).
2. Window delay. Articles published "now" at a steady rate; for each window, the
   time from its end to its record being visible to a ``read_committed``
   consumer, split into the emit delay (watermark: out-of-orderness + watermark
   interval) and the commit delay (the exactly-once sink commits on checkpoints).

Writes bench/results/aggregate.json (or aggregate-quick.json) with the config,
code version and hardware, and prints the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline import messages  # noqa: E402
from pipeline.aggregate.testing import AggregateProcess  # noqa: E402
from pipeline.kafka_io import delete_topics, ensure_topics, make_consumer, make_producer  # noqa: E402
from pipeline.settings import AggregateSettings, KafkaSettings, StackSettings  # noqa: E402

log = logging.getLogger("bench.aggregate")

TOPICS = [f"topic_{i:02d}" for i in range(20)]
TICKERS = [f"T{i:02d}" for i in range(50)]
PER_EVENT_SECOND = 50


def article(rng: random.Random, id: str, published: datetime) -> bytes:
    sentiment = rng.choice(messages.SENTIMENTS)
    score = {"negative": -0.6, "neutral": 0.0, "positive": 0.6}[sentiment] + rng.uniform(-0.3, 0.3)
    return messages.encode(
        messages.ScoredArticle(
            id=id,
            source="bench",
            title="benchmark article",
            published_at=published,
            fetched_at=published,
            tickers=rng.sample(TICKERS, rng.randint(0, 2)),
            topic=rng.choice(TOPICS),
            topic_score=0.9,
            sentiment=sentiment,
            sentiment_score=round(score, 3),
            confidence=round(rng.uniform(0.3, 1.0), 3),
            model_version="bench",
            scored_at=published,
        )
    )


def produce_backlog(
    kafka: KafkaSettings, n: int, start: datetime, rng: random.Random
) -> tuple[float, datetime]:
    """``n`` records, evenly spread in event time, 2% of them re-deliveries; returns the
    seconds it took and the newest ``published_at``."""
    producer = make_producer(
        kafka, linger_ms=20, batch_size=512 * 1024, acks=1, max_in_flight_requests_per_connection=5
    )
    began = time.perf_counter()
    sent = 0
    i = 0
    while sent < n:
        published = start + timedelta(seconds=i / PER_EVENT_SECOND)
        value = article(rng, f"b{i}", published)
        producer.send(kafka.topic_scored, key=f"b{i}".encode(), value=value)
        sent += 1
        if rng.random() < 0.02 and sent < n:  # an at-least-once re-delivery
            producer.send(kafka.topic_scored, key=f"b{i}".encode(), value=value)
            sent += 1
        i += 1
    producer.flush()
    elapsed = time.perf_counter() - began
    producer.close()
    return elapsed, published


def move_watermarks(kafka: KafkaSettings, at: datetime, prefix: str) -> None:
    producer = make_producer(kafka)
    rng = random.Random(prefix)
    for p in range(kafka.partitions):
        producer.send(kafka.topic_scored, value=article(rng, f"{prefix}-{p}", at), partition=p)
    producer.flush()
    producer.close()


def python_consume_baseline(kafka: KafkaSettings, n: int) -> float:
    """Articles per second a kafka-python consumer reads and decodes (no counting at all)."""
    consumer = make_consumer(kafka, None, kafka.topic_scored, fetch_max_bytes=50 * 1024 * 1024)
    began = time.perf_counter()
    seen = 0
    while seen < n:
        for records in consumer.poll(timeout_ms=1000, max_records=10_000).values():
            for record in records:
                messages.decode_scored(record.value)
            seen += len(records)
    elapsed = time.perf_counter() - began
    consumer.close()
    return n / elapsed


class WindowReader(threading.Thread):
    """Reads ``sentiment.windows`` (read_committed) for the whole run, noting when each
    record became visible and its Kafka timestamp (when the sink wrote it)."""

    def __init__(self, kafka: KafkaSettings) -> None:
        super().__init__(daemon=True)
        self.kafka = kafka
        self.seen: list[tuple[float, float, messages.SentimentWindow]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        consumer = make_consumer(
            self.kafka, None, self.kafka.topic_windows, isolation_level="read_committed"
        )
        try:
            while not self.stop.is_set():
                for records in consumer.poll(timeout_ms=100).values():
                    now = time.time()
                    for r in records:
                        self.seen.append((now, r.timestamp / 1000, messages.decode_window(r.value)))
        finally:
            consumer.close()

    def all_windows(self, seconds: int) -> list[tuple[float, float, messages.SentimentWindow]]:
        return [
            s for s in list(self.seen) if s[2].dimension == "all" and s[2].window_seconds == seconds
        ]


def wait_for(predicate, timeout_seconds: float, what: str) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise TimeoutError(f"bench: timed out waiting for {what}")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


sys.path.insert(0, str(REPO / "bench"))
from classifier import code_version  # noqa: E402  (torch-free; hardware() below stays torch-free too)


def hardware() -> dict:
    info = {
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        info["memory_gib"] = round(
            os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1
        )
    except (OSError, ValueError):
        pass
    java = subprocess.run(["java", "-version"], capture_output=True, text=True)
    info["java"] = (java.stderr.splitlines() or ["?"])[0]
    from importlib.metadata import version

    info["apache_flink"] = version("apache-flink")
    return info


def classifier_cpu_throughput() -> dict | None:
    """The classifier's best CPU items/s (wall clock) from its own benchmark result, if any."""
    for name in ("classifier.json", "classifier.quick.json"):
        path = REPO / "bench" / "results" / name
        if path.exists():
            modes = json.loads(path.read_text()).get("modes", {})
            cpu = {
                m: v["items_per_s"]
                for m, v in modes.items()
                if m.startswith("cpu/") and isinstance(v, dict) and "items_per_s" in v
            }
            if cpu:
                mode = max(cpu, key=cpu.get)
                return {"source": f"bench/results/{name}", "mode": mode, "items_per_s": cpu[mode]}
    return None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="Smaller backlog, shorter live phase.")
    parser.add_argument("--json", action="store_true", help="Print only the JSON result.")
    parser.add_argument(
        "--articles", type=int, help="Backlog size (default 200,000; quick 40,000)."
    )
    parser.add_argument(
        "--live-seconds", type=int, help="Live phase length (default 60; quick 25)."
    )
    parser.add_argument("--live-rate", type=int, default=200, help="Live articles per second.")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.WARNING if args.json else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("kafka").setLevel(logging.WARNING)
    n = args.articles or (40_000 if args.quick else 200_000)
    live_seconds = args.live_seconds or (40 if args.quick else 90)

    unique = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(
        bootstrap_servers=StackSettings().kafka_bootstrap,
        topic_raw=f"bench.{unique}.news.raw",
        topic_scored=f"bench.{unique}.news.scored",
        topic_dlq=f"bench.{unique}.news.dlq",
        topic_windows=f"bench.{unique}.sentiment.windows",
        partitions=3,
    )
    run_dir = Path(tempfile.mkdtemp(prefix="finsentry-bench-aggregate-"))
    settings = AggregateSettings(
        job_name=f"bench-aggregate-{unique}",
        tumbling_window_ms=10_000,
        checkpoint_dir=str(run_dir / "checkpoints"),
        savepoint_dir=str(run_dir / "savepoints"),
        group_id=f"bench-aggregate-{unique}",
        startup_mode="earliest-offset",
        transactional_id_prefix=f"bench-aggregate-{unique}",
        topic_late=f"bench.{unique}.sentiment.late",
    )
    topics = [*kafka.all_topics(), settings.topic_late]
    ensure_topics(kafka, topics)
    rng = random.Random(6)
    result: dict = {
        "benchmark": "aggregate",
        "created_at": datetime.now(UTC).isoformat(),
        "code_version": code_version(),
        "hardware": hardware(),
        "config": {
            "quick": args.quick,
            "backlog_articles": n,
            "live_seconds": live_seconds,
            "live_rate_per_s": args.live_rate,
            "partitions": kafka.partitions,
            "articles_per_event_second": PER_EVENT_SECOND,
            "topics": len(TOPICS),
            "tickers": len(TICKERS),
            "job": settings.model_dump(
                include={
                    "tumbling_window_ms",
                    "hopping_window_ms",
                    "hopping_slide_ms",
                    "out_of_orderness_ms",
                    "checkpoint_interval_ms",
                    "parallelism",
                    "dedupe_by_id",
                    "dedupe_by_duplicate_of",
                    "source_idle_timeout_ms",
                }
            ),
        },
    }
    # Backlog in the past, so that the live phase (published now) is ahead of it.
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=1)  # aligned
    log.info("producing %d backlog articles", n)
    produce_seconds, backlog_end = produce_backlog(kafka, n, start, rng)
    move_watermarks(kafka, backlog_end + timedelta(minutes=20), "backlog-end")
    result["producer_articles_per_s"] = round(n / produce_seconds)
    log.info("baseline: plain Python consumer")
    result["baseline_python_consume_decode_per_s"] = round(python_consume_baseline(kafka, n))

    reader = WindowReader(kafka)
    reader.start()
    job = AggregateProcess(kafka, settings, run_dir=run_dir, name="bench").start()
    try:
        job.wait_running(timeout_seconds=180)
        running_at = time.time()
        # The end of the tumbling window that holds the newest backlog article.
        last_backlog_window = start + timedelta(
            seconds=((backlog_end - start).total_seconds() // 10 + 1) * 10
        )
        log.info("job running; waiting for the backlog's windows")
        wait_for(
            lambda: any(w.window_end >= last_backlog_window for _, _, w in reader.all_windows(10)),
            600,
            "the backlog's last window",
        )
        done_at = time.time()
        tumbling = sorted(reader.all_windows(10), key=lambda s: s[2].window_end)
        # Windows closed while the backlog was being read (the last ones close together
        # when the end-of-backlog marker arrives, so they are left out).
        steady = [
            s for s in tumbling if s[2].window_end <= last_backlog_window - timedelta(seconds=30)
        ]
        first, last = steady[len(steady) // 10], steady[-1]
        span_event = (last[2].window_end - first[2].window_end).total_seconds()
        span_job = last[1] - first[1]
        result["throughput"] = {
            "job_articles_per_s": round(span_event * PER_EVENT_SECOND / span_job),
            "measured_over_articles": round(span_event * PER_EVENT_SECOND),
            "end_to_end_articles_per_s": round(n / (done_at - running_at)),
            "end_to_end_seconds": round(done_at - running_at, 2),
            "windows_emitted": len(reader.seen),
        }
        log.info("throughput: %s", result["throughput"])

        log.info("live phase: %d articles/s for %d s", args.live_rate, live_seconds)
        producer = make_producer(kafka, linger_ms=5)
        began = time.time()
        i = 0
        while time.time() - began < live_seconds:
            now = datetime.now(UTC)
            producer.send(
                kafka.topic_scored, key=f"l{i}".encode(), value=article(rng, f"l{i}", now)
            )
            i += 1
            time.sleep(max(0.0, began + i / args.live_rate - time.time()))
        live_end = datetime.now(UTC)
        # Keep the watermark moving past the last live window, at the same rate.
        while datetime.now(UTC) < live_end + timedelta(seconds=20):
            now = datetime.now(UTC)
            producer.send(
                kafka.topic_scored, key=f"l{i}".encode(), value=article(rng, f"l{i}", now)
            )
            i += 1
            time.sleep(1 / args.live_rate)
        producer.flush()
        producer.close()
        live_start = datetime.fromtimestamp(began, UTC)
        # One delay per window end: all keys of a window close and commit together, so
        # the tumbling "all" record stands for them (the others are counted alongside).
        in_live = [
            x
            for x in reader.seen
            if x[2].window_start >= live_start and x[2].window_end <= live_end
        ]
        tumbling = [x for x in in_live if x[2].dimension == "all" and x[2].window_seconds == 10]
        visible = [seen - w.window_end.timestamp() for seen, _, w in tumbling]
        emitted = [ts - w.window_end.timestamp() for _, ts, w in tumbling]
        commit = [seen - ts for seen, ts, _ in tumbling]
        result["window_delay_seconds"] = {
            "windows": len(tumbling),
            "records": len(in_live),
            "visible_p50": round(statistics.median(visible), 2),
            "visible_p95": round(pct(visible, 0.95), 2),
            "visible_max": round(max(visible), 2),
            "emitted_p50": round(statistics.median(emitted), 2),
            "commit_wait_p50": round(statistics.median(commit), 2),
            "commit_wait_max": round(max(commit), 2),
            "floor_out_of_orderness": settings.out_of_orderness_ms / 1000,
        }
        log.info("window delay: %s", result["window_delay_seconds"])
    finally:
        job.stop()
        reader.stop.set()
        reader.join(timeout=5)
        delete_topics(kafka, topics)

    classifier = classifier_cpu_throughput()
    result["classifier_cpu"] = classifier
    if classifier:
        result["job_over_classifier_cpu"] = round(
            result["throughput"]["job_articles_per_s"] / classifier["items_per_s"], 1
        )
    result["job_over_python_baseline"] = round(
        result["throughput"]["job_articles_per_s"] / result["baseline_python_consume_decode_per_s"],
        2,
    )
    out = REPO / "bench" / "results" / ("aggregate-quick.json" if args.quick else "aggregate.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
    if not args.json:
        t, d = result["throughput"], result["window_delay_seconds"]
        baseline = result["baseline_python_consume_decode_per_s"]
        print(
            f"job: {t['job_articles_per_s']} articles/s "
            f"(end to end {t['end_to_end_articles_per_s']}/s); Python consume+decode baseline: "
            f"{baseline}/s; window visible after end: p50 {d['visible_p50']} s, "
            f"p95 {d['visible_p95']} s"
        )
    print(json.dumps(result, sort_keys=True, default=str))


if __name__ == "__main__":
    main()
