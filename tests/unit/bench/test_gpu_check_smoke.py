"""bench/gpu_check.sh --smoke: the GPU check's own code path on CPU with tiny shapes, so it cannot rot
before it meets a GPU. It runs as on the GPU machine: with no boto3, botocore, kopf, kubernetes,
bitsandbytes or the other components importable (a sitecustomize blocks them), and prints the JSON
document a GPU run prints."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BLOCKED = ("boto3", "botocore", "s3transfer", "kopf", "kubernetes", "finetune_operator", "finetune_inference",
           "bitsandbytes")
SITECUSTOMIZE = f"""
import sys
for name in {BLOCKED!r}:
    sys.modules[name] = None  # `import name` raises ImportError; importlib.util.find_spec(name) is None
"""


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu-check-smoke")
    (tmp / "hook").mkdir()
    (tmp / "hook" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(tmp / "hook"), "OUT": str(tmp),
           "FTO_GPU_CHECK_WORK": str(tmp)}
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--smoke"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    start = proc.stdout.index("{\n")
    return json.loads(proc.stdout[start:]), json.loads((tmp / "gpu_check.json").read_text())


def test_the_smoke_run_prints_the_document_it_writes(smoke):
    printed, written = smoke
    assert printed == written and printed["benchmark"] == "gpu_check" and printed["mode"] == "smoke"


def test_the_document_names_the_stack_the_peak_and_the_targets(smoke):
    doc, _ = smoke
    assert set(doc["versions"]) >= {"torch", "transformers", "peft", "gpu", "python"}
    assert doc["matmul_peak"]["tflops"] > 0
    assert doc["targets"] == {"bf16_lora_mfu_min": 0.40, "bf16_lora_ratio_min": 1.3, "qlora_peak_gib_max": 12.0}
    assert doc["verdict"]["met"] == {"bf16_lora_mfu": None, "bf16_lora_ratio": None, "qlora_peak": None}


def test_both_sides_trained_on_the_same_packed_batches_and_report_each_figure(smoke):
    doc, _ = smoke
    lora = doc["lora"]
    assert lora["status"] == "ok" and lora["ratio_median_tokens_per_s"] > 0
    for side in (lora["ours"], lora["baseline_hf_trainer_peft"]):
        assert set(side["tokens_per_s"]) == {"median", "min", "max", "p25", "p75"}
        assert side["tokens_per_s"]["min"] <= side["tokens_per_s"]["median"] <= side["tokens_per_s"]["max"]
        assert side["mfu"] > 0 and side["steps"] >= 2 and "peak_gpu_gib" in side
    assert lora["ours"]["tokens_per_step"] == lora["baseline_hf_trainer_peft"]["tokens_per_step"]
    assert lora["ours"]["precision"] == "fp32"  # auto on CPU


def test_without_bitsandbytes_qlora_is_reported_skipped_not_failed(smoke):
    doc, _ = smoke
    assert doc["qlora"]["status"].startswith("skipped: bitsandbytes not importable")
