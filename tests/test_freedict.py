"""The freedict corpus: dictd reading, example extraction and cleaning, splits, prepare_freedict, the recipe.

The tests build a small dictionary in the real format (a dictd .index and a dictzip .dict.dz
with its random-access header), with entries copied from Debian's dict-freedict-eng-deu to keep
its quirks, and generated entries to give the splits some sentences.
"""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import pytest
import soundfile as sf
import yaml

import asr
import asr.datasets
from asr.data.manifest import read_manifest
from asr.datasets.dictd import DICTD_BASE64, DictdError, decode_number, iter_entries, read_dict_data, read_index
from asr.datasets.freedict import (
    DICT_DIR,
    FreedictPair,
    clean_pair,
    deduplicate,
    find_dictionary,
    load_pairs,
    prepare_freedict,
    read_examples,
    sentence_key,
    sentence_split,
    split_pairs,
)
from asr.datasets.synth_voices import speakers
from asr.recipe.prepare import PREPARERS
from tests.test_recipe import asr_run

NAME = "freedict-eng-deu"

# --- a fake dictionary in the real format -----------------------------------------------------

INFO = """English - German Ding/FreeDict dictionary

Availability:

    The "source form", as defined in both the GPLv3 and AGPLv3, of this
    dictionary is composed of the original Ding dictionary.
   * Transfer some annotations within Ding entries (e.g., when
     "Apfel" is a masculine noun, we may infer that its translation,
     "apple", is also a noun.
"""

# (headwords, entry text): verbatim entries of the real dictionary, with its quirks.
REAL_ENTRIES = [
    (["", "acute"], "acute /ɐkjˈuːt/ (´)\nAkut <masc>, Akut-Zeichen <neut> [print] ´\n"
     "      \"The word 'côte' has no acute on the 'e'.\"  - Das Wort 'côte' hat keinen Akut auf dem 'e'.\n"
     "   Synonym: {acute accent}\n\n"),
    (["discrimination"], "discrimination /dɪskɹˌɪmɪnˈeɪʃən/\n"
     "Benachteiligung <fem>, Diskriminierung <fem> [pol.]  [soc.]\n"
     "         Note: von jdm. gegenüber jdm.\n"
     "      \"discrimination because of race\"  - Benachteiligung aufgrund der Rasse, Rassendiskriminierung\n"
     " see: {discrimination}, {indirect discrimination}\n\n"),
    (["fuddle"], "fuddle /fˈʌdəl/\n [Br.] Benebelung <fem>, Benebeltsein <neut>, Nebel <fem>\n"
     "         Note: durch Alkohol\n"
     "      \"Through the fuddle of wine he heard her voice.\"  - Durch den Nebel des Weines hörte er ihre Stimme.\n"),
    (["barely"], "barely /bˈeəli/\nnur, kaum\n"
     "      \"He is barely a child.\"  - Er ist nur ein Kind., Er ist (doch) noch ein Kind.\n"
     "      \"You missed school for three consecutive days / three days in a row.\"  - "
     "Du hast drei Tage hintereinander den Unterricht versäumt.\n"
     "      \"The device retails at/for 150 euros.\"  - Das Gerät kostet im Einzelhandel 150 Euro.\n"),
    (["attention", "attention!"], "Attention! /ɐtˈɛnʃən/\nStillgestanden!\n"
     "      \"Attention!\"  - Stillgestanden!, Habt Acht!, Achtung steht!\n"
     "      \"'That depends on the circumstances' she hedged.\"  - "
     "„Das hängt von den Umständen ab.“, sagte sie ausweichend.\n"),
    (["succeed"], "succeed /səksˈiːd/\ngelingen\n"
     "      \"She succeeded in doing sth.\"  - Es gelang ihr, etw. zu tun\n"
     "      \"What are the odds on …?\"  - Wie stehen die Chancen, dass …?\n"
     "      \"postdate sth.\"  - etw. zurück datieren\n"),
    (["swath", "swathe"], "swath /swˈɒθ/\nSchneise <fem>\n"
     "      \"We cut a swath(e) through the dense undergrowth.\"  - Wir schlugen uns eine Schneise durch das dichte "
     "Unterholz.\n"
     "      \"Shall we dance?\"  - Darf ich bitten? (Aufforderung zum Tanz)\n"),
    (["kudos"], "kudos /kjˈuːdɒs/\nPrestige <neut>\n"
     "      \"In the good old days virus writers wrote their malcode for the kudos alone.\"  - In der guten alten "
     "Zeit erstellten die Virenschreiber ihre Schadroutinen nur des Prestiges/der Ehre wegen.\n"
     "      \"Particular/extreme caution is called for when administering beta-blockers.\"  - Bei der "
     "Verabreichung von Betablockern ist besondere/äußerste Vorsicht geboten.\n"),
    (["over"], "over /ˈəʊvə/\nvorbei\n      \"It's all over now!\"  - Damit ist es jetzt aus/vorbei!\n"),
    (["all over"], "all over /ˈɔːl ˈəʊvə/\naus\n      \"It's all over now!\"  - Es ist jetzt aus!\n"
     "      \"Will it take much longer?\"  - Dauert das noch lange?\n"),
    (["all over now"], "all over now\naus\n      \"It’s all over now!\"  - Es ist jetzt aus!\n"
     "      \"Will it take much longer!\"  - Dauert das noch lange!\n"),
]

