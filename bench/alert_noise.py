"""False alarms and detection delay of the spike rule variants on demo streams, one run.

    python bench/alert_noise.py                 # 20 seeds of the e2e test's stream
    python bench/alert_noise.py --seeds 5       # quicker

Why: the e2e test's calm control stream once paged (topic Macro, critical) under
the rule that measured a spike in the baseline's own spread only. Running the
real stack takes ten minutes per stream and its outcome depends on timing, so
this script replays the rule arithmetic instead, on many streams at once:

- streams: the e2e test's demo stream (40 event minutes, spike at minute 33 on
  "Energy | Oil" and XOM) for several seeds, with and without the spike;
- scores: the bundled model's predictions for every text (the real engine);
- windows: 1m tumbling and 15m hopping (1m slide) per topic and ticker, as the
  Flink job computes them, hidden while they began before the data (the exporter);
- Prometheus: a sample every 5 s of wall time at the test's 10x speed-up, the
  baseline over [now-11m, now-1m] of wall time, min articles 30, min samples 6,
  ``for: 15s``, deviations from 3 to 5, floor 0.05
  (deploy/prometheus/rules/sentiment.yml, local profile).

What it does not model: scheduling jitter of the real processes (a window can be
seen twice or skipped), checkpoint delay, the watermark at the end of a stream.

Compared in the same run: the first rule (deviation = the baseline's spread,
floored: the baseline), the spread or one window's sampling error, and the rule
in the files (the spread or 1.414 times the sampling error), each at the warning
(3) and critical (5) thresholds and two in between. Writes bench/results/alert_noise.json.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from classifier import code_version, hardware  # noqa: E402

SPEEDUP = 10.0
EVAL_SECONDS = 5.0  # wall
BASELINE_RANGE_SECONDS, BASELINE_OFFSET_SECONDS = 600.0, 60.0  # wall
FOR_SECONDS = 15.0
MIN_ARTICLES, MIN_SAMPLES, FLOOR = 30, 6, 0.05
SIGMAS = (3.0, 3.5, 4.0, 5.0)  # warning is 3, critical 5; the others are candidates
WINDOWS = {"1m": (60.0, 60.0), "15m": (900.0, 60.0)}  # length, slide (event seconds)


@dataclass(frozen=True)
class Window:
    end: float  # event seconds from the stream's start
    articles: int
    negative: int

    @property
    def ratio(self) -> float:
        return self.negative / self.articles


def deviation_spread(spread: float, mean: float, articles: int) -> float:
    """The first rule: the baseline's own spread, floored."""
    return max(spread, FLOOR)


def deviation_with_sampling(spread: float, mean: float, articles: int, factor: float = 1.0) -> float:
    """The larger of the spread and ``factor`` times a window's sampling error, floored."""
    sampling = factor * math.sqrt(mean * (1 - mean) / articles)
    return max(spread, sampling, FLOOR)


RULES = {
    "spread (first rule)": deviation_spread,
    "spread or sampling error": deviation_with_sampling,
    "spread or 1.414 x sampling error (rule)": lambda s, m, n: deviation_with_sampling(s, m, n, 1.414),
}


