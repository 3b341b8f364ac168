"""Text: one tokenizer interface (characters or SentencePiece) and the normaliser shared with scoring."""

from asr.text.normalize import TextNormalizer
from asr.text.tokenizer import (
    BLANK_ID,
    EOS_ID,
    PAD_ID,
    SOS_ID,
    SPECIAL_TOKENS,
    UNK_ID,
    CharTokenizer,
    Tokenizer,
    load_tokenizer,
    train_tokenizer,
)

__all__ = [
    "BLANK_ID", "EOS_ID", "PAD_ID", "SOS_ID", "SPECIAL_TOKENS", "UNK_ID",
    "CharTokenizer", "TextNormalizer", "Tokenizer", "load_tokenizer", "train_tokenizer",
]