NOUNS = [("dog", "Hund", "m"), ("cat", "Katze", "f"), ("house", "Haus", "n"), ("car", "Auto", "n"),
         ("garden", "Garten", "m"), ("door", "Tür", "f"), ("chair", "Stuhl", "m"), ("lamp", "Lampe", "f"),
         ("book", "Buch", "n"), ("coat", "Mantel", "m"), ("bottle", "Flasche", "f"), ("window", "Fenster", "n"),
         ("table", "Tisch", "m"), ("kitchen", "Küche", "f")]
ADJECTIVES = [("big", "groß"), ("small", "klein"), ("old", "alt"), ("new", "neu"), ("green", "grün"),
              ("cold", "kalt"), ("clean", "sauber"), ("heavy", "schwer")]


def _generated_entries() -> list[tuple[list[str], str]]:
    """One entry per noun, with 3 x 8 example sentences: 336 distinct pairs."""
    entries = []
    for en, de, gender in NOUNS:
        mine = "Meine" if gender == "f" else "Mein"
        article = {"m": "Der", "f": "Die", "n": "Das"}[gender]
        lines = [f"{en} /x/", f"{de} <{ {'m': 'masc', 'f': 'fem', 'n': 'neut'}[gender]}>"]
        for adj, adj_de in ADJECTIVES:
            lines.append(f'      "My {en} is {adj}."  - {mine} {de} ist {adj_de}.')
            lines.append(f'      "The {en} was very {adj}."  - {article} {de} war sehr {adj_de}.')
            lines.append(f'      "Is the {en} {adj}?"  - Ist {article.lower()} {de} {adj_de}?')
        entries.append(([en, f"{en}s"], "\n".join(lines) + "\n\n"))
    return entries


def encode_number(value: int) -> str:
    digits = ""
    while True:
        value, digit = divmod(value, 64)
        digits = DICTD_BASE64[digit] + digits
        if value == 0:
            return digits


