"""Trainer throughput: our training step vs a plain transformers Trainer + PEFT baseline.

Same model (SmolLM2-135M-Instruct, fp32, CPU), same LoRA (r=16 on the default targets), same
variable-length examples (support tickets with 0-6 earlier tickets as context: ~80 to ~220
tokens), same masking (loss on completions only). The baseline is what a user writes by hand:
Trainer + DataCollatorForSeq2Seq (pads each random batch to its longest example). Ours packs
examples into 512-token rows (block-diagonal attention from position ids) and projects onto
the vocabulary only where a token is trained. Throughput counts real tokens only (no padding),
per optimiser step; the median over steps (after one warm-up step) is reported. Prints JSON.

    .venv/bin/python bench/trainer_throughput.py [--steps 10]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time

import torch


def examples(tokenizer, seed: int = 0):
    from pathlib import Path

    from finetune_trainer import data
    rows = [json.loads(line) for line in (Path(__file__).resolve().parents[1] / "examples" / "datasets" /
                                          "support-tickets.jsonl").open()]
    rng = random.Random(seed)
    enc = data.Encoder(tokenizer, 512)
    out = []
    for row in rows * 3:
        context = " ".join(r["prompt"] for r in rng.sample(rows, rng.randint(0, 6)))
        prompt = (f"Earlier tickets from this customer: {context}\n\nNew ticket: " if context else "") + row["prompt"]
        ids, labels = enc.encode_chat([{"role": "user", "content": prompt},
                                       {"role": "assistant", "content": row["completion"]}])
        out.append(data.Example(ids, labels, 0))
    return out


def lora(model):
    from peft import LoraConfig, get_peft_model

    from finetune_trainer.architectures import default_target_modules
    return get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, task_type="CAUSAL_LM",
                                            target_modules=default_target_modules("llama")))


def load(folder):
    from transformers import AutoModelForCausalLM
    torch.manual_seed(0)
    return lora(AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32))


def ours(folder, exs, steps: int, rows_per_step: int, pad_id: int) -> dict:
    from finetune_trainer import batching
    from finetune_trainer.loss import TokenLoss, collate
    model = load(folder)
    module = TokenLoss(model).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    plan = batching.plan([len(e) for e in exs], rows_per_step, True, 512, seed=0, epoch=0)
    rates, tokens_total, t_total = [], 0, 0.0
    for i in range(steps + 1):
        batch = collate(plan[i % len(plan)], exs, pad_id, packed=True)
        t0 = time.perf_counter()
        loss_sum, n = module(batch["input_ids"], batch["labels"], position_ids=batch["position_ids"])
        (loss_sum / n).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        if i:  # step 0 is warm-up
            rates.append(batch["tokens"] / dt)
            tokens_total, t_total = tokens_total + batch["tokens"], t_total + dt
    return {"median_tokens_per_s": round(statistics.median(rates), 1), "mean_tokens_per_s": round(tokens_total / t_total, 1),
            "steps": steps, "real_tokens": tokens_total, "padding_ratio": round(batching.padding_ratio(plan, [len(e) for e in exs]), 3)}


def baseline(folder, exs, steps: int, batch_size: int, tokenizer) -> dict:
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments
    model = load(folder)
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    counts, pads, times = [], [], []

    def collate(features):
        batch = collator(features)
        counts.append(int(batch["attention_mask"].sum()))
        pads.append(batch["attention_mask"].numel())
        return batch

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - self.t0)

    dataset = [{"input_ids": e.input_ids, "labels": e.labels, "attention_mask": [1] * len(e)} for e in exs]
    args = TrainingArguments(output_dir="/tmp/fto-bench-baseline", per_device_train_batch_size=batch_size,
                             max_steps=steps + 1, learning_rate=2e-4, report_to=[], save_strategy="no",
                             logging_strategy="no", dataloader_num_workers=0, use_cpu=True, seed=0,
                             remove_unused_columns=False, disable_tqdm=True)
    Trainer(model=model, args=args, train_dataset=dataset, data_collator=collate, callbacks=[Timer()]).train()
    # The collator runs just before each step's timing starts: pair counts with step times.
    pairs = list(zip(counts, times))[1:]
    rates = [c / t for c, t in pairs]
    return {"median_tokens_per_s": round(statistics.median(rates), 1),
            "mean_tokens_per_s": round(sum(c for c, _ in pairs) / sum(t for _, t in pairs), 1), "steps": steps,
            "real_tokens": sum(c for c, _ in pairs), "padding_ratio": round(1 - sum(counts) / sum(pads), 3)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    from finetune_trainer.basemodel import prepare_default_model
    folder = prepare_default_model()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    exs = examples(tokenizer)
    lengths = [len(e) for e in exs]
    torch.set_num_threads(os.cpu_count() or 1)
    base = baseline(folder, exs, args.steps, 8, tokenizer)
    mine = ours(folder, exs, args.steps, 2, tokenizer.pad_token_id or tokenizer.eos_token_id)
    print(json.dumps({
        "benchmark": "trainer_throughput_cpu", "model": "SmolLM2-135M-Instruct fp32", "method": "lora r=16",
        "cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
        "examples": len(exs), "example_tokens": {"min": min(lengths), "median": int(statistics.median(lengths)),
                                                  "max": max(lengths)},
        "baseline_hf_trainer": base, "ours": mine,
        "ratio_median_tokens_per_s": round(mine["median_tokens_per_s"] / base["median_tokens_per_s"], 2),
    }, indent=1))


if __name__ == "__main__":
    main()
