"""Chaos suite (issue 10): replay a calm stream through the whole pipeline while
killing the classifier three times, restarting the broker once and killing the
Flink job once; then nothing may be lost, nothing double-counted, nothing paged.

``make test`` runs a short version (FINSENTRY_CHAOS_ARTICLES, default 1,500);
``make chaos`` runs 10,000 articles and writes bench/results/chaos.json.
See docs/reliability.md "Chaos suite" for what is checked and the figures.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from kafka.partitioner.default import murmur2

from pipeline.demo.observe import prometheus_query
from pipeline.kafka_io import make_producer
from pipeline.messages import RawArticle, encode, utc_now
from pipeline.settings import REPO_ROOT
from tests.chaos.harness import ChaosPipeline, new_run, wait_until
from tests.chaos.stream import EVENT_RATE_PER_MINUTE, write_calm_stream

ARTICLES = int(os.environ.get("FINSENTRY_CHAOS_ARTICLES", "1500"))
#: Replay rate (articles per second): the replay must outlast the faults.
RATE = float(os.environ.get("FINSENTRY_CHAOS_RATE", "10" if ARTICLES <= 3000 else "20"))
RESULT = os.environ.get("FINSENTRY_CHAOS_RESULT")
SPIKE_ALERT = "NegativeSentimentSpike"
RECOVERY_TIMEOUT_S = 240.0

pytestmark = [pytest.mark.integration, pytest.mark.flink, pytest.mark.slow]


def test_pipeline_survives_kills_and_a_broker_restart_losing_nothing(stack, unique):
    run_id, run_dir = new_run(stack, "chaos", unique)
    stream = run_dir / "stream.jsonl"
    ids = write_calm_stream(stream, run_id, ARTICLES)
    seed = int(os.environ.get("FINSENTRY_CHAOS_SEED", str(random.randrange(10**6))))
    schedule = fault_schedule(random.Random(seed), ARTICLES / RATE)

    pipe = ChaosPipeline(stack, run_id, run_dir)
    alerts_seen: dict[str, str] = {}
    faults: list[dict] = []
    began = time.monotonic()
    try:
        pipe.start()
        startup_s = time.monotonic() - began
        pipe.start_replay(stream, RATE)
        replay_t0 = time.monotonic()
        for at, kind in schedule:
            while time.monotonic() < replay_t0 + at:
                pipe.progress.poll()
                pipe.check_alive()
                pipe.check_replay(ARTICLES)
                time.sleep(0.5)
            faults.append(inject(pipe, kind, at_s=round(time.monotonic() - replay_t0, 1)))
            watch_alerts(stack, run_id, alerts_seen)

        wait_until(lambda: not pipe.replay.is_running(), ARTICLES / RATE + 300, "the replay to end")
        replay_log = pipe.replay.log_file.read_text(errors="replace")
        sentinels = close_all_windows(pipe)
        counts = drain(pipe, set(ids), sentinels, alerts_seen)
        watch_alerts(stack, run_id, alerts_seen)
    finally:
        pipe.stop()
    total_s = time.monotonic() - began

    scored = [a for a in pipe.progress.readers["scored"].records if a.id not in sentinels]
    dead = [d for d in pipe.progress.readers["dlq"].records if d.key not in sentinels]
    scored_ids = {a.id for a in scored}
    copies = Counter(a.id for a in scored)
    late = [r for r in pipe.progress.readers["late"].records if r.id not in sentinels]
    dead_ids = {d.key for d in dead}
    tumbling, duplicate_windows = all_windows(pipe)
    result = {
        "benchmark": "chaos",
        "articles": ARTICLES,
        "replay_rate_per_second": RATE,
        "event_rate_per_minute": EVENT_RATE_PER_MINUTE,
        "seed": seed,
        "run_id": run_id,
        "code_version": code_version(),
        "hardware": {"cores": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2)},
        "ids_in": len(ids),
        "ids_in_raw": len({a.id for a in pipe.progress.readers["raw"].records} - set(sentinels)),
        "scored_records": len(scored),
        "scored_distinct": len(scored_ids),
        "dead_lettered": len(dead_ids),
        "dead_letter_reasons": dict(Counter(d.reason for d in dead)),
        "duplicates_absorbed": len(scored) - len(scored_ids),
        "missing": len(set(ids) - scored_ids - dead_ids),
        "late_records": counts["late"],
        "late_records_that_are_second_copies": sum(copies[r.id] >= 2 for r in late),
        "all_window_articles": sum(w.articles for w in tumbling),
        "all_windows": len(tumbling),
        "duplicate_window_records": duplicate_windows,
        "spike_alerts_seen": alerts_seen,
        "spike_alerts_note": "15m alerts: hopping-window warm-up of a fresh pipeline, see docs",
        "faults": faults,
        "startup_seconds": round(startup_s, 1),
        "total_seconds": round(total_s, 1),
    }
    pipe.delete_topics()
    out = Path(RESULT) if RESULT else run_dir / "chaos.json"
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2, sort_keys=True))

    assert re.search(rf"replayed {ARTICLES} of {ARTICLES} rows .*\(0 not acknowledged", replay_log), (
        replay_log
    )
    assert result["missing"] == 0, sorted(set(ids) - scored_ids - dead_ids)[:20]
    assert all(d.reason and d.error for d in dead)
    # A late record is harmless only as a second copy of an article a window already
    # counted: a classifier killed while its commits failed (a rebalance, a broker
    # restart) re-scores what it had not committed, after the watermark passed it.
    # Every late id must have been scored more than once; the window count below then
    # shows that another copy of each was counted on time.
    late_only = sorted(r.id for r in late if copies[r.id] < 2)
    assert not late_only, late_only[:20]
    assert duplicate_windows == 0
    # Every article sits in a closed window (the sentinels closed the last one), so the
    # `all` tumbling windows must count each distinct scored id exactly once.
    assert result["all_window_articles"] == len(scored_ids)
    # "Fired" means firing; pending states are recorded in the result but do not fail.
    # Known false positive, not caused by the faults (docs/reliability.md, "Chaos suite"):
    # on a freshly started pipeline the 15m hopping windows fill up during their first
    # 15 minutes of event time, their negative share climbs from 0 to its level, and the
    # z-score against that rising baseline fires. Every other firing spike alert fails.
    fired = {k: v for k, v in alerts_seen.items() if v == "firing" and not k.endswith("[15m]")}
    assert not fired, alerts_seen
    assert [f["kind"] for f in faults].count("classifier_kill") == 3


def fault_schedule(rng: random.Random, replay_seconds: float) -> list[tuple[float, str]]:
    """Three classifier kills at random moments, the broker restart and the Flink kill in
    random windows that leave room between them; seconds after the replay starts."""
    plan = [(rng.uniform(0.05, 0.75) * replay_seconds, "classifier_kill") for _ in range(3)]
    plan.append((rng.uniform(0.20, 0.40) * replay_seconds, "broker_restart"))
    plan.append((rng.uniform(0.45, 0.65) * replay_seconds, "flink_kill"))
    return sorted(plan)


def inject(pipe: ChaosPipeline, kind: str, at_s: float) -> dict:
    """One fault and the time until each affected stage's output grows again."""
    before = pipe.progress.poll()
    t0 = time.monotonic()
    record: dict = {"kind": kind, "at_replay_seconds": at_s, "counts_before": before}
    if kind == "classifier_kill":
        pipe.kill_stage("classify")
        pipe.restart_stage("classify")
        grown = pipe.wait_growth(["scored"], t0, RECOVERY_TIMEOUT_S)
        record["recovery_seconds"] = grown["scored"]
    elif kind == "flink_kill":
        pipe.kill_stage("aggregate")
        pipe.restart_stage("aggregate")
        grown = pipe.wait_growth(["windows"], t0, RECOVERY_TIMEOUT_S)
        record["recovery_seconds"] = grown["windows"]
        record["restored_from"] = json.loads(pipe.services.aggregate_status_file.read_text()).get(
            "restored_from"
        )
    elif kind == "broker_restart":
        record["broker_unavailable_seconds"] = round(pipe.restart_broker(), 2)
        grown = pipe.wait_growth(["raw", "scored", "windows"], t0, RECOVERY_TIMEOUT_S)
        record["recovery_seconds"] = max(grown.values())
        record["recovery_seconds_by_stage"] = {
            "replay": grown["raw"],
            "classify": grown["scored"],
            "aggregate": grown["windows"],
        }
    else:
        raise ValueError(kind)
    return record


