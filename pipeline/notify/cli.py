"""``finsentry notify``: the Alertmanager webhook receiver and notification sender."""

from __future__ import annotations

import logging
import signal
import threading

import typer

log = logging.getLogger(__name__)


def register(app: typer.Typer) -> None:
    @app.command("notify")
    def notify(
        port: int = typer.Option(
            None, help="Port (default FINSENTRY_NOTIFIER_PORT, 8003; 0 = any)."
        ),
        host: str = typer.Option(
            None, help="Address to bind (default FINSENTRY_NOTIFIER_HOST, 127.0.0.1)."
        ),
        point_alertmanager: bool = typer.Option(
            False,
            "--point-alertmanager",
            help="Point the local stack's Alertmanager at this notifier (and reload it).",
        ),
    ) -> None:
        """Receive Alertmanager webhooks on POST /alertmanager and deliver them.

        Channels (on when configured): the console (always, unless
        FINSENTRY_NOTIFIER_CONSOLE=false); FINSENTRY_NOTIFIER_WEBHOOK_URL, signed
        with HMAC-SHA256 when FINSENTRY_NOTIFIER_WEBHOOK_SECRET is set;
        FINSENTRY_NOTIFIER_SLACK_WEBHOOK_URL; email via FINSENTRY_NOTIFIER_SMTP_HOST,
        _SMTP_PORT, _SMTP_STARTTLS, _SMTP_USERNAME, _SMTP_PASSWORD, _EMAIL_FROM and
        _EMAIL_TO (JSON list). FINSENTRY_NOTIFIER_BEARER_TOKEN requires Alertmanager
        to authenticate. Each alert state (fingerprint, status, startsAt) is
        delivered once per channel; failures are retried with backoff. Also
        serves /metrics and /healthz.
        """
        from pipeline.metrics.server import register_scrape_target
        from pipeline.notify.server import NotifierServer
        from pipeline.settings import NotifierSettings, StackSettings

        overrides = {k: v for k, v in {"port": port, "host": host}.items() if v is not None}
        settings = NotifierSettings(**overrides)
        server = NotifierServer(settings)
        target = None
        if settings.register_target:
            target = register_scrape_target(
                StackSettings().prometheus_targets_dir, "notifier", settings.host, server.port
            )
        if point_alertmanager:
            from pipeline.stack.observability import AlertmanagerServer

            AlertmanagerServer(StackSettings()).reload(server.url)
        typer.echo(
            f"notifier: webhook {server.url}  channels: "
            f"{', '.join(server.dispatcher.channels) or 'none'}"
        )
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        server.start()
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        finally:
            server.close()
            if target is not None:
                target.unlink(missing_ok=True)
