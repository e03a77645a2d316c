"""spec.training.precision is honoured: the dtype chosen per (precision, hardware), what each method
loads and autocasts in, the refusal of half precision on CPU (exit 16, before any data), a tiny
model that ends in the planned dtypes, and the effective precision in the manifest."""
from __future__ import annotations

import json

import pytest
import torch

from finetune_api import manifest
from finetune_api.termination import ExitCode
from finetune_trainer import config, model as modelmod, precision
from finetune_trainer.outcomes import TrainerFailure

CPU, GPU_BF16, GPU_OLD = (False, False), (True, True), (True, False)  # (cuda, bf16 supported)


@pytest.mark.parametrize("requested, hardware, expected", [
    ("auto", CPU, "fp32"),
    ("auto", GPU_BF16, "bf16"),
    ("auto", GPU_OLD, "fp16"),
    ("fp32", CPU, "fp32"),
    ("fp32", GPU_BF16, "fp32"),
    ("bf16", GPU_BF16, "bf16"),
    ("fp16", GPU_BF16, "fp16"),
    ("fp16", GPU_OLD, "fp16"),
])
def test_the_effective_precision_for_each_request_and_hardware(requested, hardware, expected):
    assert precision.effective(requested, *hardware) == expected


@pytest.mark.parametrize("requested, hardware, words", [
    ("bf16", CPU, "needs a CUDA GPU"),
    ("fp16", CPU, "needs a CUDA GPU"),
    ("bf16", GPU_OLD, "does not support"),
])
def test_a_half_precision_the_hardware_cannot_run_is_refused_naming_the_field(requested, hardware, words):
    with pytest.raises(TrainerFailure) as err:
        precision.effective(requested, *hardware)
    assert err.value.code == ExitCode.UNSUPPORTED_HARDWARE
    assert "spec.training.precision" in err.value.message and words in err.value.message


@pytest.mark.parametrize("effective, method, qlora_compute, load, autocast, scaling", [
    ("fp32", "lora", None, "fp32", None, False),
    ("bf16", "lora", None, "bf16", "bf16", False),   # half base, fp32 adapters (PEFT), autocast
    ("fp16", "lora", None, "fp16", "fp16", True),    # fp16 also scales the loss
    ("fp32", "full", None, "fp32", None, False),
    ("bf16", "full", None, "fp32", "bf16", False),   # fp32 master weights under autocast
    ("fp16", "full", None, "fp32", "fp16", True),
    ("bf16", "qlora", "bfloat16", "bf16", "bf16", False),
    ("bf16", "qlora", "float16", "fp16", "bf16", False),  # quantization.computeDtype sets the 16-bit weights
    ("fp32", "qlora", "bfloat16", "bf16", None, False),
])
def test_what_each_method_loads_and_autocasts_in(effective, method, qlora_compute, load, autocast, scaling):
    plan = precision.plan_for(effective, method, qlora_compute)
    assert (plan.precision, plan.load, plan.autocast, plan.loss_scaling) == (effective, load, autocast, scaling)


def job_config(tmp_path, method="lora", requested="auto", folder=None) -> config.TrainerConfig:
    spec = {"baseModel": {"name": "tiny", "uri": "s3://models/tiny"},
            "dataset": {"uri": "s3://data/train.jsonl", "format": "text"},
            "method": {"type": method}, "training": {"precision": requested, "maxSteps": 1},
            "output": {"uri": "s3://out/job"}}
    return config.from_dict({"job": {"namespace": "team", "name": "job", "uid": "u1"}, "spec": spec,
                             "runtime": {"baseModelPath": str(folder or tmp_path),
                                         "terminationMessagePath": str(tmp_path / "termination-log")}})


@pytest.mark.parametrize("requested", ["bf16", "fp16"])
def test_the_recipe_refuses_half_precision_on_cpu_before_touching_s3_or_data(tmp_path, monkeypatch, requested):
    from finetune_trainer.train import Recipe
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    recipe = Recipe(job_config(tmp_path, requested=requested))
    monkeypatch.setattr(recipe, "_setup_s3", lambda: pytest.fail("S3 was set up before the precision check"))
    with pytest.raises(TrainerFailure) as err:
        recipe.run()
    assert err.value.code == ExitCode.UNSUPPORTED_HARDWARE and "spec.training.precision" in err.value.message


