from finetune_trainer import batching

LENGTHS = [5, 60, 12, 33, 7, 90, 41, 18, 25, 64, 3, 77, 50, 9, 30, 15] * 4


def flat(batches):
    return sorted(i for batch in batches for row in batch for i in row)


def test_plan_is_deterministic_per_seed_and_epoch():
    a = batching.plan(LENGTHS, 4, False, 128, seed=1, epoch=0)
    assert a == batching.plan(LENGTHS, 4, False, 128, seed=1, epoch=0)
    assert a != batching.plan(LENGTHS, 4, False, 128, seed=1, epoch=1)


def test_every_example_is_used_once_per_epoch():
    for packing in (False, True):
        assert flat(batching.plan(LENGTHS, 4, packing, 128, seed=3, epoch=0)) == list(range(len(LENGTHS)))


def test_packed_rows_never_exceed_max_len():
    for batch in batching.plan(LENGTHS, 4, True, 100, seed=0, epoch=0):
        for row in batch:
            assert sum(LENGTHS[i] for i in row) <= 100


def test_grouping_and_packing_waste_less_than_random_batches():
    import random
    order = list(range(len(LENGTHS)))
    random.Random(0).shuffle(order)
    naive = [[[i] for i in order[j:j + 4]] for j in range(0, len(order), 4)]
    grouped = batching.plan(LENGTHS, 4, False, 128, seed=0, epoch=0)
    packed = batching.plan(LENGTHS, 2, True, 128, seed=0, epoch=0)
    assert batching.padding_ratio(grouped, LENGTHS) < batching.padding_ratio(naive, LENGTHS)
    assert batching.padding_ratio(packed, LENGTHS) < batching.padding_ratio(naive, LENGTHS)


def test_ranks_get_disjoint_equal_shares():
    shares = [batching.plan(LENGTHS, 4, False, 128, seed=0, epoch=0, world_size=3, rank=r) for r in range(3)]
    assert len({len(s) for s in shares}) == 1
    seen = [i for s in shares for i in flat(s)]
    assert len(seen) == len(set(seen))
