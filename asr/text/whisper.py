"""Whisper's tokenizer behind the Tokenizer interface: byte-level BPE over a tiktoken vocabulary file,
then Whisper's special tokens, with the same ids as openai-whisper.

    ids 0 .. R-1        the BPE ranks of the vocabulary file (multilingual.tiktoken: R = 50257,
                        gpt2.tiktoken for English-only models: R = 50256)
    R                   <|endoftext|>         (eos_id)
    R + 1               <|startoftranscript|> (sos_id)
    R + 2 ...           one token per language (<|en|>, <|zh|>, … in openai-whisper's order)
    then                <|translate|> <|transcribe|> <|startoflm|> <|startofprev|> <|nospeech|>
                        <|notimestamps|>, and the 1501 timestamps <|0.00|> … <|30.00|>

Decoding maps DecodeOptions onto Whisper's prompt <|startoftranscript|><|lang|><|task|><|notimestamps|>:
task "asr" (or None) is <|transcribe|> and "st" <|translate|> (into English); target_lang names the
spoken language for transcription. Without it (and always for translation) the search detects the
language from the audio, as openai-whisper does. The vocabulary file is read from disk only (the
model directory keeps a copy), never downloaded. Encoding needs the `regex` module (for \\p{L}).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from asr.fileio import atomic_write_text
from asr.text.normalize import TextNormalizer
from asr.text.tokenizer import Tokenizer

# openai-whisper's LANGUAGES, in order: the language tokens follow <|startoftranscript|> in this order.
LANGUAGES = (
    "en", "zh", "de", "es", "ru", "ko", "fr", "ja", "pt", "tr", "pl", "ca", "nl", "ar", "sv", "it", "id", "hi",
    "fi", "vi", "he", "uk", "el", "ms", "cs", "ro", "da", "hu", "ta", "no", "th", "ur", "hr", "bg", "lt", "la",
    "mi", "ml", "cy", "sk", "te", "fa", "lv", "bn", "sr", "az", "sl", "kn", "et", "mk", "br", "eu", "is", "hy",
    "ne", "mn", "bs", "kk", "sq", "sw", "gl", "mr", "pa", "si", "km", "sn", "yo", "so", "af", "oc", "ka", "be",
    "tg", "sd", "gu", "am", "yi", "lo", "uz", "fo", "ht", "ps", "tk", "nn", "mt", "sa", "lb", "my", "bo", "tl",
    "mg", "as", "tt", "haw", "ln", "ha", "ba", "jw", "su", "yue",
)
TASK_TOKENS = ("<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>",
               "<|notimestamps|>")
NUM_TIMESTAMPS = 1501  # <|0.00|> .. <|30.00|> in steps of 0.02 s
# Specials besides the languages: <|endoftext|>, <|startoftranscript|>, the task tokens and the timestamps.
NUM_FIXED_SPECIALS = 2 + len(TASK_TOKENS) + NUM_TIMESTAMPS
# GPT-2's pre-tokenisation pattern (tiktoken "gpt2", which Whisper uses for both vocabularies).
PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# Symbols openai-whisper suppresses by default (Tokenizer.non_speech_tokens): speaker tags, music notes…
NON_SPEECH_SYMBOLS = (*'"#()*+/:;<=>@[\\]^_`{|}~「」『』', "<<", ">>", "<<<", ">>>", "--", "---", "-(", "-[", "('",
                      '("', "((", "))", "(((", ")))", "[[", "]]", "{{", "}}", "♪♪", "♪♪♪")
MISCELLANEOUS_SYMBOLS = "♩♪♫♬♭♮♯"


def read_tiktoken(path: str | os.PathLike) -> list[bytes]:
    """A tiktoken vocabulary file ("<base64 token> <rank>" per line, ranks 0..N-1 in order) -> tokens by rank."""
    tokens: list[bytes] = []
    try:
        lines = Path(path).read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot read a tiktoken vocabulary ({error})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            tokens.append(base64.b64decode(token))  # not validate=True: rank 50256 is "=" (empty)
        except ValueError:
            raise ValueError(f"{path}:{number}: expected '<base64 token> <rank>', got {line[:60]!r}") from None
        if int(rank) != len(tokens) - 1:
            raise ValueError(f"{path}:{number}: rank {rank} out of order (expected {len(tokens) - 1})")
    if not tokens:
        raise ValueError(f"{path}: empty tiktoken vocabulary")
    return tokens


def byte_level_alphabet() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (how vocab.json files spell tokens)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {byte: chr(char) for byte, char in zip(printable, chars)}


def tokens_from_vocab_json(vocab: Mapping[str, int], size: int, source: str) -> list[bytes]:
    """The first `size` ids of a byte-level BPE vocab.json (token string -> id) as bytes, by id."""
    decode_char = {char: byte for byte, char in byte_level_alphabet().items()}
    tokens: list[bytes | None] = [None] * size
    for token, index in vocab.items():
        if 0 <= index < size:
            try:
                tokens[index] = bytes(decode_char[ch] for ch in token)
            except KeyError:
                raise ValueError(f"{source}: token {token!r} (id {index}) is not byte-level BPE") from None
    missing = [i for i, t in enumerate(tokens) if t is None]
    if missing:
        raise ValueError(f"{source}: ids {missing[:5]} of the first {size} are missing")
    return [t for t in tokens if t is not None]


class WhisperTokenizer(Tokenizer):
    """Whisper's vocabulary: `ranks` (bytes of each BPE token, by id) then the special tokens.

    num_languages: language tokens in the vocabulary (99, or 100 for large-v3); multilingual:
    whether the model reads language and task tokens (English-only models read <|notimestamps|> only).
    """

    kind = "whisper"

    def __init__(self, ranks: Sequence[bytes], num_languages: int, multilingual: bool,
                 vocab_file: str = "multilingual.tiktoken",
                 normalizer: TextNormalizer = TextNormalizer(lowercase=False, remove_punctuation=False,
                                                             unicode_form=None)) -> None:
        super().__init__((), normalizer)
        if not 0 <= num_languages <= len(LANGUAGES):
            raise ValueError(f"WhisperTokenizer: num_languages={num_languages} not in [0, {len(LANGUAGES)}]")
        self.ranks = list(ranks)
        self._rank_of = {token: i for i, token in enumerate(self.ranks)}
        self.num_languages, self.multilingual, self.vocab_file = num_languages, multilingual, vocab_file
        self.languages = LANGUAGES[:num_languages]
        specials = ["<|endoftext|>", "<|startoftranscript|>", *(f"<|{lang}|>" for lang in self.languages),
                    *TASK_TOKENS, *(f"<|{i * 0.02:.2f}|>" for i in range(NUM_TIMESTAMPS))]
        self.specials = {token: len(self.ranks) + i for i, token in enumerate(specials)}
        self._special_names = specials
        self.eot = self.specials["<|endoftext|>"]
        # No blank, <unk> or padding in Whisper: they alias <|endoftext|> (as transformers pads with it).
        self.eos_id = self.blank_id = self.unk_id = self.pad_id = self.eot
        self.sos_id = self.specials["<|startoftranscript|>"]
        self.timestamp_begin = self.specials["<|0.00|>"]
        self._alphabet = byte_level_alphabet()
        self._bytes_of_char = {char: byte for byte, char in self._alphabet.items()}
        self._cache: dict[bytes, list[int]] = {}

    @classmethod
    def for_vocab_size(cls, ranks: Sequence[bytes], vocab_size: int, vocab_file: str) -> WhisperTokenizer:
        """The tokenizer of a model with `vocab_size` outputs (openai-whisper's rules: multilingual when
        vocab_size >= 51865; the language count is what the size leaves after the other specials)."""
        num_languages = vocab_size - len(ranks) - NUM_FIXED_SPECIALS
        if not 0 < num_languages <= len(LANGUAGES):
            raise ValueError(f"{vocab_file}: {len(ranks)} BPE tokens do not fit a Whisper model with {vocab_size} "
                             f"outputs (that would leave {num_languages} language tokens)")
        return cls(ranks, num_languages, vocab_size >= 51865, vocab_file)

    @classmethod
    def load(cls, directory: Path, meta: Mapping[str, Any], normalizer: TextNormalizer) -> WhisperTokenizer:
        ranks = read_tiktoken(directory / meta["vocab_file"])
        return cls(ranks, int(meta["num_languages"]), bool(meta["multilingual"]), meta["vocab_file"], normalizer)

    # --- ids the search needs ---------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return len(self.ranks) + len(self.specials)

    @property
    def skipped_ids(self) -> frozenset[int]:
        return frozenset(range(self.eot, self.vocab_size))

    @cached_property
    def suppressed_ids(self) -> frozenset[int]:  # type: ignore[override]
        """openai-whisper's default suppress_tokens="-1": non-speech symbols and the prompt-only specials."""
        prompt_only = ("<|transcribe|>", "<|translate|>", "<|startoftranscript|>", "<|startofprev|>",
                       "<|startoflm|>", "<|nospeech|>")
        return frozenset(self.non_speech_ids) | {self.specials[t] for t in prompt_only}

    @cached_property
    def initial_suppressed_ids(self) -> frozenset[int]:  # type: ignore[override]
        """openai-whisper's suppress_blank: no blank and no <|endoftext|> as the first token."""
        return frozenset([*self.encode_ordinary(" "), self.eot])

    @property
    def language_ids(self) -> tuple[int, ...]:
        return tuple(self.specials[f"<|{lang}|>"] for lang in self.languages) if self.multilingual else ()

    def prefix_ids(self, task: str | None, target_lang: str | None) -> list[int | None]:
        notimestamps = self.specials["<|notimestamps|>"]
        if not self.multilingual:
            if task == "st" or target_lang not in (None, "en"):
                raise ValueError(f"this English-only Whisper model only transcribes English (task={task!r}, "
                                 f"target_lang={target_lang!r})")
            return [notimestamps]
        if task == "st":
            if target_lang not in (None, "en"):
                raise ValueError(f"Whisper translates into English only, not target_lang={target_lang!r}")
            return [None, self.specials["<|translate|>"], notimestamps]  # the source language is detected
        language = None
        if target_lang is not None:
            if target_lang not in self.languages:
                raise ValueError(f"DecodeOptions.target_lang={target_lang!r}: not one of this Whisper model's "
                                 f"languages ({', '.join(self.languages)})")
            language = self.specials[f"<|{target_lang}|>"]
        return [language, self.specials["<|transcribe|>"], notimestamps]

    @cached_property
    def non_speech_ids(self) -> tuple[int, ...]:
        """openai-whisper's Tokenizer.non_speech_tokens (the same rules, so the same ids)."""
        result = {self.encode_ordinary(" -")[0], self.encode_ordinary(" '")[0]}
        for symbol in (*NON_SPEECH_SYMBOLS, *MISCELLANEOUS_SYMBOLS):
            for ids in (self.encode_ordinary(symbol), self.encode_ordinary(" " + symbol)):
                if len(ids) == 1 or symbol in MISCELLANEOUS_SYMBOLS:
                    result.add(ids[0])
        return tuple(sorted(result))

    # --- text <-> ids ------------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        return self.encode_ordinary(self.normalizer(text))

    def encode_ordinary(self, text: str) -> list[int]:
        """BPE ids of `text` exactly as given (special-token names are ordinary text here)."""
        ids: list[int] = []
        for piece in self._splitter.findall(text):
            ids.extend(self._bpe(piece.encode("utf-8")))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        data = b"".join(self.ranks[i] for i in map(int, ids) if 0 <= i < self.eot)
        return data.decode("utf-8", errors="replace").strip()

    def id_to_token(self, i: int) -> str:
        if not 0 <= i < self.vocab_size:
            raise IndexError(f"tokenizer: id {i} out of range [0, {self.vocab_size})")
        if i >= len(self.ranks):
            return self._special_names[i - len(self.ranks)]
        return "".join(self._alphabet[b] for b in self.ranks[i])

    def _lookup(self, token: str) -> int | None:
        if token in self.specials:
            return self.specials[token]
        try:
            return self._rank_of.get(bytes(self._bytes_of_char[ch] for ch in token))
        except KeyError:
            return None

    def _save_files(self, directory: Path) -> dict[str, Any]:
        # An empty token is written "=" (as in openai-whisper's files), so that every line has two fields.
        lines = "".join(f"{base64.b64encode(token).decode('ascii') or '='} {rank}\n"
                        for rank, token in enumerate(self.ranks))
        atomic_write_text(directory / self.vocab_file, lines)
        return {"vocab_file": self.vocab_file, "num_languages": self.num_languages, "multilingual": self.multilingual}

    @cached_property
    def _splitter(self) -> Any:
        import regex  # a dependency of sacrebleu; Python's re has no \p{L}

        return regex.compile(PATTERN)

    def _bpe(self, piece: bytes) -> list[int]:
        """tiktoken's byte-pair merge: repeatedly join the adjacent pair whose concatenation has the lowest rank."""
        cached = self._cache.get(piece)
        if cached is not None:
            return cached
        if piece in self._rank_of:
            ids = [self._rank_of[piece]]
        else:
            parts = [piece[i : i + 1] for i in range(len(piece))]
            while len(parts) > 1:
                best, best_rank = -1, len(self.ranks)
                for i in range(len(parts) - 1):
                    rank = self._rank_of.get(parts[i] + parts[i + 1])
                    if rank is not None and rank < best_rank:
                        best, best_rank = i, rank
                if best < 0:
                    break
                parts[best : best + 2] = [parts[best] + parts[best + 1]]
            ids = [self._rank_of[p] for p in parts]
        if len(self._cache) < 100_000:
            self._cache[piece] = ids
        return ids

    def __repr__(self) -> str:
        kind = "multilingual" if self.multilingual else "English-only"
        return f"WhisperTokenizer({kind}, vocab_size={self.vocab_size}, languages={self.num_languages})"
