"""Dashboards as files: valid Grafana JSON on the provisioned datasource, and the push client.

The queries themselves run against the real Prometheus in
tests/integration/test_alerting.py::test_every_dashboard_query_is_accepted_and_returns_data.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from pipeline.dashboards.grafana import (
    ARTICLES_DATASOURCE_TYPE,
    ARTICLES_DATASOURCE_UID,
    DATASOURCE_UID,
    DashboardError,
    concrete_promql,
    concrete_sql,
    load_dashboards,
    problems,
    push,
    queries,
    sql_queries,
)
from pipeline.settings import REPO_ROOT, GrafanaSettings


def test_every_dashboard_is_valid_and_uses_the_provisioned_prometheus():
    dashboards = load_dashboards()
    assert {d["uid"] for d in dashboards.values()} == {
        "finsentry-overview",
        "finsentry-ticker",
        "finsentry-pipeline",
    }
    for path, dashboard in dashboards.items():
        assert problems(dashboard) == [], path.name
    ticker = next(d for d in dashboards.values() if d["uid"] == "finsentry-ticker")
    assert "ticker" in {v["name"] for v in ticker["templating"]["list"]}


def test_provisioning_matches_the_dashboards_and_compose():
    provisioning = REPO_ROOT / "dashboards" / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    assert [d["uid"] for d in datasources["datasources"]] == [DATASOURCE_UID]
    assert datasources["datasources"][0]["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((provisioning / "dashboards" / "finsentry.yml").read_text())
    path = providers["providers"][0]["options"]["path"]
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./dashboards:{path}:ro" in mounts
    assert "./dashboards/provisioning:/etc/grafana/provisioning:ro" in mounts


def test_the_article_store_datasource_is_provisioned_and_fed_in_compose():
    provisioning = REPO_ROOT / "dashboards" / "provisioning"
    articles = yaml.safe_load((provisioning / "datasources" / "articles.yml").read_text())
    (source,) = articles["datasources"]
    assert (source["uid"], source["type"]) == (ARTICLES_DATASOURCE_UID, ARTICLES_DATASOURCE_TYPE)
    assert source["url"] == "postgres:5432" and source["jsonData"]["database"] == "finsentry"
    assert source["secureJsonData"]["password"] == "$__file{/run/secrets/postgres_password}"
    services = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    assert "postgres_password" in services["grafana"]["secrets"]
    assert "postgres_password" in services["postgres"]["secrets"]
    assert services["articles-sink"]["command"] == ["articles", "sink"]
    # The URL carries the password: a secret file named like the settings field.
    for service, secret in (
        ("articles-sink", "finsentry_articles_database_url"),
        ("notifier", "finsentry_notifier_articles_database_url"),
    ):
        assert {"source": "articles_database_url", "target": secret} in services[service]["secrets"]
        assert services[service]["environment"]["FINSENTRY_SECRETS_DIR"] == "/run/secrets"


def test_the_article_table_query_runs_on_the_article_store(tmp_path):
    """The overview's SQL, macros expanded, on a real store: negative stories, no copies."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import text

    from pipeline.articles.store import ArticleStore
    from tests.articles.helpers import scored

    overview = next(d for d in load_dashboards().values() if d["uid"] == "finsentry-overview")
    (query,) = list(sql_queries(overview))
    store = ArticleStore(f"sqlite:///{tmp_path / 'a.db'}")
    store.upsert(
        [
            scored("a", title="Oil giant slashes dividend", sentiment="negative", sentiment_score=-0.9),
            scored("a-copy", sentiment="negative", sentiment_score=-0.95, duplicate_of="a"),
            scored("b", sentiment="negative", sentiment_score=-0.5),
            scored("c", sentiment="positive", sentiment_score=0.5),
            scored("d", topic="Macro", sentiment="negative", sentiment_score=-0.99),
            scored("old", sentiment="negative", sentiment_score=-0.99, minutes_ago=600),
        ]
    )
    now = datetime.now(UTC)
    fmt = "%Y-%m-%d %H:%M:%S"
    sql = concrete_sql(
        query.expr,
        {"topic": ["Energy | Oil", "Other"]},
        since=(now - timedelta(hours=1)).strftime(fmt),
        until=(now + timedelta(minutes=1)).strftime(fmt),
    )
    with store.engine.connect() as connection:
        rows = connection.execute(text(sql)).mappings().all()
    store.close()
    assert [(r["title"], r["score"]) for r in rows] == [
        ("Oil giant slashes dividend", -0.9),
        ("Headline b", -0.5),
    ]
    assert set(rows[0]) == {"time", "score", "title", "source", "topic", "link"}
    assert rows[0]["link"] == "https://news.example/a"


