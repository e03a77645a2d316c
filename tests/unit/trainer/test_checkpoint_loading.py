"""A checkpoint's training_state.pt sits in the job's output prefix, which a tenant can write:
loading it must never run code, and what the trainer itself saves must still load."""
import io
import random

import numpy as np
import pytest
import torch

from finetune_trainer import checkpoint
from finetune_trainer.outcomes import TrainerFailure

RAN = []


class Planted:
    def __reduce__(self):
        return (RAN.append, ("code from the checkpoint ran",))


class OneBucket:
    """The objects checkpoint.load reads, as S3 would return them."""

    def __init__(self, training_state: bytes):
        from safetensors.torch import save
        self.objects = {"out/checkpoints/step-1/trainable.safetensors": save({"w": torch.zeros(2)}),
                        "out/checkpoints/step-1/training_state.pt": training_state,
                        "out/checkpoints/step-1/state.json": b'{"step": 1}'}

    def get_object(self, Bucket, Key):  # noqa: N803 - boto3's argument names
        return {"Body": io.BytesIO(self.objects[Key])}


def saved(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def test_a_planted_pickle_in_a_checkpoint_is_refused_without_running():
    s3 = OneBucket(saved({"optimizer": Planted(), "scheduler": {}, "rng": {}}))
    with pytest.raises(TrainerFailure, match="holds more than tensors and numbers"):
        checkpoint.load(s3, "s3://bkt/out/checkpoints/step-1", "cpu")
    assert RAN == []


def test_the_trainers_own_training_state_loads_and_restores_every_rng():
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = checkpoint.rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    s3 = OneBucket(saved({"optimizer": {"state": {0: {"step": torch.tensor(4.0)}}, "param_groups": [{"lr": 0.1}]},
                          "scheduler": {"last_epoch": 4}, "rng": state}))
    _, rest, state = checkpoint.load(s3, "s3://bkt/out/checkpoints/step-1", "cpu")
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    checkpoint.set_rng_state(rest["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    assert rest["scheduler"] == {"last_epoch": 4} and state == {"step": 1}
