"""Which checkpoint a relaunch resumes from is the operator's record, not the output prefix's:
whoever can write the prefix can replace a checkpoint's files or add a newer state.json, and
neither is loaded."""
from __future__ import annotations

import io
import json

import pytest
import torch

from finetune_api import resume
from finetune_trainer import checkpoint, config as configmod
from finetune_trainer.outcomes import ExitCode, TrainerFailure

OUT = "s3://bkt/out/bot"
JOB = "team-a/bot/uid-1"
RAN = []


class Planted:
    def __reduce__(self):
        return (RAN.append, ("code from the checkpoint ran",))


class MemoryS3:
    """The S3 calls checkpoint.py makes, on a dict; a missing key fails as S3 does (NoSuchKey)."""

    def __init__(self):
        self.objects: dict = {}

    def upload_file(self, path, bucket, key):
        with open(path, "rb") as f:
            self.objects[(bucket, key)] = f.read()

    def put_object(self, Bucket, Key, Body):  # noqa: N803 - boto3's argument names
        self.objects[(Bucket, Key)] = Body

    def get_object(self, Bucket, Key):  # noqa: N803
        from botocore.exceptions import ClientError
        if (Bucket, Key) not in self.objects:
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "gone"}}, "GetObject")
        return {"Body": io.BytesIO(self.objects[(Bucket, Key)])}

    def get_paginator(self, _name):
        store = self

        class Pages:
            def paginate(self, Bucket, Prefix, Delimiter=None):  # noqa: N803
                keys = [k for b, k in store.objects if b == Bucket and k.startswith(Prefix)]
                subs = sorted({Prefix + k[len(Prefix):].split("/")[0] + "/" for k in keys if "/" in k[len(Prefix):]})
                yield {"CommonPrefixes": [{"Prefix": p} for p in subs], "Contents": [{"Key": k} for k in keys]}
        return Pages()

    def delete_objects(self, Bucket, Delete):  # noqa: N803
        for o in Delete["Objects"]:
            self.objects.pop((Bucket, o["Key"]), None)

    def key(self, uri, name):
        bucket, prefix = uri[len("s3://"):].split("/", 1)
        return bucket, f"{prefix}/{name}"


def save(s3, step, job=JOB, weight=0.0):
    return checkpoint.save(s3, OUT, step, {"epoch": 0, "batchIndex": step}, {"w": torch.full((2,), weight)},
                           {"state": {}, "param_groups": []}, {"last_epoch": step},
                           {"job": job, "configHash": "sha256:c"})


def config(policy=None, pointer=None, attempt=2, monkeypatch=None):
    runtime = {"resumePolicy": policy} if policy else {}
    if pointer:
        monkeypatch.setenv(resume.RESUME_ENV, resume.encode(pointer))
    else:
        monkeypatch.delenv(resume.RESUME_ENV, raising=False)
    monkeypatch.setenv("FTO_TRAINER_ATTEMPT", str(attempt))
    return configmod.from_dict({"job": {"namespace": "team-a", "name": "bot", "uid": "uid-1"}, "runtime": runtime,
                                "spec": {"baseModel": {"name": "m", "uri": "s3://bkt/base"},
                                         "dataset": {"uri": "s3://bkt/d.jsonl", "format": "chat"},
                                         "output": {"uri": OUT + "/"}}})


def test_a_saved_checkpoint_loads_back_under_the_digest_save_returned():
    s3 = MemoryS3()
    uri, digest = save(s3, 4, weight=1.5)
    assert uri == f"{OUT}/checkpoints/step-00000004" and resume.is_digest(digest)
    trainable, rest, state = checkpoint.load(s3, uri, "cpu", digest)
    assert torch.equal(trainable["w"], torch.full((2,), 1.5))
    assert rest["scheduler"] == {"last_epoch": 4} and state["step"] == 4 and state["job"] == JOB


