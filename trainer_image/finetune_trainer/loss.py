"""Micro-batch tensors and the training loss, computed without waste.

collate(): rows of examples -> padded tensors. Packed rows restart position ids at every
example, and no attention mask is passed, so the model builds a block-diagonal causal mask.

TokenLoss: runs the decoder, then the output projection only at positions whose next token is
trained on - prompt and padding positions never reach the (vocabulary-sized) head - and returns
the summed cross-entropy and the token count, so gradient accumulation can normalise by the
true number of trained tokens.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .data import IGNORE


def collate(rows: list, examples, pad_id: int, packed: bool) -> dict:
    """examples: a store (store.py) or a list of data.Example; only the examples in rows are read."""
    seqs = []
    for row in rows:
        parts = [examples[i] for i in row]
        ids = np.concatenate([np.asarray(e.input_ids, dtype=np.int64) for e in parts])
        # The first token of a packed example is never predicted from the previous example.
        labels = np.concatenate([np.asarray(e.labels, dtype=np.int64) for e in parts])
        starts = np.cumsum([0] + [len(e) for e in parts[:-1]])
        if packed:
            labels[starts] = IGNORE
        pos = np.arange(len(ids)) - np.repeat(starts, [len(e) for e in parts])
        seqs.append((ids, labels, pos))
    width = max(len(s[0]) for s in seqs)
    input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    labels = torch.full((len(seqs), width), IGNORE, dtype=torch.long)
    position_ids = torch.zeros((len(seqs), width), dtype=torch.long)
    attention = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, (ids, lab, pos) in enumerate(seqs):
        n = len(ids)
        input_ids[r, :n], labels[r, :n], attention[r, :n] = torch.from_numpy(ids), torch.from_numpy(lab), 1
        position_ids[r, :n] = torch.from_numpy(pos)
        position_ids[r, n:] = torch.arange(width - n)  # padding forms its own (untrained) segment
    batch = {"input_ids": input_ids, "labels": labels, "tokens": int(attention.sum()),
             "examples": sum(len(row) for row in rows)}
    if packed:
        batch["position_ids"] = position_ids
    else:
        batch["attention_mask"] = attention
    return batch


class TokenLoss(torch.nn.Module):
    """Wraps a causal LM (PEFT-wrapped or not) so DDP sees one module whose forward returns the loss."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def _parts(self):
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        return base.get_decoder(), base.get_output_embeddings()

    def forward(self, input_ids, labels, attention_mask=None, position_ids=None):
        decoder, head = self._parts()
        hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         use_cache=False).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != IGNORE
        logits = head(hidden[:, :-1][keep])
        loss_sum = F.cross_entropy(logits.float(), targets[keep], reduction="sum")
        return loss_sum, keep.sum()
