"""Cost of an explanation (word occlusion) per article on this machine, one run.

    python bench/explain.py            # 200 held-out headlines
    python bench/explain.py --n 50     # quicker

Baseline, measured in the same run on the same texts: plain scoring (one
sequence per headline). An explanation scores ``words + 1`` sequences per
headline, batched through the same engine, so its cost is that many times a
score, less the batching gain. Reports seconds per article (wall and CPU time
of this process; the cores are shared, so CPU time is the steadier figure),
sequences per article, and the ratio to plain scoring. Writes
bench/results/explain.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from classifier import code_version, hardware, load_headlines  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 headlines instead of 200")
    parser.add_argument("--n", type=int, default=None, help="Headlines to explain (default 200).")
    parser.add_argument("--precision", default="auto", help="Engine precision (auto, fp32, ...).")
    parser.add_argument("--out", type=Path, default=None, help="Result file.")
    args = parser.parse_args()
    args.n = args.n or (40 if args.quick else 200)
    args.out = args.out or REPO / "bench" / "results" / (
        "explain.quick.json" if args.quick else "explain.json")

    from models.explain import explain_texts, split_words
    from models.inference import EngineOptions, engine_from_registry
    from models.registry import Registry
    from pipeline.settings import ModelSettings

    settings = ModelSettings()
    registry = Registry(settings.registry_dir, settings.resolved_base_model_dir())
    engine = engine_from_registry(registry, options=EngineOptions(precision=args.precision))
    texts = load_headlines(args.n)

    def measure(fn):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - wall, time.process_time() - cpu

    score_wall, score_cpu = measure(lambda: engine.probabilities(texts))
    # One article at a time: what `finsentry explain` and the notifier do.
    single = []
    single_cpu_start = time.process_time()
    for text in texts:
        started = time.perf_counter()
        explain_texts(engine, [text])
        single.append(time.perf_counter() - started)
    single_cpu = time.process_time() - single_cpu_start
    # All at once: a batch of articles (e.g. the top N of an alert) in one call.
    batch_wall, batch_cpu = measure(lambda: explain_texts(engine, texts))
    words = [len(split_words(t)) for t in texts]
    n = len(texts)
    report = {
        "benchmark": "explain",
        "quick": args.quick,
        "config": {
            "n": n,
            "method": "occlusion",
            "precision": engine.precision,
            "device": engine.device,
            "workers": engine.workers,
        },
        "model_version": engine.version,
        "code_version": code_version(),
        "hardware": hardware(),
        "words_per_article_mean": round(statistics.mean(words), 2),
        "sequences_per_article_mean": round(statistics.mean(words) + 1, 2),
        "baseline_score_seconds_per_article": round(score_wall / n, 5),
        "baseline_score_cpu_seconds_per_article": round(score_cpu / n, 5),
        "explain_one_seconds_per_article_median": round(statistics.median(single), 4),
        "explain_one_seconds_per_article_p95": round(sorted(single)[int(0.95 * (n - 1))], 4),
        "explain_one_cpu_seconds_per_article": round(single_cpu / n, 4),
        "explain_batch_seconds_per_article": round(batch_wall / n, 4),
        "explain_batch_cpu_seconds_per_article": round(batch_cpu / n, 4),
        "explain_batch_vs_score_ratio": round(batch_wall / score_wall, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(json.dumps(report, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
