"""``finsentry explain``: the words that pushed the model's sentiment and topic."""

from __future__ import annotations

import json

import typer


def format_explanation(explanation) -> str:
    lines = [
        f"model {explanation.model_version} ({explanation.method}, "
        f"{explanation.sequences} sequences, {explanation.seconds:.2f}s)"
    ]
    for name, head in (("sentiment", explanation.sentiment), ("topic", explanation.topic)):
        lines.append(f"{name}: {head.label} (p={head.probability:.2f})")
        for word in head.words:
            lines.append(f"  {word.weight:+.3f}  {word.word}")
        if head.phrases:
            lines.append(f"  phrases: {'; '.join(head.phrases)}")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command("explain")
    def explain(
        text: str = typer.Argument(None, help="The text to explain (a headline, title + lead)."),
        article_id: str = typer.Option(
            None, "--id", help="Explain a stored article (FINSENTRY_ARTICLES_DATABASE_URL)."
        ),
        top_k: int = typer.Option(5, min=1, help="Words shown per head."),
        as_json: bool = typer.Option(False, "--json", help="Print the explanation as JSON."),
    ) -> None:
        """Show which words pushed the predicted sentiment and topic, by occlusion.

        Each word is removed in turn and the text re-scored by the registry's
        current model (FINSENTRY_MODEL_*); a word's weight is how much the
        predicted class's probability drops without it. With --id the article's
        title is explained and the result kept in the article store.
        """
        if (text is None) == (article_id is None):
            typer.echo("explain: give either TEXT or --id ID", err=True)
            raise typer.Exit(2)
        from models.explain import Explainer, ExplainError
        from models.inference import EngineError
        from models.registry import RegistryError

        store = stored = None
        if article_id is not None:
            from pipeline.articles.store import ArticleStore
            from pipeline.settings import ArticleStoreSettings

            store = ArticleStore(ArticleStoreSettings().database_url.get_secret_value())
            stored = store.get(article_id)
            if stored is None:
                typer.echo(f"explain: no article {article_id!r} in the article store", err=True)
                raise typer.Exit(2)
            text = stored.title
        try:
            explainer = Explainer.from_settings(top_k=top_k)
            explanation = explainer.explain(text)
        except (RegistryError, EngineError, ExplainError) as exc:
            typer.echo(f"explain: {exc}", err=True)
            raise typer.Exit(2) from exc
        if store is not None:
            store.set_explanation(article_id, explanation.to_json())
            store.close()
        if as_json:
            typer.echo(json.dumps(explanation.to_json(), sort_keys=True))
        else:
            typer.echo(format_explanation(explanation))
