"""The on-disk example store (store.py): examples round-trip exactly, the batch plan and the
validationSplit are the ones the in-memory lists gave, and building a store takes the same memory
for 2k examples as for 20k."""
from __future__ import annotations

import copy
import hashlib
import math
import random
import tracemalloc

import numpy as np
import pytest

from finetune_trainer import batching, data, store
from finetune_trainer.config import from_dict
from finetune_trainer.loss import collate

IGNORE = data.IGNORE


def synthetic(n: int, seed: int = 0, max_len: int = 90):
    """n examples of 2..max_len tokens, a masked prompt then trained tokens, made one at a time."""
    rng = np.random.default_rng(seed)
    for k in range(n):
        length = int(rng.integers(2, max_len + 1))
        ids = rng.integers(1, 50_000, length).tolist()
        prompt = int(rng.integers(0, length))
        yield data.Example(ids, [IGNORE] * prompt + ids[prompt:], k + 1)


# --- what the code did before the store: the reference the store must reproduce ------------------
def old_pack(order, lengths, max_len):
    rows, room = [], []
    for i in order:
        size = min(lengths[i], max_len)
        for r, free in enumerate(room):
            if free >= size:
                rows[r].append(i)
                room[r] -= size
                break
        else:
            rows.append([i])
            room.append(max_len - size)
    return rows


def old_plan(lengths, batch_size, packing, max_len, seed, epoch, world_size=1, rank=0):
    order = list(range(len(lengths)))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    if packing:
        rows = old_pack(order, lengths, max_len)
        batches = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    else:
        batches = []
        window = batch_size * batching.GROUP_WINDOW
        for start in range(0, len(order), window):
            chunk = sorted(order[start:start + window], key=lambda i: lengths[i])
            batches += [[[i] for i in chunk[j:j + batch_size]] for j in range(0, len(chunk), batch_size)]
        random.Random(seed * 7 + epoch).shuffle(batches)
    usable = len(batches) - len(batches) % world_size
    return batches[rank:usable:world_size]


def old_split(train, fraction, seed):
    order = list(range(len(train)))
    random.Random(seed).shuffle(order)
    held = set(order[:max(1, math.ceil(len(train) * fraction))])
    return [e for i, e in enumerate(train) if i not in held], [e for i, e in enumerate(train) if i in held]


def same(stored, example) -> bool:
    return (np.asarray(stored.input_ids).tolist() == list(example.input_ids)
            and np.asarray(stored.labels).tolist() == list(example.labels) and stored.line == example.line)


# --- round trip ------------------------------------------------------------------------------------
@pytest.mark.parametrize("n, flush_tokens", [(0, 1 << 18), (1, 1 << 18), (300, 1 << 18), (300, 64), (300, 1)])
def test_examples_round_trip_through_the_store_exactly(tmp_path, monkeypatch, n, flush_tokens):
    monkeypatch.setattr(store, "FLUSH_TOKENS", flush_tokens)  # flushes inside, between and at examples
    examples = list(synthetic(n))
    st = store.build(tmp_path / "s", iter(examples))
    assert len(st) == n
    assert all(same(st[i], e) for i, e in enumerate(examples))
    assert st.lengths.tolist() == [len(e) for e in examples]
    assert st.tokens == sum(len(e) for e in examples)
    assert st.trained_tokens == sum(sum(x != IGNORE for x in e.labels) for e in examples)
    if n > 1:  # negative indices and slices read the same rows
        assert same(st[-1], examples[-1]) and same(st[1:][0], examples[1]) and len(st[1:]) == n - 1


def test_the_same_data_gives_the_same_bytes_so_a_resumed_attempt_rebuilds_the_same_store(tmp_path):
    def digests(folder):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}
    store.build(tmp_path / "a", synthetic(500, seed=4))
    store.build(tmp_path / "b", synthetic(500, seed=4))
    assert digests(tmp_path / "a") == digests(tmp_path / "b")
    store.build(tmp_path / "a", synthetic(10, seed=5))  # a rebuild replaces the old store
    assert len(store.ExampleStore.open(tmp_path / "a")) == 10


