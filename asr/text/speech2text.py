"""fairseq Speech2Text's tokenizer behind the Tokenizer interface: a SentencePiece model for the text,
and the fairseq dictionary (transformers' vocab.json) for the ids.

fairseq numbers its dictionary <s>=0, <pad>=1, </s>=2, <unk>=3, then the pieces; decoding starts
from </s> (sos_id = eos_id = 2). Multilingual translation models have target-language tokens
"<lang:de>" that are forced after </s>: DecodeOptions.target_lang picks one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import sentencepiece as spm

from asr.fileio import atomic_write
from asr.text.normalize import TextNormalizer
from asr.text.tokenizer import Tokenizer

MODEL_FILE = "tokenizer.model"
LANG_TOKEN = re.compile(r"<lang:([\w-]+)>")


class Speech2TextTokenizer(Tokenizer):
    """vocab: the token of each id (fairseq dictionary order); model_proto: the SentencePiece model.

    sos_id: the decoder's start token (fairseq: </s>). upper_case: upper-case decoded text (models
    trained on upper-case transcripts, transformers' do_upper_case). The search never emits <s> or <pad>.
    """

    kind = "s2t"

    def __init__(self, vocab: Sequence[str], model_proto: bytes, sos_id: int | None = None,
                 upper_case: bool = False,
                 normalizer: TextNormalizer = TextNormalizer(lowercase=False, remove_punctuation=False,
                                                             unicode_form=None)) -> None:
        super().__init__((), normalizer)
        self.vocab = list(vocab)
        self._ids = {token: i for i, token in enumerate(self.vocab)}
        if len(self._ids) != len(self.vocab):
            raise ValueError("Speech2Text vocabulary: tokens repeat")
        missing = [t for t in ("<s>", "<pad>", "</s>", "<unk>") if t not in self._ids]
        if missing:
            raise ValueError(f"Speech2Text vocabulary: no {', '.join(missing)} token")
        self.bos_id, self.pad_id = self._ids["<s>"], self._ids["<pad>"]
        self.eos_id, self.unk_id = self._ids["</s>"], self._ids["<unk>"]
        self.sos_id = self.eos_id if sos_id is None else sos_id
        self.blank_id = self.pad_id  # no blank (no CTC head)
        self.upper_case = upper_case
        self._proto = model_proto
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        self.target_languages = {m.group(1): i for i, t in enumerate(self.vocab) if (m := LANG_TOKEN.fullmatch(t))}

    @classmethod
    def load(cls, directory: Path, meta: Mapping[str, Any], normalizer: TextNormalizer) -> Speech2TextTokenizer:
        path = directory / meta.get("model_file", MODEL_FILE)
        if not path.is_file():
            raise FileNotFoundError(f"load_tokenizer: {path} does not exist")
        return cls(meta["vocab"], path.read_bytes(), int(meta["sos_id"]), bool(meta.get("upper_case", False)),
                   normalizer)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def skipped_ids(self) -> frozenset[int]:
        return frozenset({self.bos_id, self.pad_id, self.eos_id, self.sos_id, *self.target_languages.values()})

    @property
    def suppressed_ids(self) -> frozenset[int]:
        return frozenset({self.bos_id, self.pad_id})

    def prefix_ids(self, task: str | None, target_lang: str | None) -> list[int | None]:
        """The target-language token <lang:xx> of a multilingual model; none without target_lang (as
        transformers: the model then emits a language token first, which decode() drops). The task
        picks nothing: a Speech2Text model does one task."""
        known = ", ".join(sorted(self.target_languages)) or "none"
        if target_lang is None:
            return []
        if target_lang not in self.target_languages:
            raise ValueError(f"DecodeOptions.target_lang={target_lang!r}: this Speech2Text model has no "
                             f"<lang:{target_lang}> token (its target languages: {known})")
        return [self.target_languages[target_lang]]

    def encode(self, text: str) -> list[int]:
        pieces = self._sp.encode(self.normalizer(text), out_type=str)
        return [self._ids.get(piece, self.unk_id) for piece in pieces]

    def decode(self, ids: Iterable[int]) -> str:
        skipped = self.skipped_ids
        text = self._sp.decode([self.vocab[i] for i in map(int, ids) if i not in skipped])
        return text.upper() if self.upper_case else text

    def id_to_token(self, i: int) -> str:
        if not 0 <= i < len(self.vocab):
            raise IndexError(f"tokenizer: id {i} out of range [0, {len(self.vocab)})")
        return self.vocab[i]

    def _lookup(self, token: str) -> int | None:
        return self._ids.get(token)

    def _save_files(self, directory: Path) -> dict[str, Any]:
        atomic_write(directory / MODEL_FILE, lambda f: f.write(self._proto))
        return {"model_file": MODEL_FILE, "vocab": self.vocab, "sos_id": self.sos_id, "upper_case": self.upper_case}
