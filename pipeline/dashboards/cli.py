"""``finsentry dashboards check | push``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    dashboards = typer.Typer(
        help="The Grafana dashboards in dashboards/: check them, upload them.", no_args_is_help=True
    )

    @dashboards.command("check")
    def check() -> None:
        """Validate every dashboard (JSON, panels, provisioned Prometheus datasource)."""
        from pipeline.dashboards.grafana import load_dashboards, problems

        bad = 0
        for path, dashboard in load_dashboards().items():
            found = problems(dashboard)
            bad += len(found)
            typer.echo(f"{path.name}: {'ok' if not found else '; '.join(found)}")
        if bad:
            raise typer.Exit(1)

    @dashboards.command("push")
    def push(
        url: str = typer.Option(None, help="Grafana base URL (default FINSENTRY_GRAFANA_URL)."),
        folder: str = typer.Option(
            None, help="Folder title (default FINSENTRY_GRAFANA_FOLDER, finsentry)."
        ),
    ) -> None:
        """Upload every dashboard to Grafana with grafana-client (overwriting same uid).

        Credentials from the environment: FINSENTRY_GRAFANA_TOKEN (service account
        token), or FINSENTRY_GRAFANA_USERNAME and FINSENTRY_GRAFANA_PASSWORD.
        """
        from pipeline.dashboards.grafana import DashboardError
        from pipeline.dashboards.grafana import push as push_dashboards
        from pipeline.settings import GrafanaSettings

        overrides = {k: v for k, v in {"url": url, "folder": folder}.items() if v is not None}
        try:
            urls = push_dashboards(GrafanaSettings(**overrides))
        except DashboardError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from exc
        for pushed in urls:
            typer.echo(pushed)

    app.add_typer(dashboards, name="dashboards")
