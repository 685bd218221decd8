"""Label Studio export: tasks pre-filled with the model's predictions.

Import the JSON into a Label Studio project whose labelling interface is
:func:`labeling_config` (``finsentry labels export --config-out FILE`` writes
it); analysts correct the pre-filled choices, and Label Studio's JSON export
comes back through ``finsentry labels import`` (:mod:`models.feedback.intake`).
Each task's ``data.article_id`` carries the finsentry id through the round trip.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

from models.feedback.queue import Candidate
from models.feedback.vocab import TASKS, class_names


def labeling_config(tasks: Sequence[str] = TASKS) -> str:
    """The Label Studio labelling interface XML: the text and one choice list per task."""
    lines = ["<View>", '  <Text name="text" value="$text"/>']
    for task in tasks:
        lines.append(f'  <Header value="{task.capitalize()}"/>')
        lines.append(
            f'  <Choices name="{task}" toName="text" choice="single" showInline="true"'
            ' required="false">'
        )
        lines.extend(f"    <Choice value={quoteattr(name)}/>" for name in class_names(task))
        lines.append("  </Choices>")
    lines.append("</View>")
    return "\n".join(lines) + "\n"


def export_tasks(
    candidates: Sequence[Candidate], tasks: Sequence[str] = TASKS
) -> list[dict[str, Any]]:
    """One Label Studio task per article, with the model's choice per task as a prediction."""
    out = []
    for item in candidates:
        result = [
            {
                "from_name": task,
                "to_name": "text",
                "type": "choices",
                "value": {"choices": [item.scores.label(task)]},
                "score": round(item.scores.score(task), 6),
            }
            for task in tasks
        ]
        out.append(
            {
                "data": {
                    "article_id": item.article.article_id,
                    "text": item.article.text,
                    "source": item.article.source,
                },
                "predictions": [
                    {
                        "model_version": item.scores.model_version,
                        "score": round(min(item.scores.score(t) for t in tasks), 6),
                        "result": result,
                    }
                ],
            }
        )
    return out
