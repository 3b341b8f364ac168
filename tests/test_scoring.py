"""Scoring: asr-wer agrees with jiwer (empty references and hypotheses included), transcript files
in both formats with clear errors, sclite-style details, BLEU/chrF, and the recipes' results files."""

from __future__ import annotations

import json

import jiwer
import pytest
import sacrebleu

from asr.cli.wer import main as wer_main
from asr.metrics import error_rate
from asr.scoring import (
    ScoringError,
    align_words,
    pair_transcripts,
    read_transcripts,
    results_table,
    score_bleu,
    score_directory,
    score_experiment,
    score_wer,
    write_results,
)
from asr.text import TextNormalizer, train_tokenizer

# Hand-made (refs, hyps) corpora; texts are already normalised so that jiwer sees the same words.
CASES = {
    "identical": (["a b c", "d e"], ["a b c", "d e"]),
    "one of each error": (["a b c d"], ["a x c d e"]),
    "deletions only": (["the cat sat on the mat"], ["the cat on mat"]),
    "insertions only": (["hello world"], ["oh hello there world today"]),
    "empty hypothesis": (["a b c", "d"], ["", "d"]),
    "empty reference": (["", "a b"], ["x y z", "a b"]),
    "empty both": (["", "a"], ["", "a"]),
    "all references empty": (["", ""], ["p q", ""]),
    "everything empty": ([""], [""]),
    "repeated words": (["a a a b", "b b"], ["a a b b", "b"]),
    "unicode": (["größe straße", "日本 語"], ["grösse straße", "日本 語 です"]),
}


def jiwer_counts(refs: list[str], hyps: list[str]) -> dict:
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    return {"S": words.substitutions, "D": words.deletions, "I": words.insertions, "H": words.hits,
            "char_errors": chars.substitutions + chars.deletions + chars.insertions}


def write_kaldi(path, ids, texts):
    path.write_text("".join(f"{i} {t}\n" for i, t in zip(ids, texts)), encoding="utf-8")
    return path


