"""SentencePiece (BPE or unigram) behind the Tokenizer interface.

SentencePiece is trained so that its own ids already follow our layout: <unk>/<sos>/<eos>/<pad> sit at
1..4 as its reserved pieces, and <blank> plus the task/language tokens are control symbols, which
SentencePiece places at the lowest free ids (0, then 5, 6, …) and never produces from text.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import sentencepiece as spm

from asr.text.normalize import TextNormalizer
from asr.text.tokenizer import SPECIAL_TOKENS, Tokenizer

MODEL_FILE = "tokenizer.model"


class SentencePieceTokenizer(Tokenizer):
    """Subword units from a trained SentencePiece model."""

    def __init__(self, model_proto: bytes, kind: str, extra_tokens: Sequence[str] = (),
                 normalizer: TextNormalizer = TextNormalizer()) -> None:
        super().__init__(extra_tokens, normalizer)
        self.kind = kind
        self._proto = model_proto
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        expected = [*SPECIAL_TOKENS, *self.extra_tokens]
        found = [self._sp.id_to_piece(i) for i in range(min(len(expected), self._sp.get_piece_size()))]
        if found != expected:
            raise ValueError(f"SentencePiece model: special pieces {found} do not match the layout {expected}")

    @classmethod
    def load(cls, directory: Path, kind: str, extra_tokens: Sequence[str],
             normalizer: TextNormalizer) -> SentencePieceTokenizer:
        path = directory / MODEL_FILE
        if not path.is_file():
            raise FileNotFoundError(f"load_tokenizer: {path} does not exist")
        return cls(path.read_bytes(), kind, extra_tokens, normalizer)

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(self.normalizer(text))

    def decode(self, ids: Iterable[int]) -> str:
        skipped = self.skipped_ids
        return self._sp.decode([i for i in map(int, ids) if i not in skipped])

    def id_to_token(self, i: int) -> str:
        if not 0 <= i < self.vocab_size:
            raise IndexError(f"tokenizer: id {i} out of range [0, {self.vocab_size})")
        return self._sp.id_to_piece(i)

    def _lookup(self, token: str) -> int | None:
        index = self._sp.piece_to_id(token)
        # piece_to_id answers <unk>'s id for unknown pieces.
        return index if index != self.unk_id or token == SPECIAL_TOKENS[self.unk_id] else None

    def _save_files(self, directory: Path) -> dict[str, Any]:
        (directory / MODEL_FILE).write_bytes(self._proto)
        return {"model_file": MODEL_FILE}


def train_sentencepiece(texts: Iterable[str], kind: str, vocab_size: int, extra_tokens: Sequence[str],
                        normalizer: TextNormalizer) -> SentencePieceTokenizer:
    """Train SentencePiece on normalised `texts`. vocab_size counts all ids and is a soft limit on small data."""
    if vocab_size <= len(SPECIAL_TOKENS) + len(extra_tokens):
        raise ValueError(f"train_tokenizer: vocab_size={vocab_size} leaves no room for units "
                         f"after {len(SPECIAL_TOKENS) + len(extra_tokens)} special/extra tokens")
    sentences = [s for s in (normalizer(t) for t in texts) if s]
    if not sentences:
        raise ValueError("train_tokenizer: no text to train SentencePiece on")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        model_type=kind,
        vocab_size=vocab_size,
        hard_vocab_limit=False,  # a small corpus may support fewer pieces than asked for
        character_coverage=1.0,  # keep every character: Chinese or German text must round-trip
        normalization_rule_name="identity",  # TextNormalizer already normalised the text
        unk_id=1, bos_id=2, eos_id=3, pad_id=4,
        unk_piece=SPECIAL_TOKENS[1], bos_piece=SPECIAL_TOKENS[2], eos_piece=SPECIAL_TOKENS[3],
        pad_piece=SPECIAL_TOKENS[4],
        control_symbols=[SPECIAL_TOKENS[0], *extra_tokens],
        num_threads=2,
        minloglevel=2,
    )
    return SentencePieceTokenizer(model.getvalue(), kind, extra_tokens, normalizer)