def write_dictzip(path: Path, data: bytes, chunk: int = 4096) -> None:
    """dictzip as dictd's tools write it: gzip with an "RA" extra field listing the compressed chunks."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    sizes, body = [], b""
    for start in range(0, len(data), chunk):
        part = compressor.compress(data[start:start + chunk]) + compressor.flush(zlib.Z_FULL_FLUSH)
        sizes.append(len(part))
        body += part
    body += compressor.flush(zlib.Z_FINISH)
    table = struct.pack("<HHH", 1, chunk, len(sizes)) + b"".join(struct.pack("<H", s) for s in sizes)
    extra = b"RA" + struct.pack("<H", len(table)) + table
    header = b"\x1f\x8b\x08\x04" + struct.pack("<I", 1650557104) + b"\x02\x03" + struct.pack("<H", len(extra)) + extra
    path.write_bytes(header + body + struct.pack("<II", zlib.crc32(data), len(data)))


def write_dictionary(folder: Path, entries: list[tuple[list[str], str]]) -> Path:
    """freedict-eng-deu.index and .dict.dz under `folder`, with dictd's metadata entries first."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = [(["00databaseutf8"], "\n"), (["00databasedictfmt1130"], "00-database-dictfmt-1.13.0\n"),
            (["00databaseinfo"], INFO)]
    data, lines = b"", []
    for headwords, text in meta + entries:
        raw = text.encode("utf-8")
        lines += [f"{h}\t{encode_number(len(data))}\t{encode_number(len(raw))}" for h in headwords]
        data += raw
    (folder / f"{NAME}.index").write_text("\n".join(sorted(lines)) + "\n", encoding="utf-8")
    write_dictzip(folder / f"{NAME}.dict.dz", data)
    return folder


@pytest.fixture(scope="module")
def fake_dict(tmp_path_factory) -> Path:
    return write_dictionary(tmp_path_factory.mktemp("dictd"), REAL_ENTRIES + _generated_entries())


# --- dictd ------------------------------------------------------------------------------------


def test_dictd_numbers_index_and_entries(fake_dict: Path, tmp_path: Path):
    assert decode_number("A") == 0 and decode_number("B8") == 124 and decode_number("EvgA1") == 79_560_757
    assert all(decode_number(encode_number(n)) == n for n in (0, 63, 64, 4095, 79_560_845))
    index = read_index(fake_dict / f"{NAME}.index")
    assert index[0].headword == "" and index[0].line == 1  # a symbol's entry: its headword normalises to ""
    data = read_dict_data(fake_dict / f"{NAME}.dict.dz")
    assert data.startswith(b"\n00-database-dictfmt-1.13.0\n")
    entries = list(iter_entries(index, data))
    # 00database* entries are metadata; two headwords of one entry give it once.
    assert len(entries) == len(REAL_ENTRIES) + len(NOUNS)
    assert [e.offset for e in entries] == sorted(e.offset for e in entries)
    acute = entries[0]
    assert acute.headword == "" and "côte" in acute.text and acute.text.endswith("{acute accent}\n\n")
    # A plain .dict (no compression) reads the same.
    plain = tmp_path / f"{NAME}.dict"
    plain.write_bytes(data)
    assert read_dict_data(plain) == data


def test_dictd_errors_name_file_and_line(fake_dict: Path, tmp_path: Path):
    index_path = tmp_path / "x.index"
    index_path.write_text("a\tA\tB\nb\tB\n", encoding="utf-8")
    with pytest.raises(DictdError, match=r"x.index:2: expected 'headword<TAB>offset<TAB>length', got 2"):
        read_index(index_path)
    index_path.write_text("a\tA\tB\nb\tB!\tC\n", encoding="utf-8")
    with pytest.raises(DictdError, match=r"x.index:2: .*bad character '!' in 'B!'"):
        read_index(index_path)
    index_path.write_text("", encoding="utf-8")
    with pytest.raises(DictdError, match="x.index: the index is empty"):
        read_index(index_path)
    index_path.write_bytes(b"a\xff\tA\tB\n")
    with pytest.raises(DictdError, match="x.index: not UTF-8"):
        read_index(index_path)
    broken = tmp_path / "x.dict.dz"
    broken.write_bytes((fake_dict / f"{NAME}.dict.dz").read_bytes()[:200])
    with pytest.raises(DictdError, match="x.dict.dz: not a valid dictzip"):
        read_dict_data(broken)
    index_path.write_text("a\tA\tB\nb\tB\tZZ\n", encoding="utf-8")
    with pytest.raises(DictdError, match=r"x.index:2: entry 'b' at bytes 1..1626 lies outside the dictionary \(9"):
        list(iter_entries(read_index(index_path), b"123456789", index_path=index_path))
    index_path.write_text("a\tA\tB\n", encoding="utf-8")
    with pytest.raises(DictdError, match=r"x.index:1: entry 'a' is not UTF-8"):
        list(iter_entries(read_index(index_path), "äb".encode(), index_path=index_path))


