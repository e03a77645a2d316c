"""The GPU check: our training step vs transformers Trainer + PEFT on an 8B-shaped Llama, one GPU.

For one machine with no network whose Python has torch, transformers, peft, accelerate,
safetensors and tokenizers (bench/gpu_check.sh brings this project's source and, when carried,
a bitsandbytes wheel). Nothing is downloaded: the model is a Llama with the 8B shape (hidden
4096, 32 layers, 32 heads, 8 KV heads, intermediate 14336, vocab 128256) and random weights,
built in bf16 on the GPU, saved once to a local folder and loaded from there by the trainer's
own loader (model.load: precision, 4-bit quantisation, LoRA), so QLoRA's bitsandbytes path
runs as a job would run it. Data: random token ids, variable-length examples with a masked
prompt, packed by batching.plan into rows of SEQ tokens and collated by loss.collate; both
sides train on exactly those tensors.

Per side: real tokens/s (median over steps after warm-up, with min/max/quartiles), MFU against a
bf16 matmul peak measured in this run, peak GPU memory, and ours/baseline. Prints one JSON
document (and writes it to --out after every phase, so a run cut short still reports).

    bash bench/gpu_check.sh            # on the GPU machine
    bash bench/gpu_check.sh --smoke    # CPU, tiny shapes, same code path (a unit test runs it)
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO / "api", REPO / "trainer_image"):  # the GPU machine has no install of this project
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

SHAPES = {
    "8b": {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
           "intermediate_size": 14336, "vocab_size": 128256},
    "smoke": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "intermediate_size": 128, "vocab_size": 512},
}
TARGETS = {"bf16_lora_mfu_min": 0.40, "bf16_lora_ratio_min": 1.3, "qlora_peak_gib_max": 12.0}
# Per side: rows of SEQ tokens per step, warm-up steps, timed steps, gradient checkpointing.
RUNS = {
    "gpu": {"seq": 2048, "lora": {"rows": 2, "gc": False}, "qlora": {"rows": 1, "gc": True}, "warmup": 2, "steps": 6},
    "smoke": {"seq": 128, "lora": {"rows": 2, "gc": False}, "qlora": {"rows": 1, "gc": True}, "warmup": 1, "steps": 2},
}
LORA = {"r": 16, "alpha": 32, "dropout": 0.0}
GIB = 1024 ** 3


# --- the machine ---------------------------------------------------------------------------------
def versions() -> dict:
    import peft
    import transformers
    out = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
           "peft": peft.__version__, "cuda": torch.version.cuda,
           "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        import accelerate
        out["accelerate"] = accelerate.__version__
    except ImportError:
        out["accelerate"] = None
    return out


def bitsandbytes_status() -> tuple[bool, str]:
    try:
        import bitsandbytes
    except Exception as err:  # noqa: BLE001 - any failure to import means the QLoRA part cannot run
        return False, f"skipped: bitsandbytes not importable ({type(err).__name__}: {str(err)[:160]})"
    return True, f"bitsandbytes {bitsandbytes.__version__}"


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device, smoke: bool) -> dict:
    """TFLOP/s of large square matmuls (bf16 on GPU, fp32 on CPU): the best of a few timed rounds."""
    n, reps, dtype = (256, 3, torch.float32) if smoke else (8192, 20, torch.bfloat16)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(5):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.matmul(a, b)
        sync(device)
        best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - t0))
    return {"tflops": round(best / 1e12, 4), "flops_per_s": best, "dtype": str(dtype).replace("torch.", ""), "n": n}


# --- the model and the data ------------------------------------------------------------------------
def write_model(folder: Path, shape: dict, device, dtype, seq: int) -> int:
    """A Llama of this shape with random weights, built in place in `dtype` and saved with a tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    config = LlamaConfig(**shape, max_position_embeddings=max(seq, 4096), tie_word_embeddings=False,
                         bos_token_id=1, eos_token_id=2, pad_token_id=3)
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    n_params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(folder)
    del model
    special = ["<unk>", "<s>", "</s>", "<pad>"]
    vocab = {tok: i for i, tok in enumerate(special)} | {f"t{i}": i for i in range(len(special), shape["vocab_size"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                            pad_token="<pad>").save_pretrained(folder)
    free(device)
    return n_params


def examples(vocab: int, seq: int, count: int, seed: int = 0) -> list:
    """Variable-length examples (an eighth of SEQ to three quarters), the first 30 % of each a masked prompt."""
    from finetune_trainer import data
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        n = rng.randint(seq // 8, 3 * seq // 4)
        ids = [rng.randrange(4, vocab) for _ in range(n)]
        prompt = int(n * 0.3)
        out.append(data.Example(ids, [data.IGNORE] * prompt + ids[prompt:], 0))
    return out


def batches(exs: list, rows: int, seq: int, count: int) -> list:
    """`count` micro-batches of `rows` packed rows each, as the recipe plans and collates them."""
    from finetune_trainer import batching
    from finetune_trainer.loss import collate
    plan = batching.plan([len(e) for e in exs], rows, True, seq, seed=0, epoch=0)
    plan = [b for b in plan if len(b) == rows]
    if len(plan) < count:
        raise RuntimeError(f"only {len(plan)} full batches of {rows} rows from {len(exs)} examples")
    return [collate(b, exs, 3, packed=True) | {"doc_lengths": [len(exs[i]) for row in b for i in row]}
            for b in plan[:count]]


def flops(batch: dict, shape: dict) -> float:
    """Model FLOPs of one LoRA step: frozen linears forward + input-gradient backward (4 per weight per
    token, head included, no weight gradients), causal attention within each packed example
    (forward 4*h per context token per layer, backward twice that). Recomputation is not counted."""
    h, i, layers, v = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"], shape["vocab_size"]
    kv = h * shape["num_key_value_heads"] // shape["num_attention_heads"]
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * i
    tokens = sum(batch["doc_lengths"])
    causal_pairs = sum(n * (n + 1) / 2 for n in batch["doc_lengths"])
    return 4 * tokens * (layers * per_layer + h * v) + 12 * layers * h * causal_pairs


def gib_allocated(device):
    """GiB allocated now, and the peak counter restarted from here (None on CPU)."""
    if device.type != "cuda":
        return None
    torch.cuda.reset_peak_memory_stats(device)
    return round(torch.cuda.memory_allocated(device) / GIB, 2)


def free(device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def trainer_config(method: str, precision: str, folder: Path, gc_on: bool, rows: int, seq: int):
    from finetune_trainer import config
    return config.from_dict({
        "job": {"namespace": "bench", "name": "gpu-check", "uid": "gpu-check"},
        "spec": {"baseModel": {"name": "llama-8b-shape-random", "uri": "s3://bench/base"},
                 "dataset": {"uri": "s3://bench/train.jsonl", "format": "text"},
                 "method": {"type": method, "lora": dict(LORA)},
                 "training": {"precision": precision, "maxSteps": 8, "batchSize": rows, "maxSeqLength": seq,
                              "packing": True, "gradientCheckpointing": gc_on, "lrScheduler": "constant"},
                 "output": {"uri": "s3://bench/out"}},
        "runtime": {"baseModelPath": str(folder)}})


# --- the two sides ---------------------------------------------------------------------------------
def summary(tokens: list, times: list, step_flops: list, peak_tflops: float, losses: list, device,
            resident=None) -> dict:
    """Tokens/s and MFU over the timed steps (warm-up already dropped); resident: GiB allocated before the side."""
    rates = [n / t for n, t in zip(tokens, times)]
    mfus = [f / t / (peak_tflops * 1e12) for f, t in zip(step_flops, times)]
    q = statistics.quantiles(rates, n=4, method="inclusive") if len(rates) > 1 else [rates[0]] * 3
    return {"tokens_per_s": {"median": round(statistics.median(rates), 1), "min": round(min(rates), 1),
                             "max": round(max(rates), 1), "p25": round(q[0], 1), "p75": round(q[2], 1)},
            "mfu": round(statistics.median(mfus), 4), "step_s_median": round(statistics.median(times), 4),
            "steps": len(rates), "tokens_per_step": round(statistics.mean(tokens)),
            "loss_first": round(losses[0], 4), "loss_last": round(losses[-1], 4),
            "peak_gpu_gib": round(torch.cuda.max_memory_allocated(device) / GIB, 2) if device.type == "cuda" else None,
            "resident_gib_at_start": resident}


def dtypes(model) -> dict:
    """The dtypes the weights ended in: frozen (base) and trained (adapter)."""
    frozen = {str(p.dtype).replace("torch.", "") for p in model.parameters() if not p.requires_grad}
    trained = {str(p.dtype).replace("torch.", "") for p in model.parameters() if p.requires_grad}
    return {"frozen": sorted(frozen), "trained": sorted(trained)}


def ours(cfg, folder: Path, bs: list, warmup: int, shape: dict, peak: float) -> tuple:
    """The recipe's step (train.py's loop body): model.load, TokenLoss, parallel.wrap, autocast and scaler
    from the precision plan, clip_gradients, AdamW. Returns (the model, its summary)."""
    from finetune_trainer import data, model as modelmod, parallel
    from finetune_trainer.loss import TokenLoss
    from finetune_trainer.train import Distributed, clip_gradients
    dist = Distributed()
    device = dist.device
    resident = gib_allocated(device)
    plan = modelmod.hardware_plan(cfg, device)
    model, _, _ = modelmod.load(cfg, folder, device, plan)
    loss_module = TokenLoss(model)
    trainer = parallel.wrap(loss_module, model, cfg.training["distributedStrategy"], dist)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.training["learningRate"], weight_decay=cfg.training["weightDecay"])
    scaler = plan.scaler(device)
    trainer.train()
    tokens, times, step_flops, losses = [], [], [], []
    for i, b in enumerate(bs):
        sync(device)
        t0 = time.perf_counter()
        n_trained = max(1, int((b["labels"][:, 1:] != data.IGNORE).sum()))
        kwargs = {k: b[k].to(device) for k in ("attention_mask", "position_ids") if k in b}
        with plan.autocast_context(device):
            loss_sum, _ = trainer(b["input_ids"].to(device), b["labels"].to(device), **kwargs)
        scaler.scale(loss_sum / n_trained).backward()
        scaler.unscale_(optimizer)
        clip_gradients(params, cfg.training["maxGradNorm"])
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        loss = float(loss_sum.detach()) / n_trained
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
            tokens.append(b["tokens"])
            step_flops.append(flops(b, shape))
            losses.append(loss)
    result = summary(tokens, times, step_flops, peak, losses, device, resident) | {"precision": plan.precision,
                                                                         "weights": dtypes(model)}
    del optimizer, trainer, loss_module, params
    return model, result


def baseline(model, bs: list, warmup: int, shape: dict, peak: float, plan, gc_on: bool, device) -> dict:
    """transformers Trainer + PEFT (LoRA of the same rank and targets) on the same base and micro-batches."""
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from finetune_trainer.architectures import default_target_modules
    resident = gib_allocated(device)
    model = get_peft_model(model, LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                                             target_modules=default_target_modules("llama"), task_type="CAUSAL_LM"))
    fed, times, losses = [], [], []

    def collate(features):
        b = features[0]  # one item is one of our micro-batches (rows already packed and padded)
        fed.append(b)
        return {k: b[k] for k in ("input_ids", "labels", "position_ids")}

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            sync(device)
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            sync(device)
            times.append(time.perf_counter() - self.t0)

    class Losses(Trainer):
        def _get_train_sampler(self, *args, **kwargs):  # the batches in our order, so both sides see the same steps
            return torch.utils.data.SequentialSampler(self.train_dataset)

        def compute_loss(self, model, inputs, *a, **k):
            loss = super().compute_loss(model, inputs, *a, **k)
            losses.append(float((loss[0] if isinstance(loss, tuple) else loss).detach()))
            return loss

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=1, max_steps=len(bs), learning_rate=2e-4,
            lr_scheduler_type="constant", max_grad_norm=1.0, optim="adamw_torch", report_to=[], save_strategy="no",
            logging_strategy="no", dataloader_num_workers=0, use_cpu=device.type != "cuda", seed=0,
            remove_unused_columns=False, disable_tqdm=True, bf16=plan.autocast == "bf16",
            fp16=plan.autocast == "fp16", gradient_checkpointing=gc_on,
            gradient_checkpointing_kwargs={"use_reentrant": False} if gc_on else None)
        Losses(model=model, args=args, train_dataset=bs, data_collator=collate, callbacks=[Timer()]).train()
    pairs = list(zip(fed, times, losses))[warmup:]  # the collator runs just before each step's timing starts
    result = summary([b["tokens"] for b, _, _ in pairs], [t for _, t, _ in pairs], [flops(b, shape) for b, _, _ in pairs],
                     peak, [loss for _, _, loss in pairs], device, resident) | {"weights": dtypes(model)}
    model.unload()
    return result


def side_by_side(method: str, precision: str, folder: Path, run: dict, shape: dict, peak: float, exs: list) -> dict:
    from finetune_trainer import model as modelmod
    side = run[method]
    cfg = trainer_config(method, precision, folder, side["gc"], side["rows"], run["seq"])
    bs = batches(exs, side["rows"], run["seq"], run["warmup"] + run["steps"])
    model, mine = ours(cfg, folder, bs, run["warmup"], shape, peak)
    device = next(model.parameters()).device
    base = model.unload()  # the same base (loaded and prepared once) under the baseline's own adapter
    del model
    free(device)
    theirs = attempt(baseline, base, bs, run["warmup"], shape, peak, modelmod.hardware_plan(cfg, device), side["gc"],
                     device)  # a failing baseline keeps our numbers
    del base
    free(device)
    ratio = mine["tokens_per_s"]["median"] / theirs["tokens_per_s"]["median"] if "tokens_per_s" in theirs else None
    return {"status": "ok" if ratio else "partial: the baseline failed", "rows_per_step": side["rows"],
            "seq": run["seq"], "gradient_checkpointing": side["gc"], "ours": mine, "baseline_hf_trainer_peft": theirs,
            "ratio_median_tokens_per_s": round(ratio, 3) if ratio else None}


def attempt(fn, *args) -> dict:
    try:
        return fn(*args)
    except Exception as err:  # noqa: BLE001 - one side failing must not lose the other's numbers
        import traceback
        traceback.print_exc()
        return {"status": f"failed: {type(err).__name__}: {str(err)[:300]}"}
    finally:
        free(torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))  # what the failure held


