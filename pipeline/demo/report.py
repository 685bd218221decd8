"""The demo's report: a chart people look at, and a short Markdown summary.

The chart has one panel per topic (the busiest ones and the spiked one) and
one for the spiked ticker: the negative ratio of the longest window the job
emits (the hopping window, which the spike alert watches) against its trailing
baseline band (mean +- 3 deviations of the previous windows, a deviation being
the larger of their spread and the window's sampling error, as in the Prometheus
rule), the article volume as bars, the true spike shaded
and the moment the alert was delivered marked.
"""

from __future__ import annotations

import logging
import statistics
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

log = logging.getLogger(__name__)

BASELINE_WINDOWS = 10
SIGMA = 3.0
STDDEV_FLOOR = 0.05
SAMPLING_ERROR_FACTOR = 1.414  # deploy/prometheus/rules/sentiment.yml, local profile
MAX_PANELS = 6


def _deviation(past_ratios: list[float], articles: int) -> float:
    """The rule's deviation: max(spread, factor * sampling error of ``articles``, floor)."""
    mean = statistics.fmean(past_ratios)
    sampling = SAMPLING_ERROR_FACTOR * (mean * (1 - mean) / max(articles, 1)) ** 0.5
    return max(statistics.pstdev(past_ratios), sampling, STDDEV_FLOOR)


def _event_time_of_wall(result, wall: datetime) -> datetime | None:
    """Map a wall-clock moment to the replay's event time (rebased start + elapsed * speedup)."""
    if result.replay_started_at is None or not result.truth:
        return None
    start = datetime.fromisoformat(result.truth["stream_start"].replace("Z", "+00:00"))
    elapsed = (wall - result.replay_started_at).total_seconds()
    return start + timedelta(seconds=elapsed * result.truth.get("speedup", 1.0))


def _series(result) -> tuple[dict[str, list], int]:
    """Windows of the longest length per panel name ("topic" or "ticker XOM")."""
    longest = max((w.window_seconds for w in result.windows), default=0)
    ticker = (result.truth.get("spike") or {}).get("ticker") if result.truth else None
    by_panel: dict[str, list] = defaultdict(list)
    for w in result.windows:
        if w.window_seconds != longest:
            continue
        if w.dimension == "topic":
            by_panel[w.key].append(w)
        elif w.dimension == "ticker" and w.key == ticker:
            by_panel[f"ticker {w.key}"].append(w)
    for windows in by_panel.values():
        windows.sort(key=lambda w: w.window_start)
    return by_panel, longest


def write_chart(result, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_topic, window_seconds = _series(result)
    if not by_topic:
        log.warning("no topic windows: no chart")
        return None
    spike = result.truth.get("spike") if result.truth else None
    candidates = (spike.get("key"), f"ticker {spike.get('ticker')}") if spike else ()
    spiked = [k for k in candidates if k in by_topic]
    busiest = sorted(by_topic, key=lambda k: -sum(w.articles for w in by_topic[k]))
    topics = (spiked + [k for k in busiest if k not in spiked and not k.startswith("ticker ")])
    topics = topics[:MAX_PANELS]

    fig, axes = plt.subplots(len(topics), 1, figsize=(11, 2.3 * len(topics)), sharex=True, squeeze=False)
    delivered = _event_time_of_wall(result, result.first_delivery_at) if result.first_delivery_at else None
    for ax, topic in zip(axes[:, 0], topics, strict=False):
        windows = by_topic[topic]
        times = [w.window_end for w in windows]
        ratios = [w.negative_ratio for w in windows]
        lows, highs = [], []
        for i in range(len(windows)):
            past = ratios[max(0, i - BASELINE_WINDOWS):i]
            mean = statistics.fmean(past) if past else float("nan")
            std = _deviation(past, windows[i].articles) if len(past) > 1 else float("nan")
            lows.append(max(0.0, mean - SIGMA * std))
            highs.append(min(1.0, mean + SIGMA * std))
        volume = ax.twinx()
        volume.bar(times, [w.articles for w in windows], width=timedelta(seconds=40),
                   color="#cccccc", alpha=0.6, label="articles")
        volume.set_ylabel("articles", fontsize=8)
        ax.set_zorder(volume.get_zorder() + 1)
        ax.patch.set_visible(False)
        ax.fill_between(times, lows, highs, color="#9ecae1", alpha=0.5, label=f"baseline ±{SIGMA:g}σ")
        ax.plot(times, ratios, color="#08519c", marker=".", label="negative ratio")
        if topic in spiked:
            ax.axvspan(_parse(spike["start"]), _parse(spike["end"]), color="#fcbba1", alpha=0.5,
                       label="injected spike")
        if delivered and topic in spiked:
            ax.axvline(delivered, color="#cb181d", linewidth=2, label="alert delivered")
        ax.set_ylim(0, 1)
        ax.set_ylabel("negative", fontsize=8)
        ax.set_title(topic, fontsize=10, loc="left")
        ax.legend(loc="upper left", fontsize=7)
    axes[-1, 0].set_xlabel("event time (UTC, replayed)")
    fig.suptitle(f"finsentry demo {result.run_id}: negative ratio per topic, "
                 f"{window_seconds // 60}-minute windows (by window end)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def write_summary(result, path: Path, chart: Path | None) -> Path:
    c = result.counts
    spike = result.truth.get("spike", {}) if result.truth else {}
    delay = result.detection_delay_seconds
    speedup = result.truth.get("speedup", 1.0) if result.truth else 1.0
    lines = [
        f"# finsentry demo {result.run_id}",
        "",
        "## Detection",
        "",
    ]
    if spike:
        lines.append(f"- Injected spike: {spike['dimension']} **{spike['key']}**, {spike['articles']} extra "
                     f"negative articles from {spike['start']} to {spike['end']} (event time).")
    if result.spike_notifications():
        lines.append(f"- Alert delivered at {result.first_delivery_at:%H:%M:%S} UTC, "
                     f"{delay:.0f} s of wall time after the first spike article was sent "
                     f"(about {delay * speedup / 60:.1f} minutes of event time at {speedup:g}x).")
    else:
        lines.append("- **No spike alert was delivered.**")
    for name, when in sorted(result.alerts_fired.items()):
        lines.append(f"- Fired: `{name}` (first seen {when:%H:%M:%S} UTC)")
    lines += [
        "",
        "## Counts (nothing lost)",
        "",
        "| stage | records |",
        "|---|---:|",
        f"| news.raw | {c.raw} |",
        f"| news.scored (distinct ids) | {c.scored_distinct} |",
        f"| news.scored (records, at-least-once) | {c.scored} |",
        f"| news.dlq | {c.dead_lettered} |",
        f"| sentiment.windows | {c.windows} |",
        f"| articles in closed `all` windows | {c.closed_all_window_articles} |",
        f"| distinct articles those windows cover | {c.scored_in_closed_windows} |",
        "",
        f"Counts agree: **{'yes' if c.agree else 'NO'}**",
        "",
    ]
    for notification in result.spike_notifications()[:1]:
        lines += ["## The notification", "", "```", notification.get("text", ""), "```", ""]
    if chart:
        lines += ["## Chart", "", f"![negative ratio per topic]({chart.name})", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def write_report(result, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    chart = write_chart(result, directory / "negative_ratio.png")
    summary = write_summary(result, directory / "summary.md", chart)
    return [p for p in (chart, summary) if p]
