import torch
from torch.nn import functional as F

from models.labels import IGNORE_INDEX
from models.model import multitask_loss

N = IGNORE_INDEX


def _outputs(seed=0, batch=6):
    g = torch.Generator().manual_seed(seed)
    return {
        "topic_logits": torch.randn(batch, 20, generator=g, requires_grad=True),
        "sentiment_logits": torch.randn(batch, 3, generator=g, requires_grad=True),
    }


def test_each_task_is_averaged_over_its_own_labelled_examples():
    out = _outputs()
    topic = torch.tensor([3, 7, N, N, 19, N])
    sentiment = torch.tensor([N, N, 0, 2, N, 1])
    total, parts = multitask_loss(out, topic, sentiment)
    expected_topic = F.cross_entropy(out["topic_logits"][[0, 1, 4]], topic[[0, 1, 4]])
    expected_sent = F.cross_entropy(out["sentiment_logits"][[2, 3, 5]], sentiment[[2, 3, 5]])
    torch.testing.assert_close(total, expected_topic + expected_sent)
    assert abs(parts["topic"] - expected_topic.item()) < 1e-6


def test_masked_examples_get_no_gradient_from_the_other_head():
    out = _outputs()
    topic = torch.tensor([3, 7, N, N, 19, N])
    sentiment = torch.tensor([N, N, 0, 2, N, 1])
    total, _ = multitask_loss(out, topic, sentiment)
    total.backward()
    assert torch.all(out["topic_logits"].grad[[2, 3, 5]] == 0)
    assert torch.all(out["sentiment_logits"].grad[[0, 1, 4]] == 0)
    assert torch.any(out["topic_logits"].grad[[0, 1, 4]] != 0)


def test_batch_with_one_task_only_is_finite_and_ignores_the_other():
    out = _outputs()
    topic = torch.full((6,), N)
    sentiment = torch.tensor([0, 1, 2, 0, 1, 2])
    total, parts = multitask_loss(out, topic, sentiment)
    assert torch.isfinite(total)
    assert parts["topic"] == 0.0
    torch.testing.assert_close(total, F.cross_entropy(out["sentiment_logits"], sentiment))


def test_task_weights_and_label_smoothing():
    out = _outputs()
    topic = torch.tensor([1, 2, 3, N, N, N])
    sentiment = torch.tensor([N, N, N, 0, 1, 2])
    plain, _ = multitask_loss(out, topic, sentiment)
    weighted, parts = multitask_loss(out, topic, sentiment, topic_weight=0.0)
    torch.testing.assert_close(weighted, torch.tensor(parts["sentiment"]))
    smoothed, _ = multitask_loss(out, topic, sentiment, label_smoothing=0.1)
    assert smoothed.item() != plain.item()
