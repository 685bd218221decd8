"""Alertmanager's webhook payload, and the readable message made from it.

Alertmanager (webhook ``version: 4``) posts one group of alerts per request; a
group is resent on every ``group_interval`` when it changes and on every
``repeat_interval``. The notifier therefore works per alert *state*:
``(fingerprint, status, startsAt)``, see :attr:`AlertmanagerAlert.state`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, ValidationError

#: Longest request body accepted from Alertmanager (bytes).
MAX_PAYLOAD_BYTES = 1_000_000


class InvalidPayload(ValueError):
    """A webhook body that is not an Alertmanager payload; the message says why."""


class AlertmanagerAlert(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    status: str
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: str = Field(alias="startsAt")
    ends_at: str = Field(default="", alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL")
    fingerprint: str

    @property
    def state(self) -> tuple[str, str, str]:
        """One delivery per state: a re-fire (new startsAt) or a resolve is a new state."""
        return (self.fingerprint, self.status, self.starts_at)

    @property
    def subject(self) -> str:
        """``topic Energy``, ``ticker ACME`` or the component of a pipeline alert."""
        labels = self.labels
        if labels.get("dimension") and labels.get("key"):
            return f"{labels['dimension']} {labels['key']}"
        return labels.get("component") or labels.get("instance") or ""


class AlertmanagerPayload(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    version: str = "4"
    receiver: str
    status: str
    alerts: list[AlertmanagerAlert]
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    external_url: str = Field(default="", alias="externalURL")
    group_key: str = Field(default="", alias="groupKey")


def parse_payload(body: bytes) -> AlertmanagerPayload:
    if len(body) > MAX_PAYLOAD_BYTES:
        raise InvalidPayload(f"notify: payload is {len(body)} bytes, limit {MAX_PAYLOAD_BYTES}")
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidPayload(f"notify: payload is not JSON: {exc}") from exc
    try:
        return AlertmanagerPayload.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        raise InvalidPayload(f"notify: not an Alertmanager payload: {where}: {first['msg']}") from exc


def _when(value: str) -> str:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if parsed.year <= 1:  # Alertmanager's zero time for "not resolved yet"
        return ""
    return parsed.strftime("%Y-%m-%d %H:%M:%S UTC")


def silence_url(external_url: str, alert: AlertmanagerAlert) -> str:
    if not external_url:
        return ""
    keep = ("alertname", "dimension", "key", "window", "instance")
    matchers = ",".join(f'{k}="{alert.labels[k]}"' for k in keep if k in alert.labels)
    return f"{external_url.rstrip('/')}/#/silences/new?filter={quote('{' + matchers + '}')}"


@dataclass(frozen=True)
class Notification:
    """What every channel sends: a title line, a plain-text body and the alerts it covers."""

    title: str
    text: str
    receiver: str
    alerts: tuple[AlertmanagerAlert, ...]
    external_url: str = ""
    #: Alert fingerprint -> the articles behind it (``pipeline.notify.context``), as JSON.
    articles: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def as_json(self) -> dict:
        """Body of the generic webhook (documented in docs/alerts.md)."""
        return {
            "version": "finsentry.notification/1",
            "title": self.title,
            "text": self.text,
            "receiver": self.receiver,
            "alerts": [
                {
                    "status": a.status,
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "startsAt": a.starts_at,
                    "endsAt": a.ends_at,
                    "fingerprint": a.fingerprint,
                    "generatorURL": a.generator_url,
                    "silenceURL": silence_url(self.external_url, a),
                    **({"articles": self.articles[a.fingerprint]} if a.fingerprint in self.articles else {}),
                }
                for a in self.alerts
            ],
        }


def _article_lines(articles: list[dict[str, Any]]) -> list[str]:
    lines = [f"  top negative articles ({len(articles)}):"]
    for n, article in enumerate(articles, 1):
        when = _when(article["published_at"])
        lines.append(
            f"   {n}. {article['sentiment_score']:+.2f}  {article['title']}  ({article['source']}, {when})"
        )
        if article.get("phrases"):
            lines.append(f"      why: {'; '.join(article['phrases'])}")
        if article.get("url"):
            lines.append(f"      {article['url']}")
    return lines


def render(
    payload: AlertmanagerPayload,
    alerts: list[AlertmanagerAlert],
    articles: dict[str, list[dict[str, Any]]] | None = None,
) -> Notification:
    """A message a person can act on: what, where, how far off the baseline, and links.

    ``articles`` maps an alert's fingerprint to the articles behind it (JSON of
    ``pipeline.notify.context.ContextArticle``); they are listed under the alert.
    """
    articles = {a.fingerprint: articles[a.fingerprint] for a in alerts if a.fingerprint in (articles or {})}
    firing = [a for a in alerts if a.status == "firing"]
    resolved = [a for a in alerts if a.status != "firing"]
    first = alerts[0]
    name = first.labels.get("alertname", "alert")
    severity = first.labels.get("severity", "")
    subjects = sorted({a.subject for a in alerts if a.subject})
    status = f"FIRING:{len(firing)}" if firing else "RESOLVED"
    if firing and resolved:
        status += f" RESOLVED:{len(resolved)}"
    title = f"[{status}] {name}"
    if severity:
        title += f" ({severity})"
    if subjects:
        title += " - " + ", ".join(subjects)

    lines: list[str] = []
    for alert in alerts:
        lines.append("")
        state = "FIRING" if alert.status == "firing" else "RESOLVED"
        summary = alert.annotations.get("summary") or alert.labels.get("alertname", "")
        lines.append(f"{state}: {summary}")
        if alert.annotations.get("description"):
            lines.append(f"  {alert.annotations['description']}")
        shown = {k: v for k, v in sorted(alert.labels.items()) if k not in ("alertname", "job")}
        lines.append("  labels: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
        since = _when(alert.starts_at)
        until = _when(alert.ends_at) if alert.status != "firing" else ""
        if since:
            lines.append(f"  since: {since}" + (f", resolved: {until}" if until else ""))
        for label, url in (
            ("dashboard", alert.annotations.get("dashboard", "")),
            ("runbook", alert.annotations.get("runbook", "")),
            ("prometheus", alert.generator_url),
            (
                "silence",
                silence_url(payload.external_url, alert) if alert.status == "firing" else "",
            ),
        ):
            if url:
                lines.append(f"  {label}: {url}")
        if articles.get(alert.fingerprint):
            lines.extend(_article_lines(articles[alert.fingerprint]))
    return Notification(
        title=title,
        text="\n".join(lines).strip("\n"),
        receiver=payload.receiver,
        alerts=tuple(alerts),
        external_url=payload.external_url,
        articles=articles,
    )