# --- examples, cleaning, deduplication, splits ------------------------------------------------


def test_read_examples_finds_every_example_line_once_per_entry(fake_dict: Path):
    examples = read_examples(*find_dictionary(fake_dict))
    real = sum(text.count('\n      "') for _, text in REAL_ENTRIES)
    assert len(examples) == real + 3 * len(NOUNS) * len(ADJECTIVES)
    assert examples[0] == ("The word 'côte' has no acute on the 'e'.", "Das Wort 'côte' hat keinen Akut auf dem 'e'.")
    assert ("discrimination because of race",
            "Benachteiligung aufgrund der Rasse, Rassendiskriminierung") in examples
    assert not any("source form" in en or "Apfel" in en for en, _ in examples)  # the metadata's quotes


@pytest.mark.parametrize(("en", "de", "expected"), [
    ("He is barely a child.", "Er ist nur ein Kind., Er ist (doch) noch ein Kind.",
     ("He is barely a child.", "Er ist nur ein Kind.")),
    ("Attention!", "Stillgestanden!, Habt Acht!, Achtung steht!", ("Attention!", "Stillgestanden!")),
    ("'That depends on the circumstances' she hedged.", "„Das hängt von den Umständen ab.“, sagte sie ausweichend.",
     ("'That depends on the circumstances' she hedged.", "„Das hängt von den Umständen ab.“, sagte sie ausweichend.")),
    ("We cut a swath(e) through the dense undergrowth.", "Wir schlugen uns eine Schneise.",
     ("We cut a swath through the dense undergrowth.", "Wir schlugen uns eine Schneise.")),
    ("Shall we dance?", "Darf ich bitten? (Aufforderung zum Tanz)", ("Shall we dance?", "Darf ich bitten?")),
    ("(Well,) I think so.", "(Na ja,) ich denke schon.", ("I think so.", "Ich denke schon.")),
    ("Particular/extreme caution is called for.", "Besondere/äußerste Vorsicht ist geboten.",
     ("Particular caution is called for.", "Besondere Vorsicht ist geboten.")),
    ("The fax machine is linked with/to the computer.", "Das Faxgerät ist angeschlossen.",
     ("The fax machine is linked with the computer.", "Das Faxgerät ist angeschlossen.")),
    ("It’s all over now!", " Es ist  jetzt aus ! ", ("It's all over now!", "Es ist jetzt aus!")),
    ("postdate sth.", "etw. zurück datieren", "not a sentence"),
    ("discrimination because of race", "Benachteiligung aufgrund der Rasse", "not a sentence"),
    ("She succeeded in doing sth.", "Es gelang ihr, etw. zu tun", "placeholder"),
    ("What are the odds on …?", "Wie stehen die Chancen, dass …?", "gap"),
    ("The device retails at/for 150 euros.", "Das Gerät kostet 150 Euro.", "digits"),
    ("You missed school for three days / three days in a row.", "Du hast drei Tage versäumt.", "alternatives"),
    ("They wrote it for the kudos alone.", "Sie taten es des Prestiges/der Ehre wegen.", "alternatives"),
    ("It was (very (very)) good.", "Es war gut.", "brackets"),
    ("Wow!", "(Staunen)", "not a sentence"),
    ("It is one two three four five six seven eight.", "Eins.", "too long"),
])
def test_clean_pair_handles_the_renderings_quirks(en: str, de: str, expected):
    pair, reason = clean_pair(en, de, max_words=8)
    if isinstance(expected, str):
        assert pair is None and reason == expected
    else:
        assert pair == FreedictPair(*expected) and reason == ""