def close_all_windows(pipe: ChaosPipeline) -> set[str]:
    """One article per partition of news.raw and of news.scored, 5 minutes of event time
    after the stream: the watermark passes the end of every window that holds a stream
    article, so the last window is closed too, without waiting for the source idle
    timeout. The sentinels' own window stays open and is not counted."""
    raw = pipe.progress.readers["raw"]
    pipe.progress.poll()
    latest = max(a.published_at for a in raw.records)
    producer = make_producer(pipe.kafka)
    sentinels = set()
    try:
        for partition in range(pipe.kafka.partitions):
            article = RawArticle(
                id=sentinel_id(pipe.run_id, partition, pipe.kafka.partitions),
                source="chaos",
                title="Markets close the session",
                published_at=latest + timedelta(minutes=5),
                fetched_at=utc_now(),
            )
            producer.send(
                pipe.kafka.topic_raw,
                key=article.id.encode(),
                value=encode(article),
                partition=partition,
            )
            sentinels.add(article.id)
        producer.flush(timeout=60)
    finally:
        producer.close()
    return sentinels


def sentinel_id(run_id: str, partition: int, partitions: int) -> str:
    """An id that the classifier's producer (key = id, Kafka's default murmur2
    partitioner) sends to ``partition`` of news.scored, so that every partition there
    gets a sentinel too."""
    for attempt in range(10_000):
        candidate = f"{run_id}-sentinel-{partition}-{attempt}"
        if (murmur2(candidate.encode()) & 0x7FFFFFFF) % partitions == partition:
            return candidate
    raise AssertionError(f"no sentinel id hashes to partition {partition} of {partitions}")