def test_the_entrypoint_exits_16_with_a_termination_message_naming_the_field(tmp_path, monkeypatch):
    from finetune_trainer.__main__ import main
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = job_config(tmp_path, requested="bf16")
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"job": {"namespace": "team", "name": "job", "uid": "u1"}, "spec": cfg.spec,
                                "runtime": {"terminationMessagePath": str(tmp_path / "termination-log")}}))
    assert main(["train", "--config", str(path)]) == 16
    message = json.loads((tmp_path / "termination-log").read_text())
    assert message["reason"] == "UnsupportedHardware" and "spec.training.precision" in message["message"]


def test_the_validate_pod_does_not_check_precision(tmp_path, monkeypatch):
    """The validate-only pod runs on CPU for a GPU job: a bf16 spec must not fail there."""
    from finetune_trainer.train import Recipe
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    Recipe(job_config(tmp_path, requested="bf16"))  # no TrainerFailure: the check is in run()


# --- a tiny model, loaded as a run loads it -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    from tokenizers import Tokenizer, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    folder = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                 num_key_value_heads=1, vocab_size=64, tie_word_embeddings=False)).save_pretrained(folder)
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {f"t{i}": i for i in range(3, 64)}
    PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")), unk_token="<unk>",
                            bos_token="<s>", eos_token="</s>").save_pretrained(folder)
    return folder


def weight_dtypes(model) -> tuple[set, set]:
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
    trained = {p.dtype for p in model.parameters() if p.requires_grad}
    return frozen, trained


@pytest.mark.parametrize("method, effective, frozen, trained", [
    ("lora", "fp32", {torch.float32}, {torch.float32}),
    ("lora", "bf16", {torch.bfloat16}, {torch.float32}),  # half base, fp32 adapter (the optimiser's master copy)
    ("full", "bf16", set(), {torch.float32}),             # every weight trained, kept fp32
])
def test_a_tiny_model_loads_in_the_planned_dtypes(tmp_path, tiny_folder, method, effective, frozen, trained):
    cfg = job_config(tmp_path, method=method, folder=tiny_folder)
    plan = precision.plan_for(effective, method)  # a bf16 plan on CPU: only the loading is under test here
    model, _, _ = modelmod.load(cfg, tiny_folder, torch.device("cpu"), plan)
    assert weight_dtypes(model) == (frozen, trained)


def test_under_the_plans_autocast_a_full_bf16_step_computes_in_bf16_and_grads_stay_fp32(tmp_path, tiny_folder):
    cfg = job_config(tmp_path, method="full", folder=tiny_folder)
    plan = precision.plan_for("bf16", "full")
    model, _, _ = modelmod.load(cfg, tiny_folder, torch.device("cpu"), plan)
    ids = torch.tensor([[3, 4, 5, 6]])
    with plan.autocast_context(torch.device("cpu")):
        out = model(input_ids=ids, labels=ids)
    assert out.logits.dtype == torch.bfloat16
    out.loss.backward()
    assert {p.grad.dtype for p in model.parameters() if p.grad is not None} == {torch.float32}


def test_auto_on_cpu_loads_fp32_through_the_default_plan(tmp_path, tiny_folder, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = job_config(tmp_path, folder=tiny_folder)
    model, _, _ = modelmod.load(cfg, tiny_folder, torch.device("cpu"))
    assert weight_dtypes(model) == ({torch.float32}, {torch.float32})
    with pytest.raises(TrainerFailure) as err:
        modelmod.load(job_config(tmp_path, requested="bf16", folder=tiny_folder), tiny_folder, torch.device("cpu"))
    assert err.value.code == ExitCode.UNSUPPORTED_HARDWARE


def test_the_scaler_is_a_no_op_unless_fp16():
    assert not precision.plan_for("bf16", "lora").scaler(torch.device("cpu")).is_enabled()
    assert not precision.plan_for("fp32", "lora").scaler(torch.device("cpu")).is_enabled()


def test_the_manifest_records_the_effective_precision():
    doc = manifest.build(job={}, method="lora", model_type="llama", lora=None, files=[], base_model={}, dataset={},
                         dataset_stats={}, config_hash="", trainer_version="", trainer_image="", metrics={}, steps=1,
                         tokens=1, wall_seconds=0.0, created_at="", precision="bf16")
    assert json.loads(manifest.encode(doc))["precision"] == "bf16"
