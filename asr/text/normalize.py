"""Text normalisation shared by training targets and scoring, so that WER measures what the model learns."""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from asr.typed_config import from_dict

_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class TextNormalizer:
    """Case folding, punctuation removal, Unicode normalisation and whitespace collapsing.

    `keep` lists punctuation characters that survive (the apostrophe by default, since "don't" and
    "dont" are different words). Punctuation is anything in a Unicode "P" category, plus symbols
    ("S" categories) when `remove_symbols` is set, so that it works beyond ASCII (e.g. "。", "«»").
    """

    lowercase: bool = True
    remove_punctuation: bool = True
    remove_symbols: bool = False
    unicode_form: str | None = "NFKC"
    keep: str = "'"

    def __post_init__(self) -> None:
        if self.unicode_form not in (None, "NFC", "NFKC", "NFD", "NFKD"):
            raise ValueError(
                f"TextNormalizer.unicode_form: expected NFC/NFKC/NFD/NFKD or None, got {self.unicode_form!r}")

    def __call__(self, text: str) -> str:
        if self.unicode_form:
            text = unicodedata.normalize(self.unicode_form, text)
        if self.lowercase:
            text = text.lower()
        if self.remove_punctuation or self.remove_symbols:
            text = "".join(" " if self._drops(ch) else ch for ch in text)
        return _SPACES.sub(" ", text).strip()

    def _drops(self, ch: str) -> bool:
        if ch in self.keep:
            return False
        category = unicodedata.category(ch)[0]
        return (self.remove_punctuation and category == "P") or (self.remove_symbols and category == "S")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TextNormalizer:
        return from_dict(cls, data)