def verdict(doc: dict) -> dict:
    """Each target met (true/false), or null where it was not measured (the smoke run measures none)."""
    gpu = doc["mode"] == "gpu"
    lora, qlora = (doc.get("lora") or {}) if gpu else {}, (doc.get("qlora") or {}) if gpu else {}
    ours, ratio, q = lora.get("ours"), lora.get("ratio_median_tokens_per_s"), qlora.get("ours")
    return {**TARGETS, "met": {
        "bf16_lora_mfu": ours["mfu"] >= TARGETS["bf16_lora_mfu_min"] if ours else None,
        "bf16_lora_ratio": ratio >= TARGETS["bf16_lora_ratio_min"] if ratio else None,
        "qlora_peak": q["peak_gpu_gib"] <= TARGETS["qlora_peak_gib_max"]
        if q and q.get("peak_gpu_gib") is not None else None}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny shapes, same code path")
    parser.add_argument("--out", help="also write the JSON here (after every phase)")
    parser.add_argument("--budget-s", type=float, default=420.0, help="skip QLoRA if less time than it needs is left")
    parser.add_argument("--work-dir", default=os.environ.get("FTO_GPU_CHECK_WORK"))
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    mode = "smoke" if args.smoke else "gpu"
    cuda = torch.cuda.is_available() and not args.smoke
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    shape, run = SHAPES["smoke" if args.smoke else "8b"], RUNS[mode]
    doc = {"benchmark": "gpu_check", "mode": mode, "device": str(device), "versions": versions(), "shape": shape,
           "seq": run["seq"], "targets": TARGETS,
           "mfu_formula": "4 FLOPs per frozen weight per token (forward + input-gradient backward, head included) "
                          "+ 12*h per causal context token per layer (attention forward + backward); no recompute"}

    def report() -> None:
        doc["wall_s"] = round(time.monotonic() - t0, 1)
        if args.out:
            Path(args.out).write_text(json.dumps(doc, indent=1))

    if not cuda and not args.smoke:
        doc["error"] = "no CUDA device visible: run with --smoke for the CPU check"
        report()
        print(json.dumps(doc, indent=1))
        return 2
    work = Path(tempfile.mkdtemp(prefix="fto-gpu-check-", dir=args.work_dir))
    try:
        doc["matmul_peak"] = matmul_peak(device, args.smoke)
        peak = doc["matmul_peak"]["flops_per_s"] / 1e12
        report()
        folder = work / "model"
        doc["params"] = write_model(folder, shape, device, torch.bfloat16 if cuda else torch.float32, run["seq"])
        doc["model_write_s"] = round(time.monotonic() - t0, 1)
        exs = examples(shape["vocab_size"], run["seq"], count=64 if args.smoke else 256)
        doc["lora"] = attempt(side_by_side, "lora", "bf16" if cuda else "auto", folder, run, shape, peak, exs)
        report()
        usable, why = bitsandbytes_status()
        if not usable:
            doc["qlora"] = {"status": why}
        elif not cuda:
            doc["qlora"] = {"status": f"skipped: 4-bit QLoRA needs a CUDA GPU ({why} is importable)"}
        elif time.monotonic() - t0 > args.budget_s - 150:
            doc["qlora"] = {"status": f"skipped: time budget ({round(time.monotonic() - t0)} s used of {args.budget_s})"}
        else:
            doc["qlora"] = attempt(side_by_side, "qlora", "bf16", folder, run, shape, peak, exs)
        doc["verdict"] = verdict(doc)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        report()
    print(json.dumps(doc, indent=1))
    return 0 if (doc.get("lora") or {}).get("status") == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
