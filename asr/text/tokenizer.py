"""The tokenizer interface, the character tokenizer, and training/loading by kind.

Every tokenizer shares one id layout, so that models, CTC and decoding never ask which kind they got:

    0 <blank>  1 <unk>  2 <sos>  3 <eos>  4 <pad>   then task/language tokens ("<asr>", "<st>", "<de>"…)
    given at training time, then the ordinary units.

`encode` applies the tokenizer's TextNormalizer first and adds no special tokens; `decode` drops
blank/sos/eos/pad and task/language tokens, so `decode(encode(s)) == normalizer(s)` for text whose
characters were seen in training.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from asr.fileio import write_json
from asr.text.normalize import TextNormalizer

SPECIAL_TOKENS = ("<blank>", "<unk>", "<sos>", "<eos>", "<pad>")
BLANK_ID, UNK_ID, SOS_ID, EOS_ID, PAD_ID = range(len(SPECIAL_TOKENS))
# Padding of token-id tensors (targets); the losses ignore it.
IGNORE_ID = -1
TOKENIZER_FILE = "tokenizer.json"
# The character tokenizer writes spaces as this unit (SentencePiece's word-boundary mark), so that a
# space is a visible token in alignments and n-best lists.
SPACE = "▁"


class Tokenizer(ABC):
    """Text <-> token ids, with the fixed special-token layout described in the module docstring."""

    kind: str  # "char", "bpe" or "unigram": what load_tokenizer rebuilds
    blank_id = BLANK_ID
    unk_id = UNK_ID
    sos_id = SOS_ID
    eos_id = EOS_ID
    pad_id = PAD_ID

    def __init__(self, extra_tokens: Sequence[str], normalizer: TextNormalizer) -> None:
        duplicated = sorted({t for t in extra_tokens if list(extra_tokens).count(t) > 1 or t in SPECIAL_TOKENS})
        if duplicated:
            raise ValueError(f"tokenizer: extra tokens repeat or clash with special tokens: {duplicated}")
        self.extra_tokens = tuple(extra_tokens)
        self.normalizer = normalizer

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of ids, specials included."""

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Normalise `text` and map it to unit ids (no sos/eos/task tokens added)."""

    @abstractmethod
    def decode(self, ids: Iterable[int]) -> str:
        """Map ids back to text, skipping blank/sos/eos/pad and task/language tokens."""

    @abstractmethod
    def id_to_token(self, i: int) -> str:
        """The token string of id `i` (IndexError if out of range)."""

    @abstractmethod
    def _lookup(self, token: str) -> int | None:
        """The id of `token`, or None if it is not in the vocabulary."""

    @abstractmethod
    def _save_files(self, directory: Path) -> dict[str, Any]:
        """Write kind-specific files into `directory`; return the kind-specific JSON fields."""

    @property
    def skipped_ids(self) -> frozenset[int]:
        """Ids that decode() drops: every special token except <unk>, and the task/language tokens."""
        extra = range(len(SPECIAL_TOKENS), len(SPECIAL_TOKENS) + len(self.extra_tokens))
        return frozenset({BLANK_ID, SOS_ID, EOS_ID, PAD_ID, *extra})

    # What decoding asks of a tokenizer besides sos_id/eos_id. Tokenizers of imported models
    # (asr/text/whisper.py, asr/text/speech2text.py) answer with their models' own conventions.

    @property
    def suppressed_ids(self) -> frozenset[int]:
        """Ids the search never emits: the skipped ones except <eos>."""
        return self.skipped_ids - {self.eos_id}

    @property
    def initial_suppressed_ids(self) -> frozenset[int]:
        """Ids the search does not emit as the first token (besides suppressed_ids)."""
        return frozenset()

    @property
    def language_ids(self) -> tuple[int, ...]:
        """The language tokens among which the search detects the language when prefix_ids asks it to."""
        return ()

    def prefix_ids(self, task: str | None, target_lang: str | None) -> list[int | None]:
        """Token ids forced after <sos>: the task token ("<asr>"/"<st>", when the tokenizer has task
        tokens) and the target-language token f"<{target_lang}>". A None entry (tokenizers with
        language_ids only) is a language token that the search detects per utterance."""
        ids: list[int | None] = []
        if task is not None and f"<{task}>" in self.extra_tokens:
            ids.append(self.token_to_id(f"<{task}>"))
        if target_lang is not None:
            token = f"<{target_lang}>"
            if token not in self.extra_tokens:
                known = ", ".join(self.extra_tokens) or "none"
                raise ValueError(f"DecodeOptions.target_lang={target_lang!r}: the tokenizer has no {token} "
                                 f"token (its task/language tokens: {known})")
            ids.append(self.token_to_id(token))
        return ids

    def token_to_id(self, token: str) -> int:
        index = self._lookup(token)
        if index is None:
            raise ValueError(f"tokenizer: token {token!r} is not in the vocabulary (size {self.vocab_size})")
        return index

    def save(self, directory: str | os.PathLike) -> None:
        """Write tokenizer.json (and the kind's own files) into `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "kind": self.kind,
            "extra_tokens": list(self.extra_tokens),
            "normalizer": self.normalizer.to_dict(),
            **self._save_files(directory),
        }
        write_json(directory / TOKENIZER_FILE, meta)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, extra_tokens={list(self.extra_tokens)})"


