"""After an out-of-memory attempt the trainer processes each planned micro-batch in parts: the
same rows, the same step gradient, so the checkpoint of the unsplit run resumes unchanged."""
from __future__ import annotations

import pytest
import torch

from finetune_trainer import batching, data
from finetune_trainer.config import ConfigError, from_dict
from finetune_trainer.loss import TokenLoss, collate


def test_split_rows_keeps_every_row_in_order():
    batch = [[0], [1, 2], [3], [4], [5]]
    assert batching.split_rows(batch, 1) == [batch]
    assert batching.split_rows(batch, 2) == [[[0], [1, 2], [3]], [[4], [5]]]
    assert batching.split_rows(batch, 8) == [[r] for r in batch]  # never an empty part
    assert [r for part in batching.split_rows(batch, 4) for r in part] == batch


JOB = {"kind": "FineTuneJob", "metadata": {"name": "bot", "namespace": "team-a", "uid": "u-1"},
       "spec": {"baseModel": {"name": "smollm2-135m-instruct", "uri": "s3://models/smollm2/"},
                "dataset": {"uri": "s3://data/train.jsonl", "format": "promptCompletion"},
                "output": {"uri": "s3://out/bot/"}}}


def _tiny_model():
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).double()


def _step_gradient(model, parts, examples, packed):
    model.zero_grad(set_to_none=True)
    loss_module = TokenLoss(model)
    batches = [collate(p, examples, 0, packed) for p in parts]
    n = sum(int((b["labels"][:, 1:] != data.IGNORE).sum()) for b in batches)
    total = 0.0
    for b in batches:
        kwargs = {k: b[k] for k in ("attention_mask", "position_ids") if k in b}
        loss_sum, _ = loss_module(b["input_ids"], b["labels"], **kwargs)
        (loss_sum / n).backward()
        total += float(loss_sum)
    return total, torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


@pytest.mark.parametrize("packed", [False, True])
def test_a_split_micro_batch_gives_the_same_loss_and_gradient(packed):
    g = torch.Generator().manual_seed(1)
    examples = []
    for i, n in enumerate((5, 9, 3, 7, 6, 4)):
        ids = torch.randint(1, 64, (n,), generator=g).tolist()
        examples.append(data.Example(ids, [data.IGNORE] * 2 + ids[2:], i + 1))
    rows = [[0, 1], [2, 3], [4], [5]] if packed else [[i] for i in range(6)]
    model = _tiny_model()
    whole_loss, whole_grad = _step_gradient(model, [rows], examples, packed)
    split_loss, split_grad = _step_gradient(model, batching.split_rows(rows, 4), examples, packed)
    assert split_loss == pytest.approx(whole_loss, rel=1e-6)  # the loss is taken in float32
    assert torch.allclose(split_grad, whole_grad, rtol=1e-5, atol=1e-8)


def test_the_split_comes_from_the_environment_and_leaves_the_config_hash_alone(monkeypatch):
    unsplit = from_dict(JOB)
    monkeypatch.setenv("FTO_MICRO_BATCH_SPLIT", "4")
    split = from_dict(JOB)
    assert (unsplit.runtime.micro_batch_split, split.runtime.micro_batch_split) == (1, 4)
    assert split.config_hash == unsplit.config_hash  # the unsplit run's checkpoints resume
    monkeypatch.setenv("FTO_MICRO_BATCH_SPLIT", "0")
    with pytest.raises(ConfigError, match="FTO_MICRO_BATCH_SPLIT"):
        from_dict(JOB)
