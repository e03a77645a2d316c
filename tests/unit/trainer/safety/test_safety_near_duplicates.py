"""Near-duplicates and leakage: MinHash LSH over prompts names the earlier training line, in bounded memory."""
import random

import pytest

from finetune_trainer.safety.near_duplicates import BandIndex, NearDuplicateIndex

rng = random.Random(7)
VOCAB = [f"word{i}" for i in range(3000)]
PROMPTS = [" ".join(rng.choice(VOCAB) for _ in range(60)) for _ in range(300)]


def edited(text: str, n: int, seed: int = 0) -> str:
    words, r = text.split(), random.Random(seed)
    for _ in range(n):
        words[r.randrange(len(words))] = f"edit{r.randrange(10**6)}"
    return " ".join(words)


@pytest.fixture(scope="module")
def index():
    idx = NearDuplicateIndex(0.8)
    for line, prompt in enumerate(PROMPTS, start=1):
        signed = idx.signature(prompt)
        assert idx.match(signed) is None, f"random prompt {line} matched an earlier one"
        idx.add(signed, line)
    return idx


@pytest.mark.parametrize("case,text,expected", [
    ("an exact copy", PROMPTS[41], 42),
    ("one word changed", edited(PROMPTS[99], 1), 100),
    ("different case and punctuation", PROMPTS[7].upper().replace(" ", ", "), 8),
    ("an unrelated prompt", " ".join(rng.choice(VOCAB) for _ in range(60)), None),
    ("half the words changed", edited(PROMPTS[3], 30), None),
    ("no words at all", "!!! ??? ...", None),
])
def test_match_names_the_earlier_training_line(index, case, text, expected):
    assert index.match(index.signature(text)) == expected


def test_a_stricter_threshold_at_match_time_rejects_looser_pairs(index):
    loose = edited(PROMPTS[10], 4, seed=3)  # word 3-gram Jaccard about 0.8
    assert index.match(index.signature(loose), threshold=0.99) is None


def test_the_earliest_line_is_kept_when_rows_repeat():
    idx = NearDuplicateIndex(0.9)
    for line in (5, 9):
        idx.add(idx.signature(PROMPTS[0]), line)
    assert idx.match(idx.signature(PROMPTS[0])) == 5


def test_memory_per_indexed_row_is_bounded():
    idx = NearDuplicateIndex(0.9)
    for line in range(1, 5001):
        idx.add(idx.signature(f"row {line} " + PROMPTS[line % 300]), line)
    assert idx.bands * 48 + 64 + 4 <= 300
    assert idx.nbytes() / 5000 <= idx.bands * 48 + 64 + 4 + 64  # + the last growth step's slack


def test_band_index_keeps_every_key_through_growth():
    table = BandIndex(capacity=8)
    keys = [rng.getrandbits(64) | 1 for _ in range(1000)]
    for i, key in enumerate(keys):
        table.add(key, i)
    assert len(table) == 1000 and [table.get(k) for k in keys] == list(range(1000))
    assert table.get(2) is None


@pytest.mark.parametrize("threshold", [0.0, 1.5, -0.1])
def test_a_threshold_outside_0_1_is_refused(threshold):
    with pytest.raises(ValueError):
        NearDuplicateIndex(threshold)