def drain(pipe: ChaosPipeline, ids: set[str], sentinels: set[str], alerts_seen: dict) -> dict:
    """Wait until every id is scored or dead-lettered and the `all` windows hold them all,
    then one more checkpoint interval, so that extra (double-counted) windows would show."""
    deadline = time.monotonic() + max(300.0, len(ids) / 10)
    while True:
        counts = pipe.progress.poll()
        pipe.check_alive()
        done_ids = {a.id for a in pipe.progress.readers["scored"].records}
        done_ids |= {d.key for d in pipe.progress.readers["dlq"].records}
        scored_real = {a.id for a in pipe.progress.readers["scored"].records} - sentinels
        tumbling, _ = all_windows(pipe)
        if (ids | sentinels) <= done_ids and sum(w.articles for w in tumbling) >= len(scored_real):
            break
        if time.monotonic() > deadline:
            break  # the assertions say what is missing
        watch_alerts(pipe.stack, pipe.run_id, alerts_seen)
        time.sleep(1.0)
    settle = time.monotonic() + 15
    while time.monotonic() < settle:
        counts = pipe.progress.poll()
        time.sleep(0.5)
    return counts


def all_windows(pipe: ChaosPipeline):
    """The `all` windows of the smallest length, and how many window records repeat a key."""
    windows = pipe.progress.readers["windows"].records
    keys = Counter((w.window_start, w.window_end, w.dimension, w.key) for w in windows)
    alls = [w for w in windows if w.dimension == "all"]
    if not alls:
        return [], 0
    smallest = min(w.window_seconds for w in alls)
    return [w for w in alls if w.window_seconds == smallest], sum(n - 1 for n in keys.values())


def watch_alerts(stack, run_id: str, seen: dict) -> None:
    series = prometheus_query(
        stack.settings.prometheus_url, f'ALERTS{{alertname="{SPIKE_ALERT}",pipeline="{run_id}"}}'
    )
    for s in series:
        m = s["metric"]
        name = f"{m.get('dimension')}={m.get('key')} [{m.get('window')}]"
        if seen.get(name) != "firing":  # once fired, it counts as fired
            seen[name] = m["alertstate"]



def code_version() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or "unknown"
