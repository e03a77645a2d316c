"""spec.training.maxGradNorm: a positive norm clips, 0 turns clipping off (it must not zero the gradients)."""
import pytest
import torch

from finetune_trainer.train import clip_gradients


def params_with_grads(*grads):
    out = []
    for g in grads:
        p = torch.nn.Parameter(torch.zeros(len(g)))
        p.grad = torch.tensor(g, dtype=torch.float32)
        out.append(p)
    return out


def total_norm(params):
    return float(torch.linalg.vector_norm(torch.cat([p.grad for p in params])))


def test_max_grad_norm_zero_leaves_every_gradient_as_it_is():
    params = params_with_grads([3.0, 4.0], [12.0])
    assert clip_gradients(params, 0) is None
    assert [p.grad.tolist() for p in params] == [[3.0, 4.0], [12.0]]


@pytest.mark.parametrize("max_norm, want", [(1.0, 1.0), (6.5, 6.5), (100.0, 13.0)])
def test_a_positive_max_grad_norm_caps_the_total_norm(max_norm, want):
    params = params_with_grads([3.0, 4.0], [12.0])  # total norm 13
    assert float(clip_gradients(params, max_norm)) == pytest.approx(13.0)
    assert total_norm(params) == pytest.approx(want, rel=1e-4)