def test_a_label_that_is_neither_its_token_nor_ignored_is_refused(tmp_path):
    with pytest.raises(ValueError, match="line 3: a label is neither"):
        store.build(tmp_path / "s", [data.Example([5, 6, 7], [IGNORE, 6, 8], 3)])


def test_subsets_are_index_views_that_compose(tmp_path):
    examples = list(synthetic(50, seed=2))
    st = store.build(tmp_path / "s", examples)
    view = st.subset([40, 3, 17, 8]).subset([2, 0])
    assert [e.line for e in view] == [examples[17].line, examples[40].line]
    assert view.lengths.tolist() == [len(examples[17]), len(examples[40])]
    assert len(st.subset([])) == 0 and not st.subset([])


def test_each_rank_keeps_its_own_store_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    assert store.folder_for(tmp_path, "train") == tmp_path / "examples" / "rank-0" / "train"
    monkeypatch.setenv("RANK", "3")
    assert store.folder_for(tmp_path, "train") == tmp_path / "examples" / "rank-3" / "train"


# --- the batch plan --------------------------------------------------------------------------------
@pytest.mark.parametrize("n, batch_size, packing, max_len, world", [
    (1, 1, True, 64, 1), (37, 4, True, 128, 1), (500, 3, True, 256, 2), (500, 2, True, 60, 1),
    (1000, 8, True, 512, 4), (37, 4, False, 128, 1), (700, 4, False, 128, 3), (3000, 2, False, 512, 2),
])
def test_the_batch_plan_over_a_store_is_the_plan_the_lists_gave(tmp_path, n, batch_size, packing, max_len, world):
    examples = list(synthetic(n, seed=n))
    st = store.build(tmp_path / "s", examples)
    lengths = [len(e) for e in examples]
    for seed, epoch in ((0, 0), (42, 1), (7, 3)):
        for rank in range(world):
            new = batching.plan(st.lengths, batch_size, packing, max_len, seed, epoch, world, rank)
            assert new == old_plan(lengths, batch_size, packing, max_len, seed, epoch, world, rank)
            assert batching.padding_ratio(new, st.lengths) == pytest.approx(
                batching.padding_ratio(new, lengths))


@pytest.mark.parametrize("seed", range(20))
def test_tree_first_fit_packs_the_same_rows_as_the_scan(seed):
    rng = random.Random(seed)
    lengths = [rng.choice([1, 2, 3, 500, 511, 512, 600]) if rng.random() < 0.3 else rng.randint(1, 512)
               for _ in range(rng.randint(1, 400))]
    order = list(range(len(lengths)))
    rng.shuffle(order)
    assert batching._pack(order, np.array(lengths), 512) == old_pack(order, lengths, 512)


def test_collate_reads_a_store_as_it_read_the_lists(tmp_path):
    examples = list(synthetic(40, seed=9))
    st = store.build(tmp_path / "s", examples)
    for packed in (False, True):
        for rows in batching.plan(st.lengths, 4, packed, 256, 0, 0)[:5]:
            a, b = collate(rows, st, 0, packed), collate(rows, examples, 0, packed)
            assert a.keys() == b.keys()
            assert all(a[k].tolist() == b[k].tolist() if hasattr(a[k], "tolist") else a[k] == b[k] for k in a)


# --- data.load: stores, and the validationSplit on indices -----------------------------------------
JOB = {"kind": "FineTuneJob", "metadata": {"name": "bot", "namespace": "team-a", "uid": "u-1"},
       "spec": {"baseModel": {"name": "smollm2-135m-instruct", "uri": "s3://models/smollm2/"},
                "dataset": {"uri": "s3://data/train.jsonl", "format": "promptCompletion"},
                "output": {"uri": "s3://out/bot/"}}}