class CharTokenizer(Tokenizer):
    """One id per character; spaces become the unit "▁". Unseen characters map to <unk>."""

    kind = "char"

    def __init__(self, units: Sequence[str], extra_tokens: Sequence[str] = (),
                 normalizer: TextNormalizer = TextNormalizer()) -> None:
        super().__init__(extra_tokens, normalizer)
        self.tokens = [*SPECIAL_TOKENS, *self.extra_tokens, *units]
        self._ids = {t: i for i, t in enumerate(self.tokens)}
        if len(self._ids) != len(self.tokens):
            raise ValueError("CharTokenizer: units repeat or clash with special/extra tokens")

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        text = self.normalizer(text).replace(" ", SPACE)
        return [self._ids.get(ch, UNK_ID) for ch in text]

    def decode(self, ids: Iterable[int]) -> str:
        skipped = self.skipped_ids
        text = "".join(self.tokens[i] for i in map(int, ids) if i not in skipped)
        return " ".join(text.replace(SPACE, " ").split())

    def id_to_token(self, i: int) -> str:
        if not 0 <= i < len(self.tokens):
            raise IndexError(f"tokenizer: id {i} out of range [0, {len(self.tokens)})")
        return self.tokens[i]

    def _lookup(self, token: str) -> int | None:
        return self._ids.get(token)

    def _save_files(self, directory: Path) -> dict[str, Any]:
        return {"units": self.tokens[len(SPECIAL_TOKENS) + len(self.extra_tokens):]}


def train_tokenizer(
    texts: Iterable[str],
    kind: str = "char",
    vocab_size: int = 0,
    extra_tokens: Sequence[str] = (),
    normalizer: TextNormalizer = TextNormalizer(),
) -> Tokenizer:
    """Build a tokenizer from training transcripts.

    kind: "char" (vocab_size ignored: every character seen becomes a unit, most frequent first), or
    "bpe"/"unigram" (SentencePiece; vocab_size counts every id, specials and extra tokens included).
    """
    if kind == "char":
        counts = Counter(ch for text in texts for ch in normalizer(text).replace(" ", SPACE))
        if not counts:
            raise ValueError("train_tokenizer: no text to learn characters from")
        units = sorted(counts, key=lambda ch: (-counts[ch], ch))
        return CharTokenizer(units, extra_tokens, normalizer)
    if kind in ("bpe", "unigram"):
        from asr.text.sentencepiece import train_sentencepiece

        return train_sentencepiece(texts, kind, vocab_size, extra_tokens, normalizer)
    raise ValueError(f"train_tokenizer: unknown kind {kind!r}; expected 'char', 'bpe' or 'unigram'")


def load_tokenizer(directory: str | os.PathLike) -> Tokenizer:
    """Load a tokenizer saved with Tokenizer.save()."""
    path = Path(directory) / TOKENIZER_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"load_tokenizer: {path} does not exist") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"load_tokenizer: {path} is not valid JSON: {error}") from None
    try:
        kind = meta["kind"]
        extra = meta.get("extra_tokens", [])
        normalizer = TextNormalizer.from_dict(meta.get("normalizer", {}))
        if kind == "char":
            return CharTokenizer(meta["units"], extra, normalizer)
        if kind in ("bpe", "unigram"):
            from asr.text.sentencepiece import SentencePieceTokenizer

            return SentencePieceTokenizer.load(Path(directory), kind, extra, normalizer)
        if kind == "whisper":
            from asr.text.whisper import WhisperTokenizer

            return WhisperTokenizer.load(Path(directory), meta, normalizer)
        if kind == "s2t":
            from asr.text.speech2text import Speech2TextTokenizer

            return Speech2TextTokenizer.load(Path(directory), meta, normalizer)
    except KeyError as error:
        raise ValueError(f"load_tokenizer: {path}: missing field {error}") from None
    raise ValueError(f"load_tokenizer: {path}: unknown kind {kind!r}")
