"""The Grafana dashboards in dashboards/: load, check, list their queries, upload.

Every panel, target, template variable and annotation uses the provisioned
Prometheus datasource (uid :data:`DATASOURCE_UID`, dashboards/provisioning),
except table panels reading the article store through the provisioned
PostgreSQL datasource (uid :data:`ARTICLES_DATASOURCE_UID`, raw SQL).
:func:`problems` is what the tests and ``finsentry dashboards check`` enforce;
:func:`concrete_promql` turns a panel query into one Prometheus accepts, so
tests can run every query against the real server.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.settings import REPO_ROOT, GrafanaSettings

log = logging.getLogger(__name__)

DASHBOARDS_DIR = REPO_ROOT / "dashboards"
DATASOURCE_UID = "finsentry-prometheus"
ARTICLES_DATASOURCE_UID = "finsentry-articles"
ARTICLES_DATASOURCE_TYPE = "grafana-postgresql-datasource"
PANEL_TYPES = {"timeseries", "stat", "table", "bargauge", "gauge", "text", "row", "heatmap"}


class DashboardError(ValueError):
    """A dashboard file that Grafana would refuse or render wrongly."""


@dataclass(frozen=True)
class Query:
    dashboard: str
    where: str  # "panel 3 'Articles per topic' target A", "variable topic", ...
    expr: str


def load_dashboards(directory: Path = DASHBOARDS_DIR) -> dict[Path, dict]:
    """Every ``*.json`` in ``directory``, parsed; raises DashboardError on invalid JSON."""
    dashboards = {}
    for path in sorted(directory.glob("*.json")):
        try:
            dashboards[path] = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DashboardError(f"dashboards: {path.name} is not JSON: {exc}") from exc
    if not dashboards:
        raise DashboardError(f"dashboards: no *.json in {directory}")
    return dashboards


def _datasource_ok(datasource) -> bool:
    return (
        isinstance(datasource, dict)
        and datasource.get("type") == "prometheus"
        and datasource.get("uid") == DATASOURCE_UID
    )


def _articles_datasource_ok(datasource) -> bool:
    return (
        isinstance(datasource, dict)
        and datasource.get("type") == ARTICLES_DATASOURCE_TYPE
        and datasource.get("uid") == ARTICLES_DATASOURCE_UID
    )


def _sql_panel_problems(name: str, panel: dict) -> list[str]:
    """A table panel on the article store: raw SQL in table format on that datasource."""
    found = []
    if panel.get("type") != "table":
        found.append(f"{name}: only table panels may use the article store")
    targets = panel.get("targets") or []
    if not targets:
        found.append(f"{name}: no targets")
    for target in targets:
        where = f"{name} target {target.get('refId')}"
        if not _articles_datasource_ok(target.get("datasource")):
            found.append(f"{where}: datasource is not {ARTICLES_DATASOURCE_UID}")
        if not str(target.get("rawSql", "")).strip():
            found.append(f"{where}: empty rawSql")
        if target.get("format") != "table":
            found.append(f"{where}: format must be table")
    return found


def problems(dashboard: dict) -> list[str]:
    """What is wrong with one dashboard (empty when it is fine)."""
    found = []
    for field, kind in (("uid", str), ("title", str), ("schemaVersion", int), ("panels", list)):
        if not isinstance(dashboard.get(field), kind):
            found.append(f"{field} missing or not {kind.__name__}")
    uid = dashboard.get("uid", "")
    if isinstance(uid, str) and not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid):
        found.append(f"uid {uid!r} is not a valid Grafana uid")
    ids = [p.get("id") for p in dashboard.get("panels", [])]
    if len(ids) != len(set(ids)):
        found.append("panel ids are not unique")
    for panel in dashboard.get("panels", []):
        name = f"panel {panel.get('id')} {panel.get('title')!r}"
        if panel.get("type") not in PANEL_TYPES:
            found.append(f"{name}: unknown type {panel.get('type')!r}")
        pos = panel.get("gridPos", {})
        if (
            not all(isinstance(pos.get(k), int) for k in ("x", "y", "w", "h"))
            or pos.get("x", 0) + pos.get("w", 0) > 24
        ):
            found.append(f"{name}: gridPos must have integer x, y, w, h within 24 columns")
        if panel.get("type") in ("row", "text"):
            continue
        if _articles_datasource_ok(panel.get("datasource")):
            found.extend(_sql_panel_problems(name, panel))
            continue
        if not _datasource_ok(panel.get("datasource")):
            found.append(f"{name}: datasource is not the provisioned Prometheus ({DATASOURCE_UID})")
        targets = panel.get("targets") or []
        if not targets:
            found.append(f"{name}: no targets")
        for target in targets:
            if not _datasource_ok(target.get("datasource")):
                found.append(f"{name} target {target.get('refId')}: datasource is not {DATASOURCE_UID}")
            if not str(target.get("expr", "")).strip():
                found.append(f"{name} target {target.get('refId')}: empty expr")
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query" and not _datasource_ok(variable.get("datasource")):
            found.append(f"variable {variable.get('name')}: datasource is not {DATASOURCE_UID}")
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if annotation.get("expr") and not _datasource_ok(annotation.get("datasource")):
            found.append(f"annotation {annotation.get('name')}: datasource is not {DATASOURCE_UID}")
    return found


def queries(dashboard: dict) -> Iterator[Query]:
    """Every PromQL expression of a dashboard: targets, variables, annotations."""
    uid = dashboard.get("uid", "?")
    for panel in dashboard.get("panels", []):
        if _articles_datasource_ok(panel.get("datasource")):
            continue  # SQL: see sql_queries
        for target in panel.get("targets") or []:
            yield Query(
                uid,
                f"panel {panel['id']} {panel.get('title')!r} target {target.get('refId')}",
                target["expr"],
            )
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            yield Query(uid, f"variable {variable['name']}", variable["definition"])
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if annotation.get("expr"):
            yield Query(uid, f"annotation {annotation['name']}", annotation["expr"])


def sql_queries(dashboard: dict) -> Iterator[Query]:
    """Every raw SQL query on the article store (table panels)."""
    uid = dashboard.get("uid", "?")
    for panel in dashboard.get("panels", []):
        if _articles_datasource_ok(panel.get("datasource")):
            for target in panel.get("targets") or []:
                yield Query(
                    uid,
                    f"panel {panel['id']} {panel.get('title')!r} target {target.get('refId')}",
                    target.get("rawSql", ""),
                )


def concrete_sql(sql: str, variables: dict[str, list[str]], *, since: str, until: str) -> str:
    """Grafana's SQL macros and multi-value variables expanded, so any database can run it.

    ``$__timeFilter(col)`` becomes a range on ``since``/``until`` (ISO strings);
    ``$var`` becomes a quoted, comma-separated list, as Grafana does for SQL.
    """

    def time_filter(match: re.Match) -> str:
        column = match.group(1).strip()
        return f"{column} >= '{since}' AND {column} < '{until}'"

    sql = re.sub(r"\$__timeFilter\(([^)]*)\)", time_filter, sql)

    def variable(match: re.Match) -> str:
        name = match.group(1)
        if name not in variables:
            raise DashboardError(f"dashboards: SQL uses ${name}, which is not given")
        return ", ".join("'" + value.replace("'", "''") + "'" for value in variables[name])

    return re.sub(r"\$(\w+)", variable, sql)


_LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>[a-zA-Z_]\w*)\)$")


def concrete_promql(expr: str, variables: dict[str, str], *, rate_interval: str = "1m") -> str:
    """A query Prometheus itself accepts: variables filled in, ``label_values`` as a selector.

    ``label_values(sel, label)`` is Grafana's, not PromQL; it becomes
    ``count by (label) (sel)``, which returns data exactly when the variable has values.
    """
    expr = expr.strip()
    match = _LABEL_VALUES.match(expr)
    if match:
        selector = match.group("selector") or '{__name__=~".+"}'
        expr = f"count by ({match.group('label')}) ({selector})"
    expr = expr.replace("$__rate_interval", rate_interval).replace("$__interval", "15s")
    expr = expr.replace("$__range", "5m")
    for name, value in sorted(variables.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(f"${{{name}}}", value).replace(f"${name}", value)
    # "$1" in label_replace is PromQL's own; "$name" or "${name}" is a Grafana variable.
    if re.search(r"\$(\{|[A-Za-z_])", expr):
        raise DashboardError(f"dashboards: unresolved variable in {expr!r}")
    return expr


def push(settings: GrafanaSettings, directory: Path = DASHBOARDS_DIR) -> list[str]:
    """Create the folder if needed and upload every dashboard (overwrite); returns their URLs."""
    from grafana_client import GrafanaApi
    from grafana_client.client import GrafanaClientError

    if settings.token is not None:
        credential = settings.token.get_secret_value()
    elif settings.username and settings.password is not None:
        credential = (settings.username, settings.password.get_secret_value())
    else:
        raise DashboardError(
            "dashboards push: set FINSENTRY_GRAFANA_TOKEN, or FINSENTRY_GRAFANA_USERNAME and "
            "FINSENTRY_GRAFANA_PASSWORD"
        )
    dashboards = load_dashboards(directory)
    for path, dashboard in dashboards.items():
        found = problems(dashboard)
        if found:
            raise DashboardError(f"dashboards: {path.name}: " + "; ".join(found))
    api = GrafanaApi.from_url(settings.url, credential=credential, timeout=settings.timeout_seconds)
    folder_uid = re.sub(r"[^A-Za-z0-9_-]", "-", settings.folder)[:40]
    try:
        api.folder.get_folder(folder_uid)
    except GrafanaClientError as exc:
        if getattr(exc, "status_code", None) != 404:
            raise
        api.folder.create_folder(settings.folder, uid=folder_uid)
    urls = []
    for path, dashboard in dashboards.items():
        body = {
            "dashboard": {**dashboard, "id": None},
            "folderUid": folder_uid,
            "overwrite": True,
            "message": f"finsentry dashboards push ({path.name})",
        }
        result = api.dashboard.update_dashboard(body)
        urls.append(f"{settings.url.rstrip('/')}{result.get('url', '/d/' + dashboard['uid'])}")
        log.info("pushed %s", path.name)
    return urls