def _config(monkeypatch, tmp_path, dataset: dict):
    job = copy.deepcopy(JOB)
    job["spec"]["dataset"].update(dataset)
    monkeypatch.setenv("FTO_WORK_DIR", str(tmp_path))
    return from_dict(job)


def _load(monkeypatch, tmp_path, dataset: dict, objects: dict, cfg=None):
    """data.load over planted objects: {uri: examples}, in place of reading and tokenising."""
    cfg = cfg or _config(monkeypatch, tmp_path, dataset)
    monkeypatch.setattr(data, "iter_examples", lambda s3, uri, *a, **k: iter(objects[uri]))
    return cfg, data.load(cfg, None, None)


@pytest.mark.parametrize("n, fraction, seed", [(2, 0.5, 0), (10, 0.1, 3), (333, 0.2, 42), (1000, 0.05, 7)])
def test_the_index_based_validation_split_holds_the_same_examples_as_the_old_split(monkeypatch, tmp_path, n,
                                                                                  fraction, seed):
    examples = list(synthetic(n, seed=seed))
    cfg, (train, val, report) = _load(monkeypatch, tmp_path, {"validationSplit": fraction},
                                      {"s3://data/train.jsonl": examples})
    assert cfg.training["seed"] == 42  # the default; the split follows spec.training.seed
    want_train, want_val = old_split(examples, fraction, cfg.training["seed"])
    assert [e.line for e in train] == [e.line for e in want_train]
    assert [e.line for e in val] == [e.line for e in want_val]
    assert all(same(a, b) for a, b in zip(val, want_val))
    assert (report.rows, report.validation_rows) == (len(want_train), len(want_val))
    assert report.tokens == sum(len(e) for e in want_train)
    assert report.trained_tokens == sum(sum(x != IGNORE for x in e.labels) for e in want_train)


def test_load_returns_stores_for_training_and_validation_objects(monkeypatch, tmp_path):
    train_rows, val_rows = list(synthetic(30, seed=1)), list(synthetic(5, seed=2))
    _, (train, val, report) = _load(monkeypatch, tmp_path, {"validationUri": "s3://data/val.jsonl"},
                                    {"s3://data/train.jsonl": train_rows, "s3://data/val.jsonl": val_rows})
    assert isinstance(train, store.ExampleStore) and isinstance(val, store.ExampleStore)
    assert all(same(a, b) for a, b in zip(train, train_rows)) and len(train) == 30
    assert all(same(a, b) for a, b in zip(val, val_rows)) and len(val) == 5
    _, (_, val, _) = _load(monkeypatch, tmp_path / "none", {}, {"s3://data/train.jsonl": train_rows})
    assert len(val) == 0 and not val


# --- memory ----------------------------------------------------------------------------------------
def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_loading_and_reading_the_training_data_takes_the_same_memory_for_2k_and_20k_examples(tmp_path,
                                                                                           monkeypatch):
    monkeypatch.setattr(store, "FLUSH_TOKENS", 16_384)  # so 2k examples already flush many times

    def load_and_read(n):
        cfg = _config(monkeypatch, tmp_path / f"w{n}", {"validationSplit": 0.1})

        def run():
            _, (train, _, report) = _load(monkeypatch, None, {}, {"s3://data/train.jsonl": synthetic(n, seed=1)}, cfg)
            for e in train:  # every example read back, as training does
                assert len(e) >= 2
            assert report.rows == len(train) == n - math.ceil(n * 0.1)
        return run

    small, large = _peak_bytes(load_and_read(2_000)), _peak_bytes(load_and_read(20_000))
    # Only indices grow (the split's seeded shuffle of n numbers): 20k at most ~1 MB over 2k.
    assert large <= small + 1024 * 1024, (small, large)
    lists = _peak_bytes(lambda: list(synthetic(20_000, seed=1)))  # what data.load held before the store
    assert large * 20 < lists, (large, lists)