def _replace_training_state(s3, uri):
    buf = io.BytesIO()
    torch.save({"optimizer": Planted(), "scheduler": {}, "rng": {}}, buf)
    s3.put_object(*s3.key(uri, "training_state.pt"), buf.getvalue())


def _replace_weights(s3, uri):
    from safetensors.torch import save as save_safetensors
    s3.put_object(*s3.key(uri, "trainable.safetensors"), save_safetensors({"w": torch.full((2,), 9.0)}))


def _rewrite_state(s3, uri):
    s3.put_object(*s3.key(uri, "state.json"), json.dumps({"step": 4, "epoch": 0, "batchIndex": 0,
                                                           "job": JOB}).encode())


def _delete_weights(s3, uri):
    s3.objects.pop(s3.key(uri, "trainable.safetensors"))


@pytest.mark.parametrize("tamper,why", [
    (_replace_training_state, "digest is sha256:"),
    (_replace_weights, "digest is sha256:"),
    (_rewrite_state, "digest is sha256:"),
    (_delete_weights, "trainable.safetensors is missing"),
])
def test_a_checkpoint_changed_after_it_was_written_is_refused_before_anything_is_unpickled(tamper, why):
    s3 = MemoryS3()
    uri, digest = save(s3, 4)
    tamper(s3, uri)
    with pytest.raises(TrainerFailure) as err:
        checkpoint.load(s3, uri, "cpu", digest)
    assert err.value.code == ExitCode.CHECKPOINT_MISMATCH and err.value.reason == "CheckpointMismatch"
    assert why in err.value.message and uri in err.value.message and RAN == []


def test_a_redirecting_state_json_is_ignored_under_the_recorded_pointer(monkeypatch):
    s3 = MemoryS3()
    uri, digest = save(s3, 4)
    planted, _ = save(s3, 99, weight=7.0)  # newer, claims this job: what LATEST would pick
    cfg = config(pointer={"step": 4, "uri": uri, "digest": digest}, monkeypatch=monkeypatch)
    assert cfg.runtime.resume_policy == resume.RECORDED
    assert checkpoint.resume_point(s3, cfg) == (uri, digest)
    assert checkpoint.resume_point(s3, config(policy="latest", monkeypatch=monkeypatch)) == (planted, None)


def test_without_a_recorded_checkpoint_the_operators_config_starts_from_step_0(monkeypatch):
    s3 = MemoryS3()
    save(s3, 4)
    assert checkpoint.resume_point(s3, config(policy="recorded", monkeypatch=monkeypatch)) is None


@pytest.mark.parametrize("pointer,problem", [
    ({"step": 4, "uri": "s3://other-team/out/checkpoints/step-00000004", "digest": "sha256:" + "a" * 64},
     "is not 's3://bkt/out/bot/checkpoints/step-00000004'"),
    ({"step": 4, "uri": f"{OUT}/checkpoints/step-00000005", "digest": "sha256:" + "a" * 64}, "is not"),
    ({"step": 4, "uri": f"{OUT}/checkpoints/step-00000004", "digest": "md5:abc"}, "digest (sha256:<64 hex>)"),
])
def test_a_resume_pointer_outside_the_jobs_checkpoints_is_a_config_error(pointer, problem, monkeypatch):
    with pytest.raises(configmod.ConfigError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        config(pointer=pointer, monkeypatch=monkeypatch)


def test_an_unknown_resume_policy_is_a_config_error(monkeypatch):
    with pytest.raises(configmod.ConfigError, match="resumePolicy"):
        config(policy="newest", monkeypatch=monkeypatch)


def test_a_state_json_the_trainer_did_not_write_is_skipped_when_listing():
    s3 = MemoryS3()
    uri, _ = save(s3, 4)
    s3.put_object("bkt", "out/bot/checkpoints/step-00000007/state.json", b"not json")
    s3.put_object("bkt", "out/bot/checkpoints/step-00000008/state.json", b'{"step": "8"}')
    assert [u for _, u, _ in checkpoint.list_valid(s3, OUT)] == [uri]