def test_deduplication_and_disjoint_deterministic_splits(fake_dict: Path):
    assert sentence_key("It's ALL over, now!") == sentence_key("it's all over now.") == "it's all over now"
    pairs = [FreedictPair("It's all over now!", "Damit ist es jetzt aus!"), FreedictPair("Go.", "Geh."),
             FreedictPair("It's all over now!", "Es ist jetzt aus!"),
             FreedictPair("It's all over now.", "Es ist jetzt aus!")]
    assert deduplicate(pairs) == [FreedictPair("It's all over now!", "Es ist jetzt aus!"), FreedictPair("Go.", "Geh.")]
    splits = load_pairs(fake_dict)
    flat = [pair for split in ("train", "dev", "test") for pair in splits[split]]
    keys = [sentence_key(pair.en) for pair in flat]
    assert len(keys) == len(set(keys))  # deduplicated, and no sentence in two splits
    # 336 generated sentences and 10 of the real entries' ("It's all over now!" thrice, as one).
    assert len(flat) == 336 + 10
    assert {p.en: p.de for p in flat}["It's all over now!"] == "Es ist jetzt aus!"
    assert {p.en: p.de for p in flat}["Will it take much longer?"] == "Dauert das noch lange?"
    assert all(sentence_split(pair.en) == split for split, items in splits.items() for pair in items)
    assert 0 < len(splits["dev"]) < len(splits["test"]) < len(splits["train"])
    # The split of a sentence depends on it alone: not on the other sentences or their order.
    again = split_pairs(reversed(flat))
    assert again == splits
    assert split_pairs(flat[:100]) == {s: [p for p in items if p in flat[:100]] for s, items in splits.items()}


def test_missing_or_wrong_dictionary_says_how_to_get_it(tmp_path: Path, fake_dict: Path):
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path}/{NAME}.index not found.*apt-get install "
                                                r"dict-freedict-eng-deu"):
        find_dictionary(tmp_path)
    shutil.copy(fake_dict / f"{NAME}.index", tmp_path)
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path}/{NAME}.dict.dz not found"):
        find_dictionary(tmp_path)
    empty = write_dictionary(tmp_path / "empty", [(["dog"], "dog /dˈɒɡ/\nHund <masc>\n")])
    with pytest.raises(ValueError, match=r"freedict-eng-deu.dict.dz: no example sentence pairs found among 0"):
        load_pairs(empty)


# --- prepare_freedict and the recipe ----------------------------------------------------------


def _mtimes(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in sorted(out.rglob("*")) if p.is_file()}


def test_prepare_freedict_writes_disjoint_splits_and_is_idempotent(fake_dict: Path, tmp_path: Path):
    assert PREPARERS["freedict"].__name__ == "_freedict" and asr.datasets.prepare_freedict is prepare_freedict
    out = tmp_path / "corpus"
    sizes = {"num_train": 6, "num_dev": 2, "num_test": 3}
    manifests = prepare_freedict(out, fake_dict, **sizes, train_voices=2, workers=2, progress=False)
    utts = {split: read_manifest(path) for split, path in manifests.items()}
    assert {split: len(items) for split, items in utts.items()} == {"train": 12, "dev": 2, "test": 3}
    for split, items in utts.items():
        for u in items:
            assert u.lang == "en" and u.target_lang == "de" and u.text and u.target_text
            assert u.speaker in {s.id for s in speakers(split)} and u.id.startswith(f"freedict-{split}-")
            assert sf.info(u.audio).samplerate == 16000 and 0.3 < u.duration < 10
    train = utts["train"]
    # Each training sentence is spoken twice, by two voices.
    assert [u.text for u in train[::2]] == [u.text for u in train[1::2]]
    assert all(a.speaker != b.speaker for a, b in zip(train[::2], train[1::2]))
    texts = {split: {sentence_key(u.text) for u in items} for split, items in utts.items()}
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["dev"] and not texts["dev"] & texts["test"]
    voices = {split: {u.speaker for u in items} for split, items in utts.items()}
    assert not voices["train"] & voices["test"] and not voices["train"] & voices["dev"]

    before = _mtimes(out)
    assert prepare_freedict(out, fake_dict, **sizes, train_voices=2, workers=1, progress=False) == manifests
    assert _mtimes(out) == before  # up to date: nothing rewritten
    # A run killed halfway (a lost WAV, no marker) is detected and only the missing audio is rendered.
    lost = Path(utts["test"][1].audio)
    lost.unlink()
    (out / "test.done").unlink()
    prepare_freedict(out, fake_dict, **sizes, train_voices=2, workers=1, progress=False)
    after = _mtimes(out)
    assert {k for k in after if after[k] != before.get(k)} == {"test.jsonl", "test.done",
                                                               str(lost.relative_to(out))}
    assert read_manifest(out / "test.jsonl") == utts["test"]
    # A smaller corpus is a prefix of a larger one (and caps above what there is take everything).
    grown = prepare_freedict(out, fake_dict, num_train=8, num_dev=1000, num_test=3, train_voices=2, workers=1,
                             progress=False)
    assert read_manifest(grown["train"])[:12] == train
    assert len(read_manifest(grown["dev"])) == len(load_pairs(fake_dict)["dev"])


