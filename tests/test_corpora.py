"""The corpus preparers and recipes, on miniature fake corpora in each corpus's exact official layout.

Each fake corpus is written here with synthesised audio in the corpus's format (flac, mp3, sph,
wav) and metadata with the real files' quirks; then every recipe runs all its stages on them in tiny mode.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import soundfile as sf
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import asr
from asr.audio import load_audio
from asr.data.manifest import ManifestError
from asr.datasets.aishell import prepare_aishell
from asr.datasets.commonvoice import prepare_commonvoice
from asr.datasets.covost import prepare_covost
from asr.datasets.librispeech import prepare_librispeech
from asr.datasets.mustc import prepare_mustc, read_segments
from asr.datasets.tedlium import clean_transcript, prepare_tedlium
from asr.recipe.config import ExperimentConfig
from asr.recipe.prepare import PREPARERS, prepare_corpus
from tests.conftest import make_tone
from tests.test_recipe import asr_run

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
RECIPES = ("librispeech", "commonvoice", "tedlium", "aishell", "mustc", "covost")
RATE = 16000
FORMATS = {"flac": ("FLAC", "PCM_16"), "wav": ("WAV", "PCM_16"), "sph": ("NIST", "PCM_16"),
           "mp3": ("MP3", "MPEG_LAYER_III")}


def write_audio(path: Path, seconds: float, seed: int = 0) -> Path:
    kind, subtype = FORMATS[path.suffix[1:]]
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, make_tone(seconds, RATE, freq=200 + 40 * (seed % 10), seed=seed), RATE, format=kind,
             subtype=subtype)
    return path


def mp3_writable(tmp: Path) -> bool:
    try:
        write_audio(tmp / "probe.mp3", 0.2)
    except (sf.LibsndfileError, ValueError, TypeError):
        return False
    return True


def read(manifest: Path) -> list[asr.Utterance]:
    return asr.read_manifest(manifest)


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- recipes: configs and registry --------------------------------------------------------------


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_configs_compose_into_typed_configs(recipe):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for overrides, d_model in (([], 256), (["model=transformer_m"], 512), (["model=transformer_l"], 1024),
                                   (["mode=tiny"], 64)):
            cfg = compose("config", overrides=[f"recipe={recipe}", *overrides])
            config = ExperimentConfig.from_hydra(OmegaConf.to_container(cfg, resolve=True))
            assert config.recipe.prepare["kind"] == recipe and config.model["encoder"]["d_model"] == d_model
            assert config.data.features.kind == "fbank" and config.data.features.n_mels == 80
            assert config.model["encoder"]["n_layers"] == (2 if overrides == ["mode=tiny"] else 12)
    expected = {"librispeech": ("unigram", 10000), "mustc": ("unigram", 8000), "tedlium": ("unigram", 500),
                "aishell": ("char", 0), "commonvoice": ("char", 0), "covost": ("char", 0)}[recipe]
    assert (config.data.tokenizer.kind, config.data.tokenizer.vocab_size) == expected
    assert config.recipe.prepare_settings["max_utts"] == 20  # mode=tiny
    assert config.task == ("st" if recipe in ("mustc", "covost") else "asr")
    assert (CONF_DIR.parent / "recipes" / recipe / "README.md").is_file()


def test_every_corpus_is_registered_and_needs_data_root(tmp_path):
    assert set(RECIPES) <= set(PREPARERS)
    for recipe in RECIPES:
        with pytest.raises(ValueError, match=f"recipe {recipe}: set data.root"):
            prepare_corpus(tmp_path, None, {"kind": recipe})
    with pytest.raises(ValueError, match=r"recipe.prepare \(librispeech\).*train_hour"):
        prepare_corpus(tmp_path, str(tmp_path), {"kind": "librispeech", "train_hour": 100})


# --- LibriSpeech ---------------------------------------------------------------------------------

LIBRI_TEXTS = ["HE HOPED THERE WOULD BE STEW FOR DINNER", "TURNIPS AND CARROTS AND BRUISED POTATOES",
               "HELLO BERTIE ANY GOOD IN YOUR MIND", "THE ONE'S WE HAD WERE FAT"]


def make_librispeech(base: Path) -> Path:
    """LibriSpeech/<subset>/<spk>/<chapter>/: 3 utterances in train-clean-100 (one without its flac), 1 elsewhere."""
    root = base / "LibriSpeech"
    for n, subset in enumerate(("train-clean-100", "dev-clean", "dev-other", "test-clean", "test-other")):
        speaker, chapter = 100 + n, 2000 + n
        folder = root / subset / str(speaker) / str(chapter)
        count = 3 if subset.startswith("train") else 1
        lines = []
        for i in range(count):
            utt = f"{speaker}-{chapter}-{i:04d}"
            lines.append(f"{utt} {LIBRI_TEXTS[(n + i) % len(LIBRI_TEXTS)]}")
            if i < 2:  # the third training utterance has no audio
                write_audio(folder / f"{utt}.flac", 0.6 + 0.1 * i, seed=n + i)
        write_text(folder / f"{speaker}-{chapter}.trans.txt", "\n".join(lines) + "\n")
    write_text(root / "README.TXT", "LibriSpeech ASR corpus\n")
    return root


@pytest.fixture(scope="module")
def librispeech(tmp_path_factory) -> Path:
    return make_librispeech(tmp_path_factory.mktemp("libri"))


def test_librispeech_manifests(librispeech, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        manifests = prepare_librispeech(tmp_path / "data", librispeech.parent, train_hours=100, progress=False)
    assert sorted(manifests) == ["dev", "dev_clean", "dev_other", "test_clean", "test_other", "train"]
    train = read(manifests["train"])
    assert [u.id for u in train] == ["100-2000-0000", "100-2000-0001"]
    assert train[0].text == "he hoped there would be stew for dinner" and train[0].speaker == "100"
    assert train[0].duration == pytest.approx(0.6) and train[0].audio.endswith("100-2000-0000.flac")
    assert [u.id for u in read(manifests["dev"])] == ["101-2001-0000", "102-2002-0000"]
    assert read(manifests["test_clean"])[0].text == "the one's we had were fat"
    assert "100-2000-0002.flac: audio file not found" in caplog.text

    with pytest.raises(FileNotFoundError, match="train-clean-360"):
        prepare_librispeech(tmp_path / "d2", librispeech, train_hours=460, progress=False)
    with pytest.raises(ValueError, match="train_hours must be one of"):
        prepare_librispeech(tmp_path / "d2", librispeech, train_hours=200)


def test_librispeech_malformed_transcript_names_file_and_line(tmp_path):
    root = make_librispeech(tmp_path)
    trans = root / "dev-clean" / "101" / "2001" / "101-2001.trans.txt"
    trans.write_text("101-2001-0000 HELLO\n101-2001-0001\n")
    with pytest.raises(ManifestError, match=f"{trans}:2: expected"):
        prepare_librispeech(tmp_path / "data", root, train_hours=100, progress=False)


def run_tiny_recipe(recipe: str, root: Path, tmp_path: Path, *overrides: str) -> Path:
    """asr-run every stage of `recipe` in tiny mode on the CPU; -> the experiment folder."""
    exp, data = tmp_path / "exp", tmp_path / "data"
    result = asr_run(f"recipe={recipe}", "mode=tiny", f"data.root={root}", f"exp_dir={exp}", f"data.dir={data}",
                     "trainer.device=cpu", "trainer.precision=fp32", "trainer.max_epochs=1", "trainer.num_workers=0",
                     "trainer.plot_attention=false", "trainer.valid_decode_utts=1", *overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (exp / "RESULTS.md").is_file() and (exp / "model" / "model.pt").is_file()
    return exp


def test_librispeech_recipe_end_to_end_in_tiny_mode(librispeech, tmp_path):
    exp, data = run_tiny_recipe("librispeech", librispeech, tmp_path), tmp_path / "data"
    assert len(read(data / "train.jsonl")) == 2
    assert json.loads((exp / "model" / "tokenizer.json").read_text())["kind"] == "unigram"
    for test_set in ("dev_clean", "dev_other", "test_clean", "test_other"):
        results = json.loads((exp / "decode" / test_set / "results.json").read_text())
        assert results["num_utts"] == 1 and "wer" in results


# --- Common Voice --------------------------------------------------------------------------------

CV_HEADER = "client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\tdown_votes\tage\tgender\taccents\t" \
            "variant\tlocale\tsegment"


def cv_row(client: str, clip: str, sentence: str) -> str:
    return f"{client}\t{clip}\tabc123\t{sentence}\t\t2\t0\tthirties\tfemale_feminine\t\t\txx\t"


def make_commonvoice(base: Path, ext: str) -> Path:
    """cv-corpus-99.0/xx/: train (one empty sentence, one missing clip, quotes), dev, test, clip_durations.tsv."""
    lang_dir = base / "cv-corpus-99.0-2099-01-01" / "xx"
    rows = {"train": [("c1", "a", 'He said "hi", then left.'), ("c2", "b", ""), ("c1", "c", "Second clip."),
                      ("c3", "missing", "No audio for me.")],
            "dev": [("c4", "d", "A dev sentence.")], "test": [("c5", "e", "A test sentence.")]}
    durations = ["clip\tduration[ms]"]
    for n, (split, entries) in enumerate(rows.items()):
        lines = [CV_HEADER]
        for i, (client, stem, sentence) in enumerate(entries):
            clip = f"common_voice_xx_{stem}.{ext}"
            lines.append(cv_row(client, clip, sentence))
            if stem != "missing":
                seconds = 0.5 + 0.1 * i
                write_audio(lang_dir / "clips" / clip, seconds, seed=n * 5 + i)
                durations.append(f"{clip}\t{round(seconds * 1000)}")
        write_text(lang_dir / f"{split}.tsv", "\n".join(lines) + "\n")
    write_text(lang_dir / "clip_durations.tsv", "\n".join(durations) + "\n")
    write_text(lang_dir / "validated.tsv", CV_HEADER + "\n")
    return lang_dir


def test_commonvoice_tsv_parsing_and_skips(tmp_path, caplog):
    lang_dir = make_commonvoice(tmp_path, "wav")
    with caplog.at_level(logging.WARNING):
        manifests = prepare_commonvoice(tmp_path / "data", lang_dir.parent, lang="xx", progress=False)
    train = read(manifests["train"])
    assert [u.id for u in train] == ["common_voice_xx_a", "common_voice_xx_c"]
    assert train[0].text == 'He said "hi", then left.' and train[0].speaker == "c1" and train[0].lang == "xx"
    assert train[1].duration == pytest.approx(0.7)
    assert [u.text for u in read(manifests["test"])] == ["A test sentence."]
    assert "train.tsv:3: clip 'common_voice_xx_b.wav' has an empty sentence" in caplog.text
    assert "train.tsv:5: " in caplog.text and "common_voice_xx_missing.wav: audio file not found" in caplog.text

    # The language folder itself works as data.root too, and names the language.
    again = prepare_commonvoice(tmp_path / "data2", lang_dir, splits=["dev"], max_utts=1, progress=False)
    assert read(again["dev"])[0].lang == "xx"
    with pytest.raises(ValueError, match="holds Common Voice language 'xx', but lang='en'"):
        prepare_commonvoice(tmp_path / "data2", lang_dir, lang="en", progress=False)

    (lang_dir / "dev.tsv").write_text(CV_HEADER + "\n" + cv_row("c4", "d.wav", "a stray\ttab") + "\n")
    with pytest.raises(ManifestError, match=r"dev.tsv:2: expected 13 tab-separated fields"):
        prepare_commonvoice(tmp_path / "data3", lang_dir, splits=["dev"], progress=False)
    (lang_dir / "dev.tsv").write_text("client_id\tpath\n")
    with pytest.raises(ManifestError, match=r"dev.tsv:1: header lacks column\(s\) sentence"):
        prepare_commonvoice(tmp_path / "data3", lang_dir, splits=["dev"], progress=False)
    with pytest.raises(FileNotFoundError, match="commonvoice: not found"):
        prepare_commonvoice(tmp_path / "data3", tmp_path, progress=False)


def test_commonvoice_mp3_clips(tmp_path):
    if not mp3_writable(tmp_path):
        pytest.skip(f"libsndfile {sf.__libsndfile_version__} cannot write mp3 (needs >= 1.1 with LAME); "
                    "the tsv parsing is tested with wav clips")
    lang_dir = make_commonvoice(tmp_path, "mp3")
    (lang_dir / "clip_durations.tsv").unlink()  # durations from the mp3 headers
    manifests = prepare_commonvoice(tmp_path / "data", lang_dir, progress=False)
    train = read(manifests["train"])
    assert [u.audio.endswith(".mp3") for u in train] == [True, True]
    assert train[1].duration == pytest.approx(0.7, abs=0.06)
    assert load_audio(train[1].audio).shape[0] == pytest.approx(0.7 * RATE, abs=0.06 * RATE)


# --- TED-LIUM 3 ----------------------------------------------------------------------------------


def make_tedlium(base: Path) -> Path:
    """TEDLIUM_release-3/legacy/<split>/{stm,sph}/: one 3 s talk per split."""
    root = base / "TEDLIUM_release-3"
    for n, split in enumerate(("train", "dev", "test")):
        talk = f"Speaker{n}_2010X"
        write_audio(root / "legacy" / split / "sph" / f"{talk}.sph", 3.0, seed=n)
        write_text(root / "legacy" / split / "stm" / f"{talk}.stm", "\n".join([
            ";; comment line",
            f"{talk} 1 {talk} 0.10 1.00 <o,f0,male> i 'm here today to show <unk> my photographs",
            f"{talk} 1 inter_segment_gap 1.00 1.20 <o,,unknown> ignore_time_segment_in_scoring",
            f"{talk} 1 {talk} 1.20 2.90 <o,f0,male> it 's the lakota",
            f"{talk} 1 {talk} 2.90 4.50 <o,f0,male> past the end of the talk",
            f"{talk} 1 {talk} 2.95 3.20 <o,f0,male> <unk>",
        ]) + "\n")
    write_text(root / "data" / "README", "speaker adaptation split\n")
    return root


def test_tedlium_segments_from_stm(tmp_path, caplog):
    root = make_tedlium(tmp_path)
    with caplog.at_level(logging.WARNING):
        manifests = prepare_tedlium(tmp_path / "data", root, progress=False)
    train = read(manifests["train"])
    assert [u.id for u in train] == ["Speaker0_2010X-0000010-0000100", "Speaker0_2010X-0000120-0000290"]
    assert [u.text for u in train] == ["i'm here today to show my photographs", "it's the lakota"]
    assert train[1].offset == pytest.approx(1.2) and train[1].duration == pytest.approx(1.7)
    assert train[0].audio.endswith("Speaker0_2010X.sph") and train[0].speaker == "Speaker0_2010X"
    wave = load_audio(train[1].audio, offset=train[1].offset, duration=train[1].duration)
    assert wave.shape[0] == round(1.7 * RATE)
    assert "Speaker0_2010X.stm:5: segment 2.9-4.5 s is empty or outside its recording" in caplog.text
    assert "Speaker0_2010X.stm:6: empty transcript" in caplog.text
    assert len(read(manifests["test"])) == 2
    assert clean_transcript("<unk> you 've {NOISE} got it") == "you've got it"

    stm = root / "legacy" / "dev" / "stm" / "Speaker1_2010X.stm"
    stm.write_text("Speaker1_2010X 1 Speaker1_2010X 0.1 1,5 <o,f0,male> bad time\n")
    with pytest.raises(ManifestError, match=f"{stm}:1: field 'end': expected seconds, got '1,5'"):
        prepare_tedlium(tmp_path / "data2", root, progress=False)
    stm.write_text("Speaker1_2010X 1 Speaker1_2010X\n")
    with pytest.raises(ManifestError, match=f"{stm}:1: expected"):
        prepare_tedlium(tmp_path / "data2", root, progress=False)


# --- AISHELL-1 -----------------------------------------------------------------------------------


def make_aishell(base: Path) -> Path:
    """data_aishell/wav/<split>/<spk>/*.wav and the word-segmented transcript (one wav without a line)."""
    root = base / "data_aishell"
    texts = ["而 对 楼市 成交 抑制 作用 最 大 的 限 购", "也 成为 地方 政府 的 眼中 钉",
             "自 六月 底 呼和浩特 市 率先 宣布 取消 限 购 后"]
    lines = []
    for n, (split, speaker) in enumerate((("train", "S0002"), ("dev", "S0724"), ("test", "S0764"))):
        for i in range(2):
            utt = f"BAC009{speaker}W{121 + i:04d}"
            write_audio(root / "wav" / split / speaker / f"{utt}.wav", 0.5 + 0.1 * i, seed=n * 2 + i)
            if not (split == "train" and i == 1):
                lines.append(f"{utt} {texts[(n + i) % 3]}")
    write_text(root / "transcript" / "aishell_transcript_v0.8.txt", "\n".join(lines) + "\n")
    return root


def test_aishell_characters_without_word_segmentation(tmp_path, caplog):
    root = make_aishell(tmp_path)
    with caplog.at_level(logging.WARNING):
        manifests = prepare_aishell(tmp_path / "data", tmp_path, progress=False)
    train = read(manifests["train"])
    assert [(u.id, u.text, u.speaker, u.lang) for u in train] == [("BAC009S0002W0121", "而对楼市成交抑制作用最大的限购",
                                                                  "S0002", "zh")]
    assert [u.text for u in read(manifests["test"])] == ["自六月底呼和浩特市率先宣布取消限购后",
                                                         "而对楼市成交抑制作用最大的限购"]
    assert "aishell train: 1 recordings have no transcript" in caplog.text

    transcript = root / "transcript" / "aishell_transcript_v0.8.txt"
    transcript.write_text("BAC009S0002W0121 而 对\nBAC009S0002W0122\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=f"{transcript}:2: expected '<utterance id> <text>'"):
        prepare_aishell(tmp_path / "data2", root, progress=False)


# --- MuST-C --------------------------------------------------------------------------------------


def make_mustc(base: Path) -> Path:
    """en-de/data/<split>/{wav,txt}/: one 3 s talk per split, its yaml segments out of offset order."""
    root = base / "MUSTC_v1.0" / "en-de"
    segments = [(1.5, 1.0, "And that's the end.", "Und das ist das Ende."),
                (0.2, 1.1, "Thank you so much, Chris.", "Vielen Dank, Chris."),
                (2.6, 0.3, "(Applause)", "(Applaus)")]
    for n, split in enumerate(("train", "dev", "tst-COMMON")):
        talk = f"ted_{1000 + n}"
        write_audio(root / "data" / split / "wav" / f"{talk}.wav", 3.0, seed=n)
        txt = root / "data" / split / "txt"
        write_text(txt / f"{split}.yaml", "".join(
            f"- {{duration: {d:.6f}, offset: {o:.6f}, rec_start: 0.000000, speaker_id: spk.{1000 + n}, "
            f"wav: {talk}.wav}}\n" for o, d, _, _ in segments))
        write_text(txt / f"{split}.en", "".join(f"{en}\n" for _, _, en, _ in segments))
        write_text(txt / f"{split}.de", "".join(f"{de}\n" for _, _, _, de in segments))
    return root


def test_mustc_segments_and_translations(tmp_path):
    root = make_mustc(tmp_path)
    manifests = prepare_mustc(tmp_path / "data", root.parent, target_lang="de", progress=False)
    assert sorted(manifests) == ["dev", "train", "tst-COMMON"]
    train = read(manifests["train"])
    assert [u.id for u in train] == ["ted_1000_1", "ted_1000_0", "ted_1000_2"]  # numbered in offset order
    first = train[1]
    assert (first.offset, first.duration) == (pytest.approx(0.2), pytest.approx(1.1))
    assert (first.text, first.target_text, first.lang, first.target_lang, first.speaker) == (
        "Thank you so much, Chris.", "Vielen Dank, Chris.", "en", "de", "spk.1000")
    assert load_audio(first.audio, offset=first.offset, duration=first.duration).shape[0] == round(1.1 * RATE)

    txt = root / "data" / "dev" / "txt"
    (txt / "dev.de").write_text("Nur eine Zeile.\n")
    with pytest.raises(ManifestError, match=r"dev.de: 1 lines, but .*dev.yaml lists 3 segments"):
        prepare_mustc(tmp_path / "data2", root, progress=False)
    (txt / "dev.yaml").write_text("- {duration: 1.0, offset: 0.0, wav: ted_1001.wav}\n"
                                  "- {duration: 1.0, offset: soon, wav: ted_1001.wav}\n")
    with pytest.raises(ManifestError, match=r"dev.yaml:2: field 'offset': expected seconds, got 'soon'"):
        prepare_mustc(tmp_path / "data2", root, progress=False)
    block = write_text(tmp_path / "block.yaml", "- duration: 1.0\n  offset: 2.0\n  wav: a.wav\n"
                                                "- {duration: 2, offset: 3, wav: 'b c.wav'}\n")
    assert read_segments(block) == [(1, "a.wav", 2.0, 1.0, None), (4, "b c.wav", 3.0, 2.0, None)]
    (txt / "dev.yaml").write_text("- {duration: 1.0, offset: [0.0\n")
    with pytest.raises(ManifestError, match="dev.yaml: not valid YAML"):
        prepare_mustc(tmp_path / "data2", root, progress=False)


# --- CoVoST 2 ------------------------------------------------------------------------------------


def make_covost(base: Path, ext: str, with_sentence: bool = True) -> Path:
    """fr/clips/*, fr/validated.tsv and fr/covost_v2.fr_en.tsv: train, train_covost, dev and test rows, one of
    them with an empty translation."""
    folder = base / "fr"
    rows = [("a", "Bonjour à tous.", "Hello everyone.", "train"), ("b", "Merci.", "Thanks.", "train_covost"),
            ("c", "Au revoir.", "", "train"), ("d", "Une phrase de dev.", "A dev sentence.", "dev"),
            ("e", "Un test.", "A test.", "test")]
    header = "path\tsentence\ttranslation\tclient_id\tsplit" if with_sentence else "path\ttranslation\tsplit"
    lines, validated = [header], [CV_HEADER]
    for i, (stem, sentence, translation, split) in enumerate(rows):
        clip = f"common_voice_fr_{stem}.{ext}"
        write_audio(folder / "clips" / clip, 0.5 + 0.05 * i, seed=i)
        lines.append(f"{clip}\t{sentence}\t{translation}\tc{i}\t{split}" if with_sentence
                     else f"{clip}\t{translation}\t{split}")
        validated.append(cv_row(f"c{i}", clip, sentence))
    write_text(folder / "covost_v2.fr_en.tsv", "\n".join(lines) + "\n")
    write_text(folder / "validated.tsv", "\n".join(validated) + "\n")
    return folder


@pytest.mark.parametrize("with_sentence", [True, False])
def test_covost_splits_and_translations(tmp_path, caplog, with_sentence):
    ext = "mp3" if mp3_writable(tmp_path) else "wav"
    make_covost(tmp_path, ext, with_sentence)
    with caplog.at_level(logging.WARNING):
        manifests = prepare_covost(tmp_path / "data", tmp_path, source_lang="fr", target_lang="en", progress=False)
    train = read(manifests["train"])
    assert [u.id for u in train] == ["common_voice_fr_a", "common_voice_fr_b"]  # train + train_covost
    assert (train[0].text, train[0].target_text, train[0].lang, train[0].target_lang) == (
        "Bonjour à tous.", "Hello everyone.", "fr", "en")
    assert [u.target_text for u in read(manifests["test"])] == ["A test."]
    assert "covost_v2.fr_en.tsv:4: clip 'common_voice_fr_c." in caplog.text
    with pytest.raises(FileNotFoundError, match="covost_v2.fr_de.tsv not found"):
        prepare_covost(tmp_path / "data2", tmp_path / "fr", source_lang="fr", target_lang="de", progress=False)


# --- every other recipe, end to end in tiny mode -------------------------------------------------

END_TO_END = {  # recipe: (fake corpus -> data.root, overrides, test sets, metric)
    "commonvoice": (lambda base: make_commonvoice(base, "wav").parent, ["data.source_lang=xx"], ["test"], "wer"),
    "tedlium": (make_tedlium, [], ["dev", "test"], "wer"),
    "aishell": (make_aishell, [], ["dev", "test"], "cer"),
    "mustc": (lambda base: make_mustc(base).parent, [], ["tst-COMMON"], "bleu"),
    "covost": (lambda base: make_covost(base, "wav").parent, [], ["test"], "bleu"),
}


@pytest.mark.parametrize("recipe", sorted(END_TO_END))
def test_recipe_end_to_end_in_tiny_mode(recipe, tmp_path):
    make_corpus, overrides, test_sets, metric = END_TO_END[recipe]
    exp = run_tiny_recipe(recipe, make_corpus(tmp_path / "corpus"), tmp_path, *overrides)
    for test_set in test_sets:
        decode_dir = exp / "decode" / test_set
        results = json.loads((decode_dir / "results.json").read_text())
        assert results["metric"] == metric and results["num_utts"] >= 1
        assert len((decode_dir / "hyp.txt").read_text().splitlines()) == results["num_utts"]
