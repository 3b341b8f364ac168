"""Text as token ids, for training a language model with the speech Trainer.

    dataset = TextDataset.from_file("data/lm_train.txt", tokenizer)      # one sentence per line
    sampler = DynamicBatchSampler(dataset.lengths, max_seconds=4000)    # "seconds" = tokens here
    Trainer(build_lm(LMConfig(vocab_size=tokenizer.vocab_size)), dataset, sampler, ...).fit()

Examples have SpeechDataset's layout without audio (feats (0, 0)), so asr.data.collate turns them
into ordinary Batch objects: the text in `targets`, no features, feat_lengths 0.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from asr.text import Tokenizer


class TextDataset(Dataset):
    """Sentences encoded with `tokenizer` (its normaliser applies). ids: one per text (default "0", "1", ...)."""

    def __init__(self, texts: Sequence[str], tokenizer: Tokenizer, *, ids: Sequence[str] | None = None):
        if ids is not None and len(ids) != len(texts):
            raise ValueError(f"TextDataset: {len(ids)} ids for {len(texts)} texts")
        self.ids = [str(i) for i in range(len(texts))] if ids is None else list(ids)
        self.tokens = [torch.tensor(tokenizer.encode(text), dtype=torch.long) for text in texts]
        self.tokenizer = tokenizer

    @classmethod
    def from_file(cls, path: str | os.PathLike, tokenizer: Tokenizer) -> TextDataset:
        """One sentence per line (UTF-8); blank lines are skipped. Ids are "file:line"."""
        path = Path(path)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such file") from None
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}: not UTF-8 text ({error})") from None
        kept = [(f"{path.name}:{n}", line) for n, line in enumerate(lines, start=1) if line.strip()]
        if not kept:
            raise ValueError(f"{path}: no text (every line is blank)")
        return cls([line for _, line in kept], tokenizer, ids=[i for i, _ in kept])

    @property
    def lengths(self) -> list[int]:
        """Tokens per example, <eos> included: the "durations" for a DynamicBatchSampler."""
        return [len(t) + 1 for t in self.tokens]

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: int) -> dict:
        tokens = self.tokens[index]
        empty = torch.zeros(0, dtype=torch.long)
        return {"id": self.ids[index], "feats": torch.zeros(0, 0), "targets": tokens, "ctc_targets": empty,
                "prefix": empty}