@pytest.mark.parametrize("name", sorted(CASES))
def test_counts_agree_with_jiwer(name, tmp_path, capsys):
    refs, hyps = CASES[name]
    expected = jiwer_counts(refs, hyps)
    ref_words = sum(len(r.split()) for r in refs)
    ref_chars = sum(len(r) for r in refs)

    ids = [f"utt{i}" for i in range(len(refs))]
    report = score_wer(ids, refs, hyps)
    r = report.rates
    assert (r.substitutions, r.deletions, r.insertions, r.hits) == (expected["S"], expected["D"], expected["I"],
                                                                    expected["H"])
    errors = expected["S"] + expected["D"] + expected["I"]
    assert r.wer == pytest.approx(errors / max(ref_words, 1))
    if ref_words:
        assert r.wer == pytest.approx(jiwer.wer(refs, hyps))
        assert r.cer == pytest.approx(jiwer.cer(refs, hyps))
    assert r.char_errors == expected["char_errors"] and r.ref_chars == ref_chars
    assert r.char_errors == r.char_substitutions + r.char_deletions + r.char_insertions
    assert r.num_utts == len(refs)
    assert r.sentence_error_rate == pytest.approx(sum(a.split() != b.split() for a, b in zip(refs, hyps)) / len(refs))
    # The per-utterance alignments add up to the corpus counts.
    for op, total in (("S", r.substitutions), ("D", r.deletions), ("I", r.insertions), ("C", r.hits)):
        assert sum(u.count(op) for u in report.utterances) == total

    # The command line gives the same numbers, from files (hypotheses in another order).
    ref_file = write_kaldi(tmp_path / "ref.txt", ids, refs)
    hyp_file = write_kaldi(tmp_path / "hyp.txt", ids[::-1], hyps[::-1])
    assert wer_main([str(ref_file), str(hyp_file), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["wer"] == pytest.approx(r.wer) and printed["cer"] == pytest.approx(r.cer)
    assert (printed["substitutions"], printed["deletions"], printed["insertions"]) == (r.substitutions, r.deletions,
                                                                                       r.insertions)
    assert printed["num_utts"] == len(refs)


def test_alignments_match_jiwer_word_by_word():
    refs, hyps = ["a b c d", "x y", "", "p q"], ["a x c d e", "", "n", "p q"]
    ops = align_words(refs, hyps)
    assert ops[0] == [("C", "a", "a"), ("S", "b", "x"), ("C", "c", "c"), ("C", "d", "d"), ("I", None, "e")]
    assert ops[1] == [("D", "x", None), ("D", "y", None)]
    assert ops[2] == [("I", None, "n")]
    assert ops[3] == [("C", "p", "p"), ("C", "q", "q")]


def test_default_normaliser_is_the_training_one(tmp_path, capsys):
    refs = {"u1": "Hello, World!", "u2": "It's  FINE."}
    hyps = {"u1": "Hello world", "u2": "It's fine"}
    ids, r, h = pair_transcripts(refs, hyps)
    assert score_wer(ids, r, h).rates.wer == 0.0
    assert score_wer(ids, r, h, normalizer=None).rates.wer == pytest.approx(3 / 4)
    ref_file = write_kaldi(tmp_path / "ref.txt", refs, refs.values())
    hyp_file = write_kaldi(tmp_path / "hyp.txt", hyps, hyps.values())
    assert wer_main([str(ref_file), str(hyp_file)]) == 0
    assert "%WER 0.00 [ 0 / 4, 0 ins, 0 del, 0 sub ]" in capsys.readouterr().out
    assert wer_main([str(ref_file), str(hyp_file), "--no-normalize"]) == 0
    assert "%WER 75.00 [ 3 / 4" in capsys.readouterr().out

    # --normalizer-from takes the normaliser saved with a model's tokenizer (here: case-sensitive).
    tokenizer = train_tokenizer(["Hello World"], normalizer=TextNormalizer(lowercase=False))
    tokenizer.save(tmp_path / "model")
    assert wer_main([str(ref_file), str(hyp_file), "--normalizer-from", str(tmp_path / "model")]) == 0
    assert "%WER 50.00 [ 2 / 4" in capsys.readouterr().out


def test_details_are_sclite_style(tmp_path, capsys):
    ref = write_kaldi(tmp_path / "ref", ["a", "b"], ["the cat sat on the mat", "good"])
    hyp = write_kaldi(tmp_path / "hyp", ["a", "b"], ["oh the bat sat on mat", "good"])
    assert wer_main([str(ref), str(hyp), "--details", "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "id: (a)\nScores: (#C #S #D #I) 4 1 1 1\n" in out
    lines = out.splitlines()
    ref_row = lines[lines.index("Scores: (#C #S #D #I) 4 1 1 1") + 1]
    hyp_row = lines[lines.index(ref_row) + 1]
    eval_row = lines[lines.index(hyp_row) + 1]
    assert ref_row == "REF:  ** the cat sat on the mat"
    assert hyp_row == "HYP:  oh the bat sat on *** mat"
    # Each mark sits under the first letter of its column.
    for mark, word in (("S", "bat"), ("D", "***"), ("I", "oh")):
        assert eval_row[hyp_row.index(word)] == mark
    assert "       1  cat ==> bat" in out and "Most frequent deletions" in out
    assert "%WER 42.86 [ 3 / 7, 1 ins, 1 del, 1 sub ]" in out and "%SER 50.00 [ 1 / 2 ]" in out

    assert wer_main([str(ref), str(hyp), "--json", "--details"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["confusions"]["substitutions"] == [{"ref": "cat", "hyp": "bat", "count": 1}]
    assert data["utterances"][0] == {"id": "a", "ref": "the cat sat on the mat", "hyp": "oh the bat sat on mat",
                                     "correct": 4, "substitutions": 1, "deletions": 1, "insertions": 1}


def test_reads_kaldi_and_jsonl(tmp_path):
    kaldi = tmp_path / "text"
    kaldi.write_text("u1 hello world\n\nu2\tTAB separated  words \nu3\n", encoding="utf-8")
    assert read_transcripts(kaldi) == {"u1": "hello world", "u2": "TAB separated words", "u3": ""}
    manifest = tmp_path / "test.jsonl"
    manifest.write_text('{"id": "u1", "audio": "a.wav", "duration": 1.0, "text": "hallo", "target_text": "hello"}\n'
                        '{"id": "u2", "audio": "b.wav", "duration": 2.0, "text": "", "target_text": "bye"}\n')
    assert read_transcripts(manifest) == {"u1": "hallo", "u2": ""}
    assert read_transcripts(manifest, field="target_text") == {"u1": "hello", "u2": "bye"}
    # JSON Lines are recognised by content too (e.g. asr-transcribe's json output saved as .txt).
    hyp = tmp_path / "hyp.txt"
    hyp.write_text('{"id": "u1", "text": "hello"}\n')
    assert read_transcripts(hyp) == {"u1": "hello"}


@pytest.mark.parametrize("content, message", [
    ("u1 a\nu2 b\nu1 c\n", "text:3: duplicate id 'u1' (first at line 1)"),
    ('{"id": "u1", "text": "a"}\n{"id": "u2"}\n', "text:2: field 'text': missing"),
    ('{"id": "u1", "text": "a"}\n{"id": "u2", "text": 3}\n', "text:2: field 'text': expected a string, got 3"),
    ('{"id": "u1", "text": "a"}\n{"id": "u2", "text": "a"\n', "text:2: invalid JSON"),
    ('{"id": "u1", "text": "a"}\n["u2", "b"]\n', "text:2: expected a JSON object, got list"),
])
def test_bad_transcript_files_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "text"
    path.write_text(content)
    with pytest.raises(ScoringError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        read_transcripts(path)


def test_unreadable_files(tmp_path, capsys):
    with pytest.raises(ScoringError, match="nothere.txt: no such file"):
        read_transcripts(tmp_path / "nothere.txt")
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("u1 caf\xe9\n".encode("latin-1"))
    with pytest.raises(ScoringError, match="latin1.txt: not UTF-8 text"):
        read_transcripts(latin)
    assert wer_main([str(tmp_path / "nothere.txt"), str(latin)]) == 2
    assert "asr-wer: error:" in capsys.readouterr().err


def test_mismatched_ids_are_an_error_that_lists_them(tmp_path, capsys):
    ref = write_kaldi(tmp_path / "ref.txt", ["a", "b", "c", "d"], ["x"] * 4)
    hyp = write_kaldi(tmp_path / "hyp.txt", ["a", "c", "e"], ["x"] * 3)
    assert wer_main([str(ref), str(hyp)]) == 2
    err = capsys.readouterr().err
    assert "2 id(s) of" in err and "ref.txt are not in" in err and "b, d" in err
    assert "1 id(s) of" in err and "e" in err.split("hyp.txt are not in")[1]
    many = {f"u{i:03d}": "x" for i in range(30)}
    with pytest.raises(ScoringError, match=r"30 id\(s\) of refs are not in hyps: u000, .*u019, \.\.\. \(10 more\)"):
        pair_transcripts(many, {}, "refs", "hyps")
    with pytest.raises(ScoringError, match="refs: no utterances"):
        pair_transcripts({}, {}, "refs", "hyps")


def test_bleu_and_chrf_match_sacrebleu(tmp_path, capsys):
    refs = ["The cat sat on the mat.", "Das ist ein kleiner Test", "guten morgen"]
    hyps = ["the cat sat on a mat", "das ist ein Test", ""]
    normalizer = TextNormalizer()
    n_refs, n_hyps = [normalizer(r) for r in refs], [normalizer(h) for h in hyps]
    scores = score_bleu(refs, hyps)
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(n_hyps, [n_refs]).score)
    assert scores["chrf"] == pytest.approx(sacrebleu.corpus_chrf(n_hyps, [n_refs]).score)
    assert 0 < scores["bleu"] < 100 and "tok:13a" in scores["bleu_signature"]
    assert score_bleu(refs, refs)["bleu"] == pytest.approx(100.0)

    ref = tmp_path / "test.jsonl"
    ref.write_text("".join(json.dumps({"id": f"u{i}", "audio": "x.wav", "duration": 1.0, "text": "-",
                                       "target_text": t}) + "\n" for i, t in enumerate(refs)))
    hyp = write_kaldi(tmp_path / "hyp.txt", ["u0", "u1", "u2"], hyps)
    assert wer_main([str(ref), str(hyp), "--metric", "bleu", "--ref-field", "target_text", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["bleu"] == pytest.approx(scores["bleu"]) and printed["num_utts"] == 3
    assert wer_main([str(ref), str(hyp), "--metric", "bleu", "--ref-field", "target_text"]) == 0
    assert f"BLEU {scores['bleu']:.2f}" in capsys.readouterr().out


def test_write_results_for_recipes(tmp_path):
    ids = ["u1", "u2", "u3"]
    refs = ["Hello world.", "a b c", ""]
    hyps = ["hello word", "a b c", "uh"]
    settings = {"beam_size": 10, "ctc_weight": 0.3, "checkpoint": "avg_5"}
    out = tmp_path / "decode" / "test_clean"
    results = write_results(out, ids, refs, hyps, settings=settings)
    assert read_transcripts(out / "hyp.txt") == {"u1": "hello word", "u2": "a b c", "u3": "uh"}
    assert read_transcripts(out / "ref.txt") == {"u1": "Hello world.", "u2": "a b c", "u3": ""}
    assert json.loads((out / "results.json").read_text()) == results
    expected = error_rate(["hello world", "a b c", ""], hyps)
    assert results["test_set"] == "test_clean" and results["wer"] == pytest.approx(expected.wer)
    assert results["settings"] == settings and results["normalizer"]["lowercase"] is True
    table = (out / "RESULTS.md").read_text()
    assert table.startswith("# Results: test_clean\n")
    assert "| test set | utts | WER % | CER % | sub | del | ins | SER % | settings |" in table
    assert f"| test_clean | 3 | {100 * expected.wer:.2f} |" in table
    assert "beam_size=10, ctc_weight=0.3, checkpoint=avg_5" in table

    bleu = write_results(tmp_path / "st", ids[:2], refs[:2], hyps[:2], metric="bleu", test_set="fleurs_de")
    assert bleu["metric"] == "bleu" and "BLEU | chrF" in (tmp_path / "st" / "RESULTS.md").read_text()
    combined = results_table([results, bleu])
    assert "| test_clean |" in combined and "| fleurs_de | 2 |" in combined

    with pytest.raises(ValueError, match="duplicate ids: u1"):
        write_results(tmp_path / "x", ["u1", "u1"], ["a", "b"], ["a", "b"])
    with pytest.raises(ValueError, match="unknown metric"):
        write_results(tmp_path / "x", ids, refs, hyps, metric="ter")


def test_score_experiment_scores_every_test_set(tmp_path):
    exp = tmp_path / "exp"
    dirs = {}
    for name, hyps in (("dev", ["a b", "c"]), ("test", ["a x", ""])):
        dirs[name] = exp / "decode" / name
        dirs[name].mkdir(parents=True)
        write_kaldi(dirs[name] / "ref.txt", ["u1", "u2"], ["A b.", "c"])
        write_kaldi(dirs[name] / "hyp.txt", ["u2", "u1"], hyps[::-1])
    table = score_experiment(exp, dirs, settings={"beam_size": 5})
    assert (exp / "RESULTS.md").read_text() == f"# Results: exp\n\n{table}"
    assert "| dev | 2 | 0.00 |" in table and "| test | 2 | 66.67 |" in table and "beam_size=5" in table
    test = json.loads((dirs["test"] / "results.json").read_text())
    assert (test["test_set"], test["substitutions"], test["deletions"]) == ("test", 1, 1)
    # A hypothesis file that lacks an utterance is an error naming the files and the id.
    write_kaldi(dirs["dev"] / "hyp.txt", ["u1"], ["a b"])
    with pytest.raises(ScoringError, match=r"1 id\(s\) of .*dev/ref.txt are not in .*dev/hyp.txt: u2"):
        score_directory(dirs["dev"])
