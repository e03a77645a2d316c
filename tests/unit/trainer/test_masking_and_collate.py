"""Loss only on completions: prompt tokens are masked, packed examples stay apart."""
import pytest

from finetune_trainer import data
from finetune_trainer.basemodel import prepare_default_model
from finetune_trainer.loss import collate


@pytest.fixture(scope="module")
def encoder():
    from transformers import AutoTokenizer
    return data.Encoder(AutoTokenizer.from_pretrained(prepare_default_model()), 512)


def test_only_the_assistant_answer_is_trained(encoder):
    messages = [{"role": "user", "content": "Where is order 42?"}, {"role": "assistant", "content": "On its way."}]
    ids, labels = encoder.encode_chat(messages)
    trained = [t for t, lab in zip(ids, labels) if lab != data.IGNORE]
    text = encoder.tok.decode(trained)
    assert text.startswith("On its way.") and "Where is order" not in text
    prompt = encoder.tok.decode([t for t, lab in zip(ids, labels) if lab == data.IGNORE])
    assert "Where is order 42?" in prompt
    # What the model is trained to continue is exactly what it is given at inference time.
    first = labels.index(next(x for x in labels if x != data.IGNORE))
    assert encoder.tok.decode(ids[:first]) == encoder.render_prompt(messages[:1])


def test_multi_turn_chat_trains_every_assistant_turn(encoder):
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Goodbye!"}]
    ids, labels = encoder.encode_chat(messages)
    text = encoder.tok.decode([t for t, lab in zip(ids, labels) if lab != data.IGNORE])
    assert "Hello!" in text and "Goodbye!" in text and "Bye" not in text.replace("Goodbye", "")


@pytest.mark.parametrize("record, fmt, problem", [
    ({"prompt": "x"}, "promptCompletion", "line 7: missing field 'completion'"),
    ({"prompt": 3, "completion": "y"}, "promptCompletion", "line 7: field 'prompt' must be a string"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "chat", "line 7: message 0 must be"),
    ({"messages": [{"role": "user", "content": "x"}]}, "chat", "line 7: no assistant message"),
    ({"instruction": " ", "response": "y"}, "instruction", "line 7: field 'instruction' is empty"),
    (["not", "an", "object"], "promptCompletion", "line 7: a row must be a JSON object"),
])
def test_row_problems_carry_line_numbers(record, fmt, problem):
    from finetune_trainer.config import DEFAULT_FIELDS
    problems = []
    assert data.to_messages(record, fmt, DEFAULT_FIELDS[fmt], 7, problems) is None
    assert any(p.startswith(problem) for p in problems), problems


def test_collate_packs_with_restarting_positions_and_masks_boundaries():
    a = data.Example([1, 2, 3], [-100, 2, 3], 1)
    b = data.Example([4, 5], [4, 5], 2)
    batch = collate([[0, 1]], [a, b], pad_id=0, packed=True)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert batch["labels"].tolist() == [[-100, 2, 3, -100, 5]]
    assert "attention_mask" not in batch and batch["tokens"] == 5 and batch["examples"] == 2


def test_collate_pads_unpacked_rows_with_a_mask():
    batch = collate([[0], [1]], [data.Example([1, 2, 3], [1, 2, 3], 1), data.Example([4], [4], 2)], 0, False)
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist()[1] == [4, -100, -100]
