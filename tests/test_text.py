"""Tokenizers (characters, SentencePiece BPE/unigram) and the text normaliser."""

from __future__ import annotations

import json

import pytest

from asr.model import BLANK_ID, EOS_ID, PAD_ID, SOS_ID
from asr.text import SPECIAL_TOKENS, UNK_ID, TextNormalizer, load_tokenizer, train_tokenizer

TEXTS = [
    "Turn on the kitchen lights, please!",
    "Schalte bitte das Licht in der Küche ein.",
    "Grüße aus München: schöne Straße, großer Fluß.",
    "北京欢迎你。今天天气很好！",
    "I don't know what \"it\" means... 42 times?",
] + [f"set a timer for {n} minutes and play some music" for n in range(40)]

EXTRA = ("<asr>", "<st>", "<en>", "<de>")


def test_normalizer_case_punctuation_whitespace_unicode():
    norm = TextNormalizer()
    assert norm("  Hello,   WORLD!! ") == "hello world"
    assert norm("Don't stop") == "don't stop"
    assert norm("北京欢迎你。今天") == "北京欢迎你 今天"
    assert norm("Ｆｕｌｌｗｉｄｔｈ") == "fullwidth"  # NFKC
    assert norm("«Straße»") == "straße"
    assert TextNormalizer(lowercase=False, remove_punctuation=False)("A, b") == "A, b"
    assert TextNormalizer(remove_symbols=True)("5 € + 3 $") == "5 3"
    with pytest.raises(ValueError, match="unicode_form"):
        TextNormalizer(unicode_form="XYZ")


@pytest.mark.parametrize("kind", ["char", "bpe", "unigram"])
def test_round_trip_and_special_layout(kind, tmp_path):
    tokenizer = train_tokenizer(TEXTS, kind=kind, vocab_size=120, extra_tokens=EXTRA)
    assert [tokenizer.id_to_token(i) for i in range(len(SPECIAL_TOKENS) + len(EXTRA))] == [*SPECIAL_TOKENS, *EXTRA]
    assert (tokenizer.blank_id, tokenizer.sos_id, tokenizer.eos_id, tokenizer.pad_id) == (
        BLANK_ID, SOS_ID, EOS_ID, PAD_ID)
    for text in TEXTS:
        ids = tokenizer.encode(text)
        assert all(i >= len(SPECIAL_TOKENS) + len(EXTRA) for i in ids), "text never yields special tokens"
        assert tokenizer.decode(ids) == tokenizer.normalizer(text)
    # Special and task tokens are dropped when decoding.
    ids = tokenizer.encode("schöne Straße")
    framed = [SOS_ID, tokenizer.token_to_id("<st>"), tokenizer.token_to_id("<de>"), *ids, EOS_ID, PAD_ID, BLANK_ID]
    assert tokenizer.decode(framed) == "schöne straße"
    assert tokenizer.encode("") == [] and tokenizer.decode([]) == ""

    tokenizer.save(tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert loaded.vocab_size == tokenizer.vocab_size and loaded.kind == kind
    for text in TEXTS:
        assert loaded.encode(text) == tokenizer.encode(text)
    assert loaded.token_to_id("<de>") == tokenizer.token_to_id("<de>")


def test_char_tokenizer_unknown_characters_and_errors():
    tokenizer = train_tokenizer(["abc abc"], kind="char")
    assert tokenizer.encode("abz") == [tokenizer.token_to_id("a"), tokenizer.token_to_id("b"), UNK_ID]
    assert tokenizer.decode(tokenizer.encode("abz")) == "ab<unk>"
    with pytest.raises(ValueError, match="'<de>' is not in the vocabulary"):
        tokenizer.token_to_id("<de>")
    with pytest.raises(IndexError):
        tokenizer.id_to_token(tokenizer.vocab_size)
    with pytest.raises(ValueError, match="no text"):
        train_tokenizer(["", "  "], kind="char")
    with pytest.raises(ValueError, match="unknown kind 'words'"):
        train_tokenizer(TEXTS, kind="words")
    with pytest.raises(ValueError, match="clash"):
        train_tokenizer(TEXTS, kind="char", extra_tokens=("<eos>",))


def test_sentencepiece_errors_and_normalizer_is_saved(tmp_path):
    with pytest.raises(ValueError, match="leaves no room"):
        train_tokenizer(TEXTS, kind="bpe", vocab_size=5)
    keep_case = TextNormalizer(lowercase=False)
    tokenizer = train_tokenizer(TEXTS, kind="bpe", vocab_size=100, normalizer=keep_case)
    tokenizer.save(tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert loaded.normalizer == keep_case
    assert loaded.decode(loaded.encode("Turn I")) == "Turn I"


def test_load_tokenizer_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text(json.dumps({"kind": "char"}))
    with pytest.raises(ValueError, match="missing field 'units'"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text(json.dumps({"kind": "bpe"}))
    with pytest.raises(FileNotFoundError, match="tokenizer.model"):
        load_tokenizer(tmp_path)
