"""The `freedict` corpus: human-translated English->German example sentences, spoken by eSpeak NG.

    manifests = prepare_freedict("data/freedict")   # {"train": Path, "dev": ..., "test": ...}

Source: the English-German FreeDict dictionary (Debian: `apt-get install dict-freedict-eng-deu`,
files /usr/share/dictd/freedict-eng-deu.index and .dict.dz). About 9,400 of its entries' usage
examples are whole sentences with a human German translation. In this TEI->dictd rendering an
example is a line of its entry

          "You missed school for three consecutive days."  - Du hast drei Tage ... versäumt.

(six spaces, the English in double quotes, two spaces, "- ", the German). Most examples are
phrases ("postdate sth."  - etw. zurück datieren); a sentence starts with a capital letter (or
an opening quote) and ends with ".", "?" or "!". The rendering has quirks that `clean_pair` deals
with, so that the English is what eSpeak says and the German a single translation of it:

- Several translations are joined by ", " after the first one's final punctuation
  ("Er ist nur ein Kind., Er ist (doch) noch ein Kind."): the first is kept.
- Parentheses mark optional words or notes ("swath(e)", "(just) barely", "(Vortrag)"): dropped.
- "a/b" offers word alternatives ("revealed/unveiled", "with/to"): the first is kept. Where a
  content word and a function word meet at the slash ("des Prestiges/der Ehre wegen") the
  alternatives are phrases of unclear extent, as they are in "A / B" ("three consecutive days /
  three days in a row"): such pairs are left out, as are placeholders (sth., sb., etw., jdn. ...),
  gaps ("…"), and English with digits (eSpeak would say "one hundred and fifty" where the
  transcript has "150").
- The same example appears in several entries (singular and plural, British and American
  spellings): pairs are deduplicated by their English, compared without case and punctuation;
  an English sentence with several translations keeps the most frequent (then the first).

Splits: a hash of that English key puts a sentence in train, dev or test, so the test sentences
never occur in training whatever the sizes. The English is spoken with the synth corpus's voices
(synth_voices: the splits share no voice) by asr.datasets.synth.synthesize_pairs, which renders
incrementally and marks finished splits with `<split>.done`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from asr.datasets.augment import AugmentConfig
from asr.datasets.dictd import iter_entries, read_dict_data, read_index
from asr.datasets.synth import synthesize_pairs

logger = logging.getLogger(__name__)

DICT_DIR = "/usr/share/dictd"
DICT_NAME = "freedict-eng-deu"
INSTALL_HINT = "apt-get install dict-freedict-eng-deu"
SPLITS = ("train", "dev", "test")
# Per mille of the sentences held out for dev and test (about 250 and 420 of the 8,400).
DEV_PER_MILLE = 30
TEST_PER_MILLE = 50
MAX_WORDS = 30  # longer English examples (a dozen of them, some whole paragraphs) are left out

_EXAMPLE = re.compile(r'^      "(.*)"  - (.*)$', re.MULTILINE)
_EXAMPLE_MARK = '\n      "'
_SENTENCE = re.compile(r"""^[("'‘“]?[A-Z0-9].*[.?!]["'’”]?$""")
# The end of a translation's final punctuation, where ", " starts another translation.
_NEXT_TRANSLATION = re.compile(r'[.?!][“"]?(?=, [„"A-ZÄÖÜ])')
_PLACEHOLDER = re.compile(r"\b(?:sth|sb|etw|jd|jdn|jdm|jds)\.", re.IGNORECASE)
_PARENTHESES = re.compile(r"\s*\([^()]*\)")
_WORD_ALTERNATIVES = re.compile(r"[\w'’-]+(?:/[\w'’-]+)+")
# Articles, prepositions, pronouns and conjunctions: a slash between one of these and a content
# word separates phrases ("im Angebot/in Aktion"), not words.
_FUNCTION_WORDS = """
    a an the to in on at of for with by from into onto about as and or but not no my your his her its our
    their this that these those some any one through around via over under up down off out before after
    since until across along within without behind below above near per towards toward upon
    der die das den dem des ein eine einen einem einer eines kein keine im in am an auf aus bei mit nach
    von vom zu zum zur für über unter vor hinter neben zwischen durch gegen ohne um und oder aber nicht
    mein meine dein deine sein seine ihr ihre unser unsere euer eure sich es er sie wir ihn ihm ab bis
    seit trotz wegen während
"""
FUNCTION_WORDS = frozenset(_FUNCTION_WORDS.split())
_SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+([.,?!:;])")


@dataclass(frozen=True)
class FreedictPair:
    """An English example sentence and its German translation, as cleaned by clean_pair."""

    en: str
    de: str


def find_dictionary(root: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """The .index and .dict.dz (or .dict) of the English-German FreeDict under `root` (default /usr/share/dictd)."""
    folder = Path(root if root is not None else DICT_DIR)
    index = folder / f"{DICT_NAME}.index"
    candidates = [folder / f"{DICT_NAME}.dict.dz", folder / f"{DICT_NAME}.dict"]
    data = next((path for path in candidates if path.is_file()), None)
    if not index.is_file() or data is None:
        missing = index if not index.is_file() else candidates[0]
        raise FileNotFoundError(
            f"freedict: {missing} not found. The English-German FreeDict dictionary is a Debian package: "
            f"{INSTALL_HINT} (it installs {DICT_DIR}/{DICT_NAME}.index and .dict.dz); or set data.root to "
            f"the folder that holds {DICT_NAME}.index and {DICT_NAME}.dict.dz")
    return index, data


def read_examples(index_path: str | os.PathLike, dict_path: str | os.PathLike) -> list[tuple[str, str]]:
    """Every (English, German) example line of the dictionary's entries, raw, in dictionary order."""
    data = read_dict_data(dict_path)
    examples = []
    for entry in iter_entries(read_index(index_path), data, index_path=index_path):
        if _EXAMPLE_MARK in entry.text:  # an example is never an entry's first line (the headword is)
            examples.extend((m.group(1), m.group(2)) for m in _EXAMPLE.finditer(entry.text))
    return examples


def _tidy(text: str) -> str:
    return _SPACE_BEFORE_PUNCTUATION.sub(r"\1", " ".join(text.split())).strip()


def _drop_parentheses(text: str) -> str:
    """Without its parenthesised parts; a sentence that began with one still begins with a capital."""
    result = _tidy(_PARENTHESES.sub("", text))
    if text.startswith("(") and result:
        result = result[0].upper() + result[1:]
    return result


def _first_alternatives(text: str) -> str | None:
    """The first of each word alternative ("a/b/c" -> "a"); None where a slash separates phrases (FUNCTION_WORDS)."""
    phrases = False

    def first(match: re.Match) -> str:
        nonlocal phrases
        words = match.group(0).split("/")
        if len({word.casefold() in FUNCTION_WORDS for word in words}) > 1:
            phrases = True
        return words[0]

    result = _WORD_ALTERNATIVES.sub(first, text)
    return None if phrases or "/" in result else result


def clean_pair(en: str, de: str, max_words: int = MAX_WORDS) -> tuple[FreedictPair | None, str]:
    """A raw example as a corpus pair, or None and the reason it is left out (see the module docstring)."""
    en = unicodedata.normalize("NFC", en).replace("‘", "'").replace("’", "'").strip()
    de = unicodedata.normalize("NFC", de).strip()
    if not _SENTENCE.match(en):
        return None, "not a sentence"
    end = _NEXT_TRANSLATION.search(de)
    if end is not None:
        de = de[:end.end()]
    both = f"{en}\n{de}"
    if _PLACEHOLDER.search(both):
        return None, "placeholder"
    if "…" in both or "..." in both:
        return None, "gap"
    if any(char.isdigit() for char in en):
        return None, "digits"
    if " / " in both:
        return None, "alternatives"
    en, de = _drop_parentheses(en), _drop_parentheses(de)
    if "(" in en + de or ")" in en + de:  # unbalanced or nested
        return None, "brackets"
    en, de = _first_alternatives(en), _first_alternatives(de)
    if en is None or de is None:
        return None, "alternatives"
    if not _SENTENCE.match(en) or not any(char.isalpha() for char in de):
        return None, "not a sentence"
    if len(en.split()) > max_words:
        return None, "too long"
    return FreedictPair(en, de), ""


def sentence_key(en: str) -> str:
    """What makes two English sentences the same: their words, without case and punctuation."""
    return " ".join(re.sub(r"[^\w']+", " ", en.casefold()).split())


def _digest(key: str) -> bytes:
    return hashlib.sha256(f"freedict/{key}".encode()).digest()


def sentence_split(en: str) -> str:
    """The split ("train", "dev" or "test") of an English sentence, from a hash of its key."""
    bucket = int.from_bytes(_digest(sentence_key(en))[:8], "big") % 1000
    if bucket < TEST_PER_MILLE:
        return "test"
    if bucket < TEST_PER_MILLE + DEV_PER_MILLE:
        return "dev"
    return "train"


def deduplicate(pairs: Iterable[FreedictPair]) -> list[FreedictPair]:
    """One pair per English key: the most frequent translation, ties broken by order; in first-seen order."""
    groups: dict[str, list[FreedictPair]] = defaultdict(list)
    for pair in pairs:
        groups[sentence_key(pair.en)].append(pair)
    result = []
    for group in groups.values():
        counts = Counter(pair.de for pair in group)
        best = max(counts.values())
        result.append(next(pair for pair in group if counts[pair.de] == best))
    return result


def split_pairs(pairs: Iterable[FreedictPair]) -> dict[str, list[FreedictPair]]:
    """{"train" | "dev" | "test": pairs}, each split in a fixed pseudo-random order (by hash)."""
    splits: dict[str, list[FreedictPair]] = {split: [] for split in SPLITS}
    for pair in pairs:
        splits[sentence_split(pair.en)].append(pair)
    for items in splits.values():
        items.sort(key=lambda pair: _digest(sentence_key(pair.en)))
    return splits


def load_pairs(root: str | os.PathLike | None = None, max_words: int = MAX_WORDS) -> dict[str, list[FreedictPair]]:
    """Read, clean, deduplicate and split the dictionary's example sentences (logs what was left out)."""
    index_path, dict_path = find_dictionary(root)
    examples = read_examples(index_path, dict_path)
    kept, dropped = [], Counter()
    for en, de in examples:
        pair, reason = clean_pair(en, de, max_words)
        if pair is None:
            dropped[reason] += 1
        else:
            kept.append(pair)
    unique = deduplicate(kept)
    if not unique:
        raise ValueError(f"freedict: {dict_path}: no example sentence pairs found among {len(examples)} examples "
                         f"(is it the English-German FreeDict dictionary?)")
    splits = split_pairs(unique)
    logger.info("freedict: %s: %d examples, %d usable sentence pairs (left out: %s), %d after deduplication "
                "(train %d, dev %d, test %d)", dict_path, len(examples), len(kept),
                ", ".join(f"{reason} {n}" for reason, n in dropped.most_common()), len(unique),
                *(len(splits[split]) for split in SPLITS))
    return splits


def _take(pairs: list[FreedictPair], count: int | None, split: str) -> list[FreedictPair]:
    if count is None:
        return pairs
    if count > len(pairs):
        logger.warning("freedict %s: num_%s=%d but the dictionary has %d sentences for it; using them all",
                       split, split, count, len(pairs))
    return pairs[:count]


def prepare_freedict(
    out_dir: str | os.PathLike,
    root: str | os.PathLike | None = None,
    *,
    num_train: int | None = None,
    num_dev: int | None = None,
    num_test: int | None = None,
    train_voices: int = 1,
    max_words: int = MAX_WORDS,
    seed: int = 0,
    noise: bool = False,
    reverb: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Speak the FreeDict sentence pairs and write `out_dir/{train,dev,test}.jsonl`; returns the manifest paths.

    root: the folder with freedict-eng-deu.index and .dict.dz (default /usr/share/dictd).
    num_train, num_dev, num_test: at most this many sentences per split (None: all); a smaller
        corpus is a subset of a larger one.
    train_voices: how many times each training sentence is spoken, by voices taken in turn from
        the training speakers (dev and test sentences are spoken once).
    max_words: leave out longer English sentences.
    seed: picks the voice of each utterance and seeds the augmentation.
    noise, reverb: augment the training audio (AugmentConfig).
    Manifests: `text` is the English, `target_text` the German (target_lang "de"), `speaker` the voice.
    """
    if isinstance(train_voices, bool) or not isinstance(train_voices, int) or train_voices < 1:
        raise ValueError(f"prepare_freedict: train_voices must be an integer >= 1, got {train_voices!r}")
    if isinstance(max_words, bool) or not isinstance(max_words, int) or max_words < 1:
        raise ValueError(f"prepare_freedict: max_words must be an integer >= 1, got {max_words!r}")
    counts = {"train": num_train, "dev": num_dev, "test": num_test}
    for split, count in counts.items():
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
            raise ValueError(f"prepare_freedict: num_{split} must be an integer >= 0 or null (all), got {count!r}")
    splits = load_pairs(root, max_words)
    chosen = {split: _take(splits[split], counts[split], split) for split in SPLITS}
    chosen["train"] = [pair for pair in chosen["train"] for _ in range(train_voices)]
    augment = {"train": AugmentConfig(noise=noise, reverb=reverb)}
    return synthesize_pairs(out_dir, chosen, name="freedict", seed=seed, augment=augment, workers=workers,
                            progress=progress)