def windows_per_key(
    rows: list[dict], predictions: dict[str, str], start: datetime
) -> dict[tuple, list[Window]]:
    """Closed windows per (dimension, key, window name), in end order."""
    events = []
    for row in rows:
        at = (datetime.fromisoformat(row["published_at"].replace("Z", "+00:00")) - start).total_seconds()
        topic, negative = predictions[row["text"]]
        keys = [("topic", topic)] + [("ticker", t) for t in row.get("tickers") or []]
        events.append((at, keys, negative))
    last = max(at for at, _, _ in events)
    out: dict[tuple, list[Window]] = {}
    for name, (length, slide) in WINDOWS.items():
        counts: dict[tuple, dict[float, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
        for at, keys, negative in events:
            first_end = (math.floor(at / slide) + 1) * slide
            end = first_end
            while end - length <= at < end:
                if end - length >= 0 and end <= last:  # began inside the data, closed by the watermark
                    for key in keys:
                        cell = counts[key][end]
                        cell[0] += 1
                        cell[1] += negative
                end += slide
        for key, by_end in counts.items():
            out[(*key, name)] = [Window(end, a, n) for end, (a, n) in sorted(by_end.items())]
    return out


def evaluate(windows: list[Window], deviation, length: float) -> list[tuple[float, float, int]]:
    """(wall time, z-score, articles) at each evaluation where the alert condition's inputs exist."""
    step = EVAL_SECONDS * SPEEDUP
    horizon = windows[-1].end + 3 * length
    samples: list[tuple[float, float]] = []  # (event time, ratio) of the recorded series
    out = []
    index, t = 0, 0.0
    while t <= horizon:
        while index + 1 < len(windows) and windows[index + 1].end <= t:
            index += 1
        current = windows[index] if windows[index].end <= t else None
        if current is not None and t - current.end > 3 * length:
            current = None  # the exporter drops a stale key
        if current is not None:
            samples.append((t, current.ratio))
            lo = t - (BASELINE_RANGE_SECONDS + BASELINE_OFFSET_SECONDS) * SPEEDUP
            hi = t - BASELINE_OFFSET_SECONDS * SPEEDUP
            base = [r for at, r in samples if lo < at <= hi]
            if len(base) >= MIN_SAMPLES and current.articles >= MIN_ARTICLES:
                mean = statistics.fmean(base)
                spread = statistics.pstdev(base)
                z = (current.ratio - mean) / deviation(spread, mean, current.articles)
                out.append((t / SPEEDUP, z, current.articles))
        t += step
    return out


def fired(evaluations: list[tuple[float, float, int]], sigma: float) -> float | None:
    """Wall time at which an alert with ``for: 15s`` fires, or None.

    Pending from the first evaluation where the condition holds; firing once it has
    held at every evaluation for ``FOR_SECONDS``; a missing or false evaluation resets.
    """
    run_start = previous = None
    for wall, z, _ in evaluations:
        if z < sigma:
            run_start = None
        elif run_start is None or wall - previous > EVAL_SECONDS + 1e-6:
            run_start = wall
        previous = wall
        if run_start is not None and wall - run_start >= FOR_SECONDS - 1e-6:
            return wall
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 seeds instead of 20")
    parser.add_argument("--seeds", type=int, default=None, help="replayed streams (default 20)")
    parser.add_argument("--out", type=Path, default=None, help="result file")
    args = parser.parse_args()
    args.seeds = args.seeds or (4 if args.quick else 20)
    args.out = args.out or REPO / "bench" / "results" / (
        "alert_noise.quick.json" if args.quick else "alert_noise.json")

    from models.inference import engine_from_registry
    from models.registry import Registry
    from pipeline.ingest.demo import DemoSpec, build_demo_stream
    from pipeline.settings import ModelSettings

    settings = ModelSettings()
    engine = engine_from_registry(Registry(settings.registry_dir, settings.resolved_base_model_dir()))
    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    streams = []
    for seed in range(11, 11 + args.seeds):
        spec = DemoSpec(
            seed=seed,
            start=start,
            duration_minutes=40.0,
            spike_start_minute=33.0,
            spike_minutes=5.0,
            spike_per_minute=8.0,
        )
        rows, truth = build_demo_stream(spec)
        streams.append((seed, spec, rows, truth))
    texts = sorted({row["text"] for _, _, rows, _ in streams for row in rows})
    predictions = {
        text: (p.topic, int(p.sentiment == "negative"))
        for text, p in zip(texts, engine.predict(texts), strict=True)
    }

    # per rule and threshold: calm streams with any alert, and the spike's detection delays
    calm_alerts: dict = defaultdict(list)
    delays: dict = defaultdict(list)
    missed: dict = defaultdict(list)
    for seed, spec, rows, _truth in streams:
        spike_keys = {("topic", spec.spike_key), ("ticker", spec.spike_ticker)}
        spike_wall = spec.spike_start_minute * 60 / SPEEDUP
        for with_spike in (True, False):
            stream = rows if with_spike else [r for r in rows if not r.get("spike")]
            per_key = windows_per_key(stream, predictions, start)
            for rule, deviation in RULES.items():
                evaluations = {k: evaluate(w, deviation, WINDOWS[k[2]][0]) for k, w in per_key.items()}
                for sigma in SIGMAS:
                    fired_at = {k: fired(e, sigma) for k, e in evaluations.items()}
                    fired_at = {k: at for k, at in fired_at.items() if at is not None}
                    if not with_spike:
                        calm_alerts[rule, sigma] += [f"seed {seed} {d}={key} [{w}]" for d, key, w in fired_at]
                        continue
                    on_spike = [
                        at - spike_wall
                        for (d, key, _), at in fired_at.items()
                        if (d, key) in spike_keys and at >= spike_wall
                    ]
                    if on_spike:
                        delays[rule, sigma].append(min(on_spike))
                    else:
                        missed[rule, sigma].append(seed)

    summary = {
        "benchmark": "alert_noise",
        "quick": args.quick,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "code_version": code_version(),
        "hardware": hardware(),
        "streams": len(streams),
        "seeds": [seed for seed, *_ in streams],
        "model_version": engine.version,
        "results": [
            {
                "rule": rule,
                "sigma": sigma,
                "calm_alerts": len(calm_alerts[rule, sigma]),
                "calm_streams_with_alert": len({a.split()[1] for a in calm_alerts[rule, sigma]}),
                "calm_examples": calm_alerts[rule, sigma][:8],
                "spikes_missed": missed[rule, sigma],
                "detection_delay_wall_s_median": (
                    statistics.median(delays[rule, sigma]) if delays[rule, sigma] else None
                ),
                "detection_delay_wall_s_max": max(delays[rule, sigma], default=None),
            }
            for rule in RULES
            for sigma in SIGMAS
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"{'rule':38} {'sigma':>5} {'calm alerts':>11} {'calm streams':>12} {'missed':>6} "
        f"{'delay median':>12} {'max':>5}"
    )
    for r in summary["results"]:
        print(
            f"{r['rule']:38} {r['sigma']:5} {r['calm_alerts']:11} {r['calm_streams_with_alert']:12} "
            f"{len(r['spikes_missed']):6} {r['detection_delay_wall_s_median'] or '-':>12} "
            f"{r['detection_delay_wall_s_max'] or '-':>5}"
        )


if __name__ == "__main__":
    main()
