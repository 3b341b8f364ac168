"""Connected-digit corpus from FSDD recordings: splits, determinism, idempotence, bad files."""

from __future__ import annotations

import shutil

import pytest

from asr.audio import load_audio
from asr.data import read_manifest
from asr.datasets.fsdd import DIGITS, prepare_fsdd


@pytest.fixture(scope="module")
def mini_fsdd(shared_dir, tmp_path_factory):
    """Two speakers' recordings (takes 0-9) copied into a private FSDD-layout folder, plus one bad file."""
    folder = tmp_path_factory.mktemp("fsdd") / "recordings"
    folder.mkdir()
    for path in (shared_dir / "data" / "fsdd" / "recordings").glob("*.wav"):
        digit, speaker, take = path.stem.split("_")
        if speaker in ("george", "theo") and int(take) < 10:
            shutil.copy(path, folder / path.name)
    shutil.copy(shared_dir / "data" / "real" / "malformed" / "null.wav", folder / "3_george_9.wav")
    (folder / "notes.wav").write_bytes(b"")  # not in the naming scheme: skipped
    return folder.parent


def test_splits_texts_and_audio(mini_fsdd, tmp_path, caplog):
    manifests = prepare_fsdd(tmp_path, mini_fsdd, num_train=20, num_dev=4, num_test=6, progress=False)
    splits = {name: read_manifest(path) for name, path in manifests.items()}
    assert [len(splits[s]) for s in ("train", "dev", "test")] == [20, 4, 6]
    for utt in splits["test"] + splits["train"]:
        words = utt.text.split()
        assert 3 <= len(words) <= 7 and all(w in DIGITS for w in words)
        wave = load_audio(utt.audio, 8000)
        assert abs(wave.numel() / 8000 - utt.duration) < 1e-3
        # Each digit is a recording of ~0.3-0.8 s plus silences: duration grows with the digit count.
        assert 0.3 * len(words) < utt.duration < 2.5 * len(words) + 1.0
    assert {u.speaker for u in splits["test"]} <= {"george", "theo"}
    # The bad recording (null.wav copied in as 3_george_9) and the misnamed file are reported and skipped.
    assert "3_george_9.wav: " in caplog.text and "contains no audio samples" in caplog.text
    assert "notes.wav: not named" in caplog.text


def test_deterministic_and_idempotent(mini_fsdd, tmp_path):
    first = read_manifest(prepare_fsdd(tmp_path / "a", mini_fsdd, num_train=8, num_dev=2, num_test=2,
                                       progress=False)["train"])
    second = read_manifest(prepare_fsdd(tmp_path / "b", mini_fsdd, num_train=8, num_dev=2, num_test=2,
                                        progress=False)["train"])
    assert [u.text for u in first] == [u.text for u in second]
    marker = tmp_path / "a" / "train.done"
    stamp = marker.stat().st_mtime_ns
    prepare_fsdd(tmp_path / "a", mini_fsdd, num_train=8, num_dev=2, num_test=2, progress=False)
    assert marker.stat().st_mtime_ns == stamp  # complete and unchanged: skipped
    prepare_fsdd(tmp_path / "a", mini_fsdd, num_train=9, num_dev=2, num_test=2, progress=False)
    assert len(read_manifest(tmp_path / "a" / "train.jsonl")) == 9  # new settings: redone


def test_holdout_speaker_and_errors(mini_fsdd, tmp_path):
    manifests = prepare_fsdd(tmp_path, mini_fsdd, num_train=6, num_dev=2, num_test=4, holdout_speaker="theo",
                             progress=False)
    assert {u.speaker for u in read_manifest(manifests["test"])} == {"theo"}
    assert {u.speaker for u in read_manifest(manifests["train"])} == {"george"}
    with pytest.raises(ValueError, match="unknown speaker 'nobody'"):
        prepare_fsdd(tmp_path, mini_fsdd, holdout_speaker="nobody")
    with pytest.raises(FileNotFoundError, match="no .wav files"):
        prepare_fsdd(tmp_path, tmp_path / "empty")
    with pytest.raises(ValueError, match="min_digits"):
        prepare_fsdd(tmp_path, mini_fsdd, min_digits=5, max_digits=3)