def test_prepare_freedict_rejects_bad_arguments(fake_dict: Path, tmp_path: Path):
    with pytest.raises(ValueError, match="num_test must be an integer >= 0 or null"):
        prepare_freedict(tmp_path, fake_dict, num_test=-1)
    with pytest.raises(ValueError, match="train_voices must be an integer >= 1, got 0"):
        prepare_freedict(tmp_path, fake_dict, train_voices=0)
    with pytest.raises(ValueError, match="max_words must be an integer >= 1"):
        prepare_freedict(tmp_path, fake_dict, max_words=0)
    with pytest.raises(ValueError, match=r"synthesize_pairs \(freedict\): workers must be an integer >= 1"):
        prepare_freedict(tmp_path, fake_dict, workers=0)
    assert not list(tmp_path.iterdir())


def test_recipe_runs_end_to_end_in_tiny_mode(fake_dict: Path, tmp_path: Path):
    exp, data = tmp_path / "exp", tmp_path / "data"
    result = asr_run("recipe=freedict_st", "mode=tiny", f"data.root={fake_dict}", f"exp_dir={exp}", f"data.dir={data}")
    assert result.returncode == 0, result.stderr[-3000:]
    resolved = yaml.safe_load((exp / "config.yaml").read_text())
    assert resolved["task"] == "st" and resolved["data"]["tokenizer"]["kind"] == "unigram"
    for split in ("train", "dev", "test"):
        assert (data / f"{split}.jsonl").is_file() and (data / f"{split}.done").is_file()
    assert len(read_manifest(data / "train.jsonl")) == 40  # mode=tiny
    assert (exp / "model" / "tokenizer.model").is_file() and (exp / "model" / "tokenizer.json").is_file()
    assert (exp / "checkpoints" / "last.pt").is_file() and (exp / "model.avg.pt").is_file()
    speech = asr.load_model(exp / "model")
    assert speech.tokenizer.kind == "unigram" and speech.tokenizer.token_to_id("<de>") > 4
    decode_dir = exp / "decode" / "test"
    hyp = (decode_dir / "hyp.txt").read_text().splitlines()
    ref = (decode_dir / "ref.txt").read_text(encoding="utf-8").splitlines()
    test = read_manifest(data / "test.jsonl")
    assert len(hyp) == len(ref) == len(test) and [h.split()[0] for h in hyp] == [u.id for u in test]
    # The references are the German translations, normalised as the training targets are.
    assert ref[0] == f"{test[0].id} {speech.tokenizer.normalizer(test[0].target_text)}"
    results = json.loads((decode_dir / "results.json").read_text())
    assert results["metric"] == "bleu" and {"bleu", "chrf"} <= set(results)
    table = (exp / "RESULTS.md").read_text()
    assert "BLEU" in table and "chrF" in table and "task=st" in table


@pytest.mark.skipif(not (Path(DICT_DIR) / f"{NAME}.index").is_file(),
                    reason=f"the real dictionary is not installed ({DICT_DIR}/{NAME}.index; "
                           "apt-get install dict-freedict-eng-deu)")
def test_the_real_dictionary_gives_thousands_of_pairs():
    splits = load_pairs()
    assert sum(len(items) for items in splits.values()) > 8000
    assert len(splits["test"]) > 300 and len(splits["dev"]) > 200
