from finetune_operator.modelversion import canary

STEPS = [{"weight": 20, "pauseSeconds": 10}, {"weight": 50, "pauseSeconds": 5}]


def test_first_step_sets_weight():
    assert canary.next_action(STEPS, None, None, 100.0) == canary.Action("weigh", 0, 20)


def test_hold_until_pause_ends():
    a = canary.next_action(STEPS, 0, 100.0, 104.0)
    assert a.kind == "hold" and a.weight == 20 and a.wait == 6.0


def test_advance_then_complete():
    assert canary.next_action(STEPS, 0, 100.0, 110.0) == canary.Action("weigh", 1, 50)
    assert canary.next_action(STEPS, 1, 110.0, 115.0).kind == "complete"


def test_breach_aborts_at_any_step():
    assert canary.next_action(STEPS, 1, 110.0, 111.0, breach=True).kind == "abort"