def test_problems_are_found():
    broken = {
        "uid": "x",
        "title": "x",
        "schemaVersion": 39,
        "panels": [
            {
                "id": 1,
                "type": "timeseries",
                "title": "p",
                "gridPos": {"x": 0, "y": 0, "w": 12, "h": 8},
                "datasource": {"type": "prometheus", "uid": "other"},
                "targets": [{"refId": "A", "expr": ""}],
            }
        ],
    }
    found = problems(broken)
    assert any("not the provisioned Prometheus" in p for p in found)
    assert any("empty expr" in p for p in found)
    articles = {"type": ARTICLES_DATASOURCE_TYPE, "uid": ARTICLES_DATASOURCE_UID}
    broken["panels"][0]["datasource"] = articles
    broken["panels"][0]["targets"] = [{"refId": "A", "datasource": articles, "rawSql": ""}]
    found = problems(broken)
    assert any("only table panels" in p for p in found)
    assert any("empty rawSql" in p for p in found)
    assert any("format must be table" in p for p in found)


def test_concrete_promql():
    variables = {"ticker": "ACME", "window": "1m"}
    assert concrete_promql('label_values(finsentry_window_negative_ratio{dimension="ticker"}, key)', {}) == (
        'count by (key) (finsentry_window_negative_ratio{dimension="ticker"})'
    )
    assert concrete_promql('x{key="$ticker",window="$window"}', variables) == 'x{key="ACME",window="1m"}'
    assert concrete_promql("rate(x[$__rate_interval])", {}) == "rate(x[1m])"
    with pytest.raises(DashboardError):
        concrete_promql('x{key="$unknown"}', {})
    assert sum(1 for d in load_dashboards().values() for _ in queries(d)) >= 20


class _Grafana(BaseHTTPRequestHandler):
    """Records what the client sends; answers like Grafana's HTTP API (folders, dashboards)."""

    calls: list[tuple[str, str, str | None, dict | None]] = []

    def _answer(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> dict | None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        type(self).calls.append((self.command, self.path, self.headers.get("Authorization"), body))
        return body

    def do_GET(self):  # noqa: N802
        self._record()
        self._answer(404, {"message": "folder not found"})

    def do_POST(self):  # noqa: N802
        body = self._record()
        if self.path == "/api/folders":
            self._answer(200, {"uid": body["uid"], "title": body["title"]})
        else:
            uid = body["dashboard"]["uid"]
            self._answer(200, {"status": "success", "uid": uid, "url": f"/d/{uid}/x"})

    def log_message(self, *args):
        pass


def test_push_uploads_every_dashboard_with_a_token():
    _Grafana.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Grafana)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        urls = push(GrafanaSettings(url=url, token="glsa_token"))
    finally:
        server.shutdown()
    assert urls == [
        f"{url}/d/{uid}/x" for uid in ("finsentry-overview", "finsentry-pipeline", "finsentry-ticker")
    ]
    assert {auth for _, _, auth, _ in _Grafana.calls} == {"Bearer glsa_token"}
    assert [(m, p) for m, p, _, _ in _Grafana.calls][:2] == [
        ("GET", "/api/folders/finsentry"),
        ("POST", "/api/folders"),
    ]
    uploads = [body for m, p, _, body in _Grafana.calls if p == "/api/dashboards/db"]
    assert len(uploads) == 3
    assert all(u["overwrite"] and u["folderUid"] == "finsentry" for u in uploads)


def test_push_needs_credentials():
    with pytest.raises(DashboardError, match="FINSENTRY_GRAFANA_TOKEN"):
        push(GrafanaSettings(url="http://127.0.0.1:9"))
