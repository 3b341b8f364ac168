"""Transcription end to end with a real (tiny, untrained) model directory: the Python API, batching,
long audio with VAD or windows, subtitles, bad files, bounded memory, and the asr-transcribe CLI.

Random weights give garbage text, but deterministic garbage: the model never ends a hypothesis
early (its <eos> logit is pushed down), so every transcript is as long as max_len_ratio allows,
and equal inputs give equal outputs whatever they are batched with.
"""

from __future__ import annotations

import json
import re
import shutil
import tracemalloc
from pathlib import Path

import pytest
import soundfile as sf
import torch

import asr
from asr.audio import AudioError, load_audio
from asr.cli.transcribe import main as transcribe_main
from asr.cli.wer import main as wer_main
from asr.decode import DecodeOptions, DecodeResult, Segment
from asr.features import FeatureConfig
from asr.model.config import EOS_ID, DecoderConfig, EncoderConfig, ModelConfig
from asr.model.io import save_model_dir
from asr.model.registry import build_model
from asr.output import format_timestamp, output_stem, parse_formats, to_srt, to_vtt, write_outputs
from asr.segment import FileAudio, SegmenterConfig, plan_segments
from asr.text import train_tokenizer
from asr.transcribe import AudioInput, collect_inputs, iter_transcribe, overlap_cut, transcribe
from tests.test_segment import make_long_recording

