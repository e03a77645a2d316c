"""Rows/s of the whole data-safety gate on ~1 KB synthetic chat rows (prints JSON; not a test).

    .venv/bin/python tests/unit/trainer/safety/bench_safety_gate.py [rows]

Rates are per CPU second of this process (the machine may be shared). Support-ticket style rows: English words, order numbers, dates and prices; 1 row in 50 holds an
email, a phone number or an AWS-style key. Runs the gate with its defaults (every check Warn
or Fail but moderation) and with every transforming action (Redact/Drop + cleaning), with a
real tokenizer-shaped special-token set (ChatML), and reports rows/s, MB/s and the index size.
"""
import json
import random
import resource
import sys
import tempfile
import time

from finetune_trainer.report_types import DatasetReport
from finetune_trainer.safety.gate import Gate

WORDS = ("order parcel delivery refund replacement broken arrived late damaged box handle colour size invoice "
         "account password reset router settings warranty support ticket customer please thanks hello would "
         "like return exchange shipping address tracking number week monday friday store online payment card "
         "charged twice discount code battery charger screen cable manual install update firmware the a to of "
         "and is it my was on for with we you your our this that not be can will have has been").split()


class ChatMLTokens:
    all_special_tokens = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]
    chat_template = "{{ '<|im_start|>' + m['role'] + '<|im_end|>' }}"

    def get_added_vocab(self):
        return {t: i for i, t in enumerate(self.all_special_tokens)}


def sentence(r: random.Random) -> str:
    words = [r.choice(WORDS) for _ in range(r.randint(8, 16))]
    if r.random() < 0.3:
        words.insert(r.randrange(len(words)), f"#{r.randint(10000, 99999)}")
    if r.random() < 0.2:
        words.insert(r.randrange(len(words)), f"${r.randint(5, 500)}.{r.randint(0, 99):02d}")
    return " ".join(words).capitalize() + "."


def rows(n: int, seed: int = 1) -> list:
    r, out = random.Random(seed), []
    for i in range(n):
        user = " ".join(sentence(r) for _ in range(5))
        answer = " ".join(sentence(r) for _ in range(8))
        if i % 50 == 7:
            user += r.choice([" Mail me at jo.smith@example.com.", " Call +1 415-555-0132.",
                              " My key is AKIA" + "IOSFODNN7EXAMPLE."])
        out.append([{"role": "user", "content": user}, {"role": "assistant", "content": answer}])
    return out


def measure(config: dict, data: list) -> dict:
    with tempfile.TemporaryDirectory() as work:
        gate = Gate(config, ChatMLTokens(), work_dir=work)
        started, cpu = time.perf_counter(), time.process_time()
        for line, messages in enumerate(data, start=1):
            gate.row("train", line, messages)
        gate.finish(DatasetReport())
        wall, seconds = time.perf_counter() - started, time.process_time() - cpu
    size = sum(len(json.dumps({"messages": m})) + 1 for m in data)
    # CPU seconds of this process: the rate one core gives, whatever else the machine runs
    return {"rows": len(data), "avgRowBytes": size // len(data), "cpuSeconds": round(seconds, 2),
            "wallSeconds": round(wall, 2), "rowsPerCpuSecond": round(len(data) / seconds),
            "mbPerCpuSecond": round(size / seconds / 1e6, 2),
            "indexBytesPerRow": round(gate._index.nbytes() / len(data)) if gate._index else 0}


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    data = rows(n)
    defaults = {"specialTokens": {"action": "Warn"}, "leakage": {"action": "Warn"}}
    transforms = {"pii": {"action": "Redact"}, "secrets": {"action": "Redact"}, "specialTokens": {"action": "Drop"},
                  "nearDuplicates": {"action": "Drop"},
                  "cleaning": {"stripHtml": True, "unicodeNfc": True, "dropExactDuplicates": True}}
    out = {"defaults": measure(defaults, data), "transforms": measure(transforms, data),
           "peakRssMiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
