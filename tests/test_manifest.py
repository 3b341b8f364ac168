"""Manifests (read/write/validation) and Kaldi data folder import, on real audio files."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import soundfile as sf

from asr.data import ManifestError, Utterance, import_kaldi_dir, read_manifest, write_manifest
from tests.conftest import make_tone


def write_wav(path: Path, seconds: float, sample_rate: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, make_tone(seconds, sample_rate), sample_rate)
    return path


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


GOOD = {"id": "a", "audio": "a.wav", "duration": 1.0, "text": "hello"}


def line(**changes) -> str:
    record = {**GOOD, **changes}
    return json.dumps({k: v for k, v in record.items() if v is not ...})


# --- manifests -------------------------------------------------------------------------------


def test_round_trip_keeps_every_field_and_writes_portable_paths(tmp_path):
    audio = write_wav(tmp_path / "data" / "wav" / "a.wav", 1.0)
    elsewhere = write_wav(tmp_path / "other" / "b.wav", 0.5)
    utterances = [
        Utterance(id="a", audio=str(audio), duration=1.0, text="hello world"),
        Utterance(
            id="b",
            audio=str(elsewhere),
            duration=0.25,
            text="grüß gott",
            offset=0.25,
            speaker="s1",
            lang="de",
            target_text="hello",
            target_lang="en",
        ),
    ]
    manifest = tmp_path / "data" / "train.jsonl"
    write_manifest(manifest, utterances)

    assert read_manifest(manifest) == utterances
    records = [json.loads(x) for x in manifest.read_text(encoding="utf-8").splitlines()]
    # Audio inside the manifest's folder is written relative (the folder can move); None optionals
    # and a zero offset are left out; non-ASCII text stays readable.
    assert records[0] == {"id": "a", "audio": os.path.join("wav", "a.wav"), "duration": 1.0, "text": "hello world"}
    assert records[1]["audio"] == str(elsewhere)
    assert "grüß" in manifest.read_text(encoding="utf-8")
    assert oct(manifest.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in manifest.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_relative_audio_resolves_against_the_manifest_folder(tmp_path, monkeypatch):
    write_wav(tmp_path / "data" / "a.wav", 1.0)
    manifest = write_lines(tmp_path / "data" / "m.jsonl", [line(), ""])  # blank lines are ignored
    monkeypatch.chdir(tmp_path)
    (utt,) = read_manifest(Path("data") / "m.jsonl")
    assert utt.audio == str(tmp_path / "data" / "a.wav")
    assert utt.offset == 0.0 and utt.speaker is None
    assert read_manifest(manifest) == [utt]


@pytest.mark.parametrize(
    "bad, expected",
    [
        ('{"id": "x", ', "invalid JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        (line(text=...), "field 'text': missing"),
        (line(id=7), "field 'id': expected a string, got 7"),
        (line(id=" "), "field 'id': expected a non-empty string"),
        (line(duration=-1), "field 'duration': expected a positive number, got -1"),
        (line(duration=0), "field 'duration': expected a positive number, got 0"),
        (line(duration="1.0"), "field 'duration': expected a number, got '1.0'"),
        (line(duration=True), "field 'duration': expected a number, got True"),
        (line(offset=-0.5), "field 'offset': expected a non-negative number, got -0.5"),
        (line(speaker=3), "field 'speaker': expected a string or null, got 3"),
        (line(tagret_text="hallo"), "unknown field(s) 'tagret_text'"),
    ],
)
def test_each_bad_line_is_named_by_file_line_and_field(tmp_path, bad, expected):
    manifest = write_lines(tmp_path / "m.jsonl", [line(id="ok1"), line(id="ok2"), bad])
    with pytest.raises(ManifestError) as e:
        read_manifest(manifest, check_audio=False)
    assert str(e.value).startswith(f"{manifest}:3: ")
    assert expected in str(e.value)


def test_all_bad_lines_are_listed_in_one_error(tmp_path):
    manifest = write_lines(tmp_path / "m.jsonl", [line(id="a", duration=-1), line(id="b"), line(id="c", text=None)])
    with pytest.raises(ManifestError, match="2 bad lines") as e:
        read_manifest(manifest, check_audio=False)
    assert f"{manifest}:1: field 'duration'" in str(e.value)
    assert f"{manifest}:3: field 'text'" in str(e.value)


def test_duplicate_ids_name_both_lines(tmp_path):
    manifest = write_lines(tmp_path / "m.jsonl", [line(id="a"), line(id="b"), line(id="a")])
    with pytest.raises(ManifestError, match=r"m\.jsonl:3: field 'id': duplicate id 'a' \(first at line 1\)"):
        read_manifest(manifest, check_audio=False)


def test_missing_audio_is_one_error_listing_the_files(tmp_path):
    write_wav(tmp_path / "present.wav", 0.2)
    lines = [line(id="present", audio="present.wav")]
    lines += [line(id=f"u{i}", audio=f"gone/u{i}.wav") for i in range(25)]
    manifest = write_lines(tmp_path / "m.jsonl", lines)
    with pytest.raises(ManifestError) as e:
        read_manifest(manifest)
    message = str(e.value)
    assert "25 of 26 audio files are missing" in message
    assert f"line 2: {tmp_path / 'gone' / 'u0.wav'}" in message and "u19.wav" in message
    assert "u20.wav" not in message and "... and 5 more" in message
    assert len(read_manifest(manifest, check_audio=False)) == 26


def test_unreadable_manifest_is_a_manifest_error(tmp_path):
    with pytest.raises(ManifestError, match="cannot read manifest"):
        read_manifest(tmp_path / "absent.jsonl")


def test_write_refuses_duplicate_ids_and_keeps_the_old_file(tmp_path):
    manifest = tmp_path / "m.jsonl"
    utt = Utterance(id="a", audio=str(tmp_path / "a.wav"), duration=1.0, text="x")
    write_manifest(manifest, [utt])
    before = manifest.read_text()
    with pytest.raises(ManifestError, match="duplicate utterance id 'a'"):
        write_manifest(manifest, [utt, utt])
    assert manifest.read_text() == before


def test_utterance_validates_its_fields():
    with pytest.raises(ValueError, match="Utterance 'a': field 'duration': expected a positive number"):
        Utterance(id="a", audio="a.wav", duration=-2.0, text="x")
    with pytest.raises(ValueError, match="field 'target_lang': expected a string or null"):
        Utterance(id="a", audio="a.wav", duration=2.0, text="x", target_lang=1)


# --- Kaldi data folders ----------------------------------------------------------------------


@pytest.fixture
def kaldi_dir(tmp_path) -> Path:
    rec1 = write_wav(tmp_path / "audio" / "rec1.wav", 3.0)
    rec2 = write_wav(tmp_path / "audio" / "rec2.flac", 2.0, sample_rate=8000)
    data = tmp_path / "data" / "train"
    data.mkdir(parents=True)
    write_lines(
        data / "wav.scp",
        [
            f"rec1 {rec1}",
            f"rec2 {rec2}",
            "rec3 sox /corpus/rec3.sph -t wav - |",
            "rec4 /corpus/raw.ark:1234",
            f"rec5 {tmp_path / 'audio' / 'missing.wav'}",
        ],
    )
    write_lines(
        data / "segments",
        [
            "u1 rec1 0.00 1.50",
            "u2 rec1 1.50 3.00",
            "u3 rec2 0 -1",
            "u4 rec3 0.0 1.0",  # its recording is a pipe
            "u5 rec1 2.50 9.00",  # ends far past its recording
            "u6 rec2 0.5 1.0",  # no transcript
        ],
    )
    write_lines(data / "text", ["u1 HELLO WORLD", "u2 GOOD  MORNING", "u3 YES", "u4 NO", "u5 LATE", "u7 ORPHAN"])
    write_lines(data / "utt2spk", ["u1 spkA", "u2 spkA", "u3 spkB"])
    return data


def test_kaldi_import_with_segments_utt2spk_and_skipped_entries(kaldi_dir, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="asr.data.kaldi"):
        utterances = import_kaldi_dir(kaldi_dir, lang="en")

    rec1, rec2 = str(tmp_path / "audio" / "rec1.wav"), str(tmp_path / "audio" / "rec2.flac")
    assert utterances == [
        Utterance(id="u1", audio=rec1, duration=1.5, text="HELLO WORLD", offset=0.0, speaker="spkA", lang="en"),
        Utterance(id="u2", audio=rec1, duration=1.5, text="GOOD  MORNING", offset=1.5, speaker="spkA", lang="en"),
        Utterance(id="u3", audio=rec2, duration=2.0, text="YES", offset=0.0, speaker="spkB", lang="en"),
    ]
    report = caplog.text
    assert "imported 3 utterances, skipped 7 entries" in report
    assert f"{kaldi_dir / 'wav.scp'}:3: recording 'rec3': command pipes cannot be read" in report
    assert f"{kaldi_dir / 'wav.scp'}:4: recording 'rec4': ark offsets cannot be read" in report
    assert f"{kaldi_dir / 'wav.scp'}:5: recording 'rec5'" in report and "missing.wav" in report
    assert f"{kaldi_dir / 'segments'}:4: utterance 'u4': recording 'rec3'" in report
    assert f"{kaldi_dir / 'segments'}:5: utterance 'u5': segment 2.5-9.0 s lies outside" in report
    assert f"{kaldi_dir / 'segments'}:6: utterance 'u6' has no transcript" in report
    assert f"{kaldi_dir / 'text'}:6: utterance 'u7' has no audio entry" in report

    # The imported list round-trips through a manifest.
    write_manifest(tmp_path / "train.jsonl", utterances)
    assert read_manifest(tmp_path / "train.jsonl") == utterances


def test_kaldi_import_without_segments_uses_whole_recordings(tmp_path, caplog):
    rec = write_wav(tmp_path / "r1.wav", 1.25)
    write_lines(tmp_path / "wav.scp", [f"r1 {rec}", "r2 cat r2.wav |"])
    write_lines(tmp_path / "text", ["r1 hi there", "r2 skipped"])
    with caplog.at_level(logging.WARNING, logger="asr.data.kaldi"):
        (utt,) = import_kaldi_dir(tmp_path)
    assert (utt.id, utt.audio, utt.duration, utt.text) == ("r1", str(rec), 1.25, "hi there")
    assert utt.speaker is None and utt.lang is None
    # One report for r2: its transcript is not reported again.
    assert "skipped 1 entries" in caplog.text
    assert "wav.scp:2: recording 'r2': command pipes" in caplog.text


@pytest.mark.parametrize(
    "file, lines, expected",
    [
        ("segments", ["u1 rec1 0 1", "u2 rec1 0.5"], "segments:2: expected 4 fields, got 3"),
        ("segments", ["u1 rec1 zero 1"], "segments:1: field 'start': expected seconds, got 'zero'"),
        ("segments", ["u1 rec1 1.0 0.5"], "segments:1: segment 'u1': bad times start=1.0 end=0.5"),
        ("utt2spk", ["u1 spkA extra"], "utt2spk:1: expected 2 fields, got 3"),
        ("text", ["u1 A", "u2 B", "u1 C"], "text:3: duplicate id 'u1' (first at line 1)"),
    ],
)
def test_kaldi_malformed_lines_name_file_and_line(kaldi_dir, file, lines, expected):
    write_lines(kaldi_dir / file, lines)
    with pytest.raises(ManifestError) as e:
        import_kaldi_dir(kaldi_dir)
    assert f"{kaldi_dir / expected}" in str(e.value)


def test_kaldi_folder_without_text_is_an_error(tmp_path):
    write_lines(tmp_path / "wav.scp", ["r1 /x.wav"])
    with pytest.raises(ManifestError, match="not a Kaldi data folder \\(text is missing\\)"):
        import_kaldi_dir(tmp_path)


def test_kaldi_recipe_preparer_writes_one_manifest_per_data_dir(kaldi_dir, tmp_path):
    """`recipe.prepare.kind: kaldi` (any corpus already in Kaldi form) maps manifest names to data dirs."""
    from asr.recipe.prepare import PREPARERS

    out = tmp_path / "manifests"
    PREPARERS["kaldi"](out, str(kaldi_dir.parent), splits={"train": "train"}, lang="en")
    assert [u.id for u in read_manifest(out / "train.jsonl")] == ["u1", "u2", "u3"]
    with pytest.raises(ValueError, match="recipe.prepare.splits"):
        PREPARERS["kaldi"](out, None)
