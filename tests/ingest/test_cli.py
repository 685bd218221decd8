"""`finsentry crawl --once` and `finsentry replay` as an operator runs them (real broker)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.ingest.canonical import url_id
from pipeline.ingest.testing import FixtureServer, Response
from pipeline.messages import format_time
from tests.ingest.sites import RECENT, atom

pytestmark = pytest.mark.integration


def env(kafka_settings, tmp_path) -> dict[str, str]:
    return {
        "FINSENTRY_KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "FINSENTRY_KAFKA_TOPIC_RAW": kafka_settings.topic_raw,
        "FINSENTRY_CRAWLER_ALLOW_LOOPBACK": "true",
        "FINSENTRY_CRAWLER_PER_HOST_INTERVAL_SECONDS": "0",
        "FINSENTRY_CRAWLER_STATE_URL": f"sqlite:///{tmp_path / 'state.sqlite'}",
        "FINSENTRY_CRAWLER_REGISTER_TARGET": "false",
        "FINSENTRY_REPLAY_REGISTER_TARGET": "false",
    }


def test_crawl_once_from_the_command_line(tmp_path, kafka_settings, raw_reader):
    routes = {"/robots.txt": lambda r: Response(404, b"")}
    with FixtureServer(routes) as server:
        feed = atom(
            [
                {
                    "title": "Nvidia sets a record",
                    "link": server.url("/n.html"),
                    "published": RECENT,
                    "summary": "Nvidia shares hit a record after data-centre sales doubled again.",
                }
            ]
        )
        routes["/atom.xml"] = lambda r: Response(
            200, feed, {"Content-Type": "application/atom+xml"}
        )
        feeds = tmp_path / "feeds.yaml"
        feeds.write_text(
            f"sources:\n  - "
            f"{{name: mine, url: '{server.url('/atom.xml')}', fetch_article: false}}\n"
        )
        runner = CliRunner()
        result = runner.invoke(
            app, ["crawl", "--feeds", str(feeds), "--once"], env=env(kafka_settings, tmp_path)
        )
        assert result.exit_code == 0, result.output
        assert "mine: ok, 1 items, 1 emitted (0 near-duplicates), 0 already seen" in result.output
        again = runner.invoke(
            app, ["crawl", "--feeds", str(feeds), "--once"], env=env(kafka_settings, tmp_path)
        )
        assert "mine: ok, 1 items, 0 emitted (0 near-duplicates), 1 already seen" in again.output
    [(key, article, _ts)] = raw_reader(kafka_settings, expected=1)
    assert (
        key == url_id(server.url("/n.html"))
        and article.tickers == ["NVDA"]
        and article.source == "mine"
    )


def test_replay_from_the_command_line(tmp_path, kafka_settings, raw_reader):
    rows = tmp_path / "news.csv"
    rows.write_text(
        "title,body,published_at,tickers\n"
        "Fed holds rates,Policy makers kept rates unchanged.,2026-01-05T14:00:00Z,\n"
        "Oil falls,Brent dropped 3%.,2026-01-05T14:01:00Z,XOM;CVX\n",
        encoding="utf-8",
    )
    (tmp_path / "news.truth.json").write_text(
        json.dumps(
            {
                "stream_start": "2026-01-05T14:00:00Z",
                "stream_end": "2026-01-05T14:02:00Z",
                "spike": {
                    "start": "2026-01-05T14:01:00Z",
                    "end": "2026-01-05T14:02:00Z",
                    "ids": [],
                },
            }
        )
    )
    out = tmp_path / "moved.json"
    result = CliRunner().invoke(
        app,
        ["replay", str(rows), "--speedup", "600", "--source", "csv", "--truth-out", str(out)],
        env=env(kafka_settings, tmp_path),
    )
    assert result.exit_code == 0, result.output
    assert "replayed 2 of 2 rows" in result.output
    articles = sorted(
        (a for _k, a, _t in raw_reader(kafka_settings, expected=2)), key=lambda a: a.published_at
    )
    assert [a.tickers for a in articles] == [[], ["CVX", "XOM"]]
    moved = json.loads(out.read_text())
    assert moved["spike"]["start"] == format_time(articles[1].published_at)