OPTIONS = DecodeOptions(beam_size=2, ctc_weight=0.3, max_len_ratio=0.05)
# Quick decoding for the CLI: beam 2 and at most one token per 20 encoder frames.
CLI_DECODING = ["--beam-size", "2", "--max-len-ratio", "0.05", "--quiet"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    tokenizer = train_tokenizer(["the quick brown fox jumps over the lazy dog", "zero one two three four five"])
    features = FeatureConfig(n_mels=40)
    config = ModelConfig(
        vocab_size=tokenizer.vocab_size, input_dim=features.n_mels, specaug=None,
        encoder=EncoderConfig(d_model=32, n_heads=2, n_layers=1, ffn_dim=64, subsampling_channels=8, dropout=0.0),
        decoder=DecoderConfig(d_model=32, n_heads=2, n_layers=1, ffn_dim=64, dropout=0.0))
    torch.manual_seed(0)
    model = build_model(config)
    with torch.no_grad():
        model.decoder.output.bias[EOS_ID] = -30.0  # hypotheses run to the length limit
    return save_model_dir(tmp_path_factory.mktemp("model") / "model", model, tokenizer, features)


@pytest.fixture(scope="module")
def speech(model_dir):
    return asr.load_model(model_dir)


@pytest.fixture(scope="module")
def real(shared_dir) -> Path:
    return shared_dir / "data" / "real"


@pytest.fixture(scope="module")
def digits(shared_dir) -> list[Path]:
    folder = shared_dir / "data" / "fsdd" / "recordings"
    return [folder / f"{d}_jackson_{i}.wav" for d, i in ((0, 0), (3, 1), (7, 2), (9, 3))]


@pytest.fixture(scope="module")
def long_recording(shared_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("long") / "long.wav"
    return path, make_long_recording(shared_dir, path)


def expected_tokens(speech, seconds: float, ratio: float = OPTIONS.max_len_ratio) -> int:
    frames = speech.features.num_frames(round(seconds * speech.sample_rate))
    enc_frames = int(speech.model.encoder.output_lengths(torch.tensor([frames]))[0])
    return min(max(int(enc_frames * ratio), 1), OPTIONS.max_len)


# --- the Python API ------------------------------------------------------------------------------


def test_transcribe_a_file_and_an_array(speech, real):
    path = real / "librispeech" / "1272-128104-0000.flac"
    result = speech.transcribe(str(path), OPTIONS)
    assert isinstance(result, DecodeResult) and result.audio == str(path)
    assert result.text and len(result.tokens) == expected_tokens(speech, 5.855)
    assert result.segments == (Segment(0.0, 5.855, result.text, result.tokens),)
    # The same audio as an array (at the model's rate) gives the same text; arrays have no path.
    from_array = speech.transcribe(load_audio(path).numpy(), OPTIONS)
    assert from_array.text == result.text and from_array.audio is None
    # Keyword changes to the options, as in model.transcribe("a.wav", beam_size=1).
    greedy = speech.transcribe(path, beam_size=1, ctc_weight=0.0, max_len_ratio=0.05)
    assert len(greedy.tokens) == len(result.tokens)


def test_batches_give_what_single_inputs_give(speech, real, digits):
    sources = [real / "misc" / "jfk.flac", *digits, real / "librispeech" / "8266-258262-0000.flac",
               AudioInput(load_audio(digits[0], 8000).numpy(), sample_rate=8000)]
    alone = [speech.transcribe(s if not isinstance(s, AudioInput) else [s], OPTIONS) for s in sources]
    alone[-1] = alone[-1][0]
    together = speech.transcribe(sources, OPTIONS)
    assert [r.text for r in together] == [r.text for r in alone]
    assert [r.audio for r in together] == [str(s) for s in sources[:-1]] + [None]
    # Small batches and a tiny planning pool change nothing but the schedule.
    streamed = list(iter_transcribe(speech, sources, OPTIONS, batch_size=2, batch_seconds=4.0, pool_seconds=1.0))
    assert [t.result.text for t in streamed] == [r.text for r in alone]
    assert streamed[0].duration == pytest.approx(11.0) and streamed[-1].input is sources[-1]


def test_long_audio_is_split_at_pauses_with_timestamps(speech, long_recording, tmp_path):
    path, bounds = long_recording
    result = speech.transcribe(path, OPTIONS)
    spans = list(plan_segments(FileAudio(path), SegmenterConfig()))
    assert len(spans) == len(bounds)
    assert [(s.start, s.end) for s in result.segments] == [tuple(s) for s in spans]
    assert result.text == " ".join(s.text for s in result.segments)
    # Each segment's text is what decoding that stretch on its own gives.
    for segment in result.segments[:3]:
        piece = load_audio(path, offset=segment.start, duration=segment.end - segment.start)
        assert speech.transcribe(piece, OPTIONS).text == segment.text
    # Subtitles carry the segment times.
    srt, vtt = write_outputs(tmp_path, "long", result, ["srt", "vtt"])
    cues = re.findall(r"^(\d+)\n(\S+) --> (\S+)\n(.+)$", srt.read_text(), flags=re.M)
    assert [int(c[0]) for c in cues] == list(range(1, len(spans) + 1))
    assert [(c[1], c[2]) for c in cues] == [(format_timestamp(s.start, ","), format_timestamp(s.end, ","))
                                            for s in spans]
    assert [c[3] for c in cues] == [s.text for s in result.segments]
    assert vtt.read_text().startswith("WEBVTT\n\n00:00:0")
    assert f"{format_timestamp(spans[-1].start)} --> {format_timestamp(spans[-1].end)}\n" in vtt.read_text()


def test_fixed_windows_are_stitched(speech, long_recording):
    path, _ = long_recording
    duration = sf.info(str(path)).duration
    segmenter = SegmenterConfig(method="window", max_segment_s=10.0, overlap_s=2.0)
    result = transcribe(speech, [path], OPTIONS, segmenter=segmenter)[0]
    segments = result.segments
    # Overlapping windows are reported without overlap: each cue ends where the next begins.
    assert segments[0].start == 0.0 and segments[-1].end == pytest.approx(duration, abs=1e-3)
    assert all(a.end == b.start for a, b in zip(segments, segments[1:]))
    assert all(b.start == pytest.approx(a.start + 8.0 + 1.0 if i == 0 else a.start + 8.0)
               for i, (a, b) in enumerate(zip(segments, segments[1:])))
    assert result.tokens == tuple(t for s in segments for t in s.tokens)


def test_overlap_cut_keeps_the_common_part_once():
    left = list(range(100, 120))
    right = list(range(114, 130))  # tokens 114..119 were heard in both windows
    keep, skip = overlap_cut(left, right, 0.3, 0.4)
    assert left[:keep] + right[skip:] == list(range(100, 130))
    # No common run: each side drops the tokens of its half of the overlap.
    keep, skip = overlap_cut(list(range(20)), list(range(50, 70)), 0.2, 0.2)
    assert (keep, skip) == (18, 2)


def test_bad_files_are_reported_and_skipped(speech, real, digits):
    bad = real / "malformed" / "evil.wav"
    with pytest.raises(AudioError, match="evil.wav"):
        transcribe(speech, [digits[0], bad, digits[1]], OPTIONS)
    failures = []
    results = transcribe(speech, [digits[0], bad, real / "nothere.wav", digits[1]], OPTIONS,
                         on_error=lambda item, error: failures.append((item.name, str(error))))
    assert [r.audio for r in results] == [str(digits[0]), str(digits[1])]
    assert [name for name, _ in failures] == [str(bad), str(real / "nothere.wav")]
    assert "corrupt WAV header" in failures[0][1] and "not found" in failures[1][1]


def test_memory_stays_bounded_on_a_ten_minute_file(speech, shared_dir, tmp_path):
    path = tmp_path / "ten_minutes.wav"
    make_long_recording(shared_dir, path, repeat=9)
    duration = sf.info(str(path)).duration
    assert duration >= 600  # 38 MB of float32 samples at 16 kHz, were it loaded whole
    segmenter = SegmenterConfig(method="window", max_segment_s=30.0, overlap_s=2.0)
    options = DecodeOptions(beam_size=1, ctc_weight=0.0, max_len_ratio=0.01)
    tracemalloc.start()
    try:
        (transcript,) = iter_transcribe(speech, [path], options, segmenter=segmenter, batch_size=2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Audio is read a window at a time (2 x 30 s = 3.8 MB per batch).
    assert peak < 12e6, f"peak {peak / 1e6:.1f} MB"
    assert transcript.duration == pytest.approx(duration)
    assert transcript.result.segments[-1].end == pytest.approx(duration, abs=1e-3)


# --- inputs and outputs ----------------------------------------------------------------------------


def test_collect_inputs(tmp_path, digits, real):
    folder = tmp_path / "audio"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(digits[0], folder / "a.wav")
    shutil.copy(digits[1], folder / "sub" / "b.wav")
    (folder / "notes.txt").write_text("not audio")
    manifest = tmp_path / "test.jsonl"
    manifest.write_text(json.dumps({"id": "jfk-1", "audio": str(real / "misc" / "jfk.flac"), "duration": 3.0,
                                    "offset": 2.0, "text": "x"}) + "\n")
    inputs = collect_inputs([folder, manifest, tmp_path / "missing.wav"])
    assert [(i.id, Path(i.audio).name) for i in inputs] == [("a", "a.wav"), ("sub/b", "b.wav"),
                                                           ("jfk-1", "jfk.flac"), ("missing", "missing.wav")]
    assert (inputs[2].offset, inputs[2].duration) == (2.0, 3.0)
    with pytest.raises(ValueError, match="'a': .*a.wav and .*a.wav"):
        collect_inputs([folder / "a.wav", folder])


def test_timestamps_and_subtitle_formats(tmp_path):
    assert format_timestamp(0) == "00:00:00.000"
    assert format_timestamp(3661.5, ",") == "01:01:01,500"
    assert format_timestamp(59.9996) == "00:01:00.000"
    assert format_timestamp(360000.25) == "100:00:00.250"
    with pytest.raises(ValueError):
        format_timestamp(-1)
    result = DecodeResult((), "a <b> & c  d", 0.0, segments=(
        Segment(0.5, 2.25, "a <b> & c"), Segment(2.25, 3.0, ""), Segment(3.0, 4.0, "d\n\ne")))
    assert to_srt(result) == "1\n00:00:00,500 --> 00:00:02,250\na <b> & c\n\n2\n00:00:03,000 --> 00:00:04,000\nd e\n"
    assert to_vtt(result) == ("WEBVTT\n\n00:00:00.500 --> 00:00:02.250\na &lt;b&gt; &amp; c\n\n"
                              "00:00:03.000 --> 00:00:04.000\nd e\n")
    assert to_srt(DecodeResult((), "", 0.0)) == "" and to_vtt(DecodeResult((), "", 0.0)) == "WEBVTT\n"
    assert parse_formats("all") == ("txt", "json", "srt", "vtt") and parse_formats("srt, vtt") == ("srt", "vtt")
    with pytest.raises(ValueError, match="unknown output format"):
        parse_formats("docx")
    assert output_stem(tmp_path, "../../etc/passwd") == tmp_path / "etc" / "passwd"
    assert output_stem(tmp_path, "/abs/x") == tmp_path / "abs" / "x"
    written = write_outputs(tmp_path / "out", "dir/utt1", result, ["txt", "json"])
    assert [p.relative_to(tmp_path).as_posix() for p in written] == ["out/dir/utt1.txt", "out/dir/utt1.json"]
    assert written[0].read_text() == "a <b> & c  d\n"
    assert json.loads(written[1].read_text())["id"] == "dir/utt1"


# --- asr-transcribe ----------------------------------------------------------------------------------


def test_cli_reports_and_skips_bad_files(model_dir, digits, real, tmp_path, capsys):
    folder = tmp_path / "audio"
    (folder / "more").mkdir(parents=True)
    for digit in digits[:2]:
        shutil.copy(digit, folder / digit.name)
    shutil.copy(digits[2], folder / "more" / digits[2].name)
    shutil.copy(real / "malformed" / "bad.wav", folder / "more" / "bad.wav")
    # (With the progress bar, which goes to stderr like the reports.)
    status = transcribe_main([str(model_dir), str(folder), str(real / "malformed" / "null.wav"), *CLI_DECODING[:-1]])
    out, err = capsys.readouterr()
    assert status == 1
    ids = [line.split()[0] for line in out.splitlines()]
    assert ids == [digits[0].stem, digits[1].stem, f"more/{digits[2].stem}"]
    assert f"skipped {folder / 'more' / 'bad.wav'}: corrupt WAV header" in err
    assert "null.wav: contains no audio samples" in err
    assert "transcribed 3 file(s)" in err and "2 failed" in err
    assert err.count("  FAILED ") == 2
    assert "5/5" in err  # the progress bar counts every input, good or bad


def test_cli_writes_every_format(model_dir, long_recording, digits, tmp_path, capsys):
    path, bounds = long_recording
    out_dir = tmp_path / "out"
    status = transcribe_main([str(model_dir), str(path), str(digits[0]), "--output-dir", str(out_dir),
                              "--output-format", "all", *CLI_DECODING])
    assert status == 0 and capsys.readouterr().out == ""
    for stem in ("long", digits[0].stem):
        assert sorted(p.name for p in out_dir.glob(f"{stem}.*")) == [f"{stem}.{f}" for f in ("json", "srt", "txt",
                                                                                               "vtt")]
    data = json.loads((out_dir / "long.json").read_text())
    assert data["id"] == "long" and data["audio"] == str(path) and len(data["segments"]) == len(bounds)
    assert (out_dir / "long.txt").read_text() == data["text"] + "\n"
    srt = (out_dir / "long.srt").read_text()
    first = data["segments"][0]
    assert srt.startswith(f"1\n{format_timestamp(first['start'], ',')} --> {format_timestamp(first['end'], ',')}\n")


def test_cli_manifest_output_feeds_asr_wer(model_dir, real, tmp_path, capsys):
    manifest = tmp_path / "test.jsonl"
    lines = [{"id": f"jfk-{i}", "audio": str(real / "misc" / "jfk.flac"), "offset": 3.0 * i, "duration": 3.0,
              "text": "and so my fellow americans"} for i in range(3)]
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert transcribe_main([str(model_dir), str(manifest), *CLI_DECODING]) == 0
    hyp = tmp_path / "hyp.txt"
    hyp.write_text(capsys.readouterr().out)
    assert [line.split()[0] for line in hyp.read_text().splitlines()] == ["jfk-0", "jfk-1", "jfk-2"]
    assert wer_main([str(manifest), str(hyp), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["num_utts"] == 3 and scores["ref_words"] == 15
    # JSON lines on stdout carry the segments too.
    assert transcribe_main([str(model_dir), str(manifest), "--output-format", "json", *CLI_DECODING]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in records] == ["jfk-0", "jfk-1", "jfk-2"]
    assert records[1]["segments"][0]["start"] == 0.0 and records[1]["segments"][0]["end"] == 3.0


def test_cli_argument_errors(model_dir, digits, tmp_path, capsys):
    assert transcribe_main([str(model_dir), str(digits[0]), "--output-format", "srt"]) == 2
    assert "needs --output-dir" in capsys.readouterr().err
    assert transcribe_main([str(tmp_path / "no-model"), str(digits[0])]) == 2
    assert "no-model/config.yaml: no such file" in capsys.readouterr().err
    assert transcribe_main([str(model_dir), str(digits[0]), "--beam-size", "0"]) == 2
    assert "beam_size=0" in capsys.readouterr().err
    assert transcribe_main([str(model_dir), str(tmp_path)]) == 2
    assert "no audio files found" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert transcribe_main([str(model_dir), str(digits[0]), "--device", "cuda"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        transcribe_main([str(model_dir), str(digits[0]), "--dtype", "int8"])
    assert exit_info.value.code == 2 and "invalid choice: 'int8'" in capsys.readouterr().err


def test_cli_computes_in_bfloat16(model_dir, digits, capsys):
    from asr.cli.transcribe import build_parser
    from asr.model.io import DTYPES

    dtype_option = next(a for a in build_parser()._actions if a.dest == "dtype")
    assert tuple(dtype_option.choices) == tuple(DTYPES)
    assert transcribe_main([str(model_dir), *map(str, digits), "--dtype", "bfloat16", *CLI_DECODING]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [p.stem for p in digits]
    assert all(len(line.split()) > 1 for line in lines)


def test_cli_translation(model_dir, long_recording, tmp_path, capsys):
    path, _ = long_recording
    # This model has no <de> token: an error before any audio is read.
    assert transcribe_main([str(model_dir), str(path), "--task", "st", "--target-lang", "de", *CLI_DECODING]) == 2
    assert "the tokenizer has no <de> token" in capsys.readouterr().err
    # A model with task and language tokens translates (CTC is off for --task st), here in windows.
    tokenizer = train_tokenizer(["hallo welt", "hello world"], extra_tokens=["<asr>", "<st>", "<en>", "<de>"])
    features = FeatureConfig(n_mels=40)
    config = ModelConfig(
        vocab_size=tokenizer.vocab_size, input_dim=features.n_mels, specaug=None,
        encoder=EncoderConfig(d_model=32, n_heads=2, n_layers=1, ffn_dim=64, subsampling_channels=8),
        decoder=DecoderConfig(d_model=32, n_heads=2, n_layers=1, ffn_dim=64))
    torch.manual_seed(0)
    st_dir = save_model_dir(tmp_path / "st", build_model(config), tokenizer, features)
    status = transcribe_main([str(st_dir), str(path), "--task", "st", "--target-lang", "de", "--segment", "window",
                              "--max-segment", "15", "--overlap", "3", "--output-format", "json", *CLI_DECODING])
    assert status == 0
    (record,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert record["id"] == "long" and all(a["end"] == b["start"] for a, b in zip(record["segments"],
                                                                               record["segments"][1:]))
