"""Audio input: every real file in shared/ decodes or fails clearly; bytes, file objects, raw PCM,
arrays, segments, resampling, and broken input (missing, empty, truncated, corrupt, NaN)."""

from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.audio import AudioError, _librosa_load, audio_duration, load_audio, resample
from tests.conftest import make_tone

REAL_FOLDERS = {"librispeech": "*.flac", "librivox": "*.wav", "cards": "*.wav", "fleurs": "*.ogg"}


@pytest.fixture(scope="module")
def real(shared_dir):
    return shared_dir / "data" / "real"


@pytest.fixture()
def librivox_wav(real):
    return real / "librivox" / "sense_and_sensibility_01_austen_64kb-0880.wav"


def assert_good_wave(wave: torch.Tensor, expected_seconds: float, sample_rate: int = 16000) -> None:
    assert wave.dtype == torch.float32 and wave.ndim == 1 and wave.is_contiguous()
    assert torch.isfinite(wave).all()
    # Some FLEURS English clips are genuinely quiet (peak ~0.003, no Opus output gain), hence 1e-3.
    assert 1e-3 < wave.abs().max() <= 1.0, "digital silence or unnormalised audio"
    assert abs(len(wave) - expected_seconds * sample_rate) <= 1


# --- the real files in shared/ ---------------------------------------------------------------


@pytest.mark.parametrize("folder", sorted(REAL_FOLDERS))
def test_real_corpus_files_load(real, folder):
    paths = sorted((real / folder).glob(REAL_FOLDERS[folder]))
    assert paths, f"no files in {real / folder}"
    for path in paths:
        seconds = audio_duration(path)
        assert 0.5 < seconds < 60, path
        assert sf.info(path).samplerate == 16000
        assert_good_wave(load_audio(path), seconds)


def test_jfk_stereo_24bit_44k(real):
    path = real / "misc" / "jfk.flac"
    assert audio_duration(path) == pytest.approx(11.0)
    stereo, rate = sf.read(path, dtype="float32")
    assert rate == 44100 and stereo.shape == (485100, 2)
    native = load_audio(path, sample_rate=44100)
    torch.testing.assert_close(native, torch.from_numpy(stereo.mean(axis=1)))
    assert_good_wave(load_audio(path), 11.0)


def test_nist_sphere(real):
    # example3.sph is genuinely 8-bit linear PCM (sample_coding pcm, sample_n_bytes 1): libsndfile reads it.
    path = real / "misc" / "example3.sph"
    assert "NIST" in sf.available_formats()
    assert audio_duration(path) == pytest.approx(46242 / 16000)
    assert_good_wave(load_audio(path), 46242 / 16000)


def test_shorten_compressed_sphere_is_a_clear_error(real, tmp_path):
    # libsndfile has no shorten decoder ("unimplemented format"); the error must say what to do.
    original = (real / "misc" / "example3.sph").read_bytes()
    header = original[:1024].replace(b"sample_coding -s3 pcm", b"sample_coding -s26 pcm,embedded-shorten-v2.00")
    path = tmp_path / "shorten.sph"
    path.write_bytes(header[:1024].ljust(1024, b" ") + original[1024:])
    with pytest.raises(AudioError, match=r"shorten.sph: NIST SPHERE data is compressed .*shorten.*sph2pipe"):
        load_audio(path)
    with pytest.raises(AudioError, match="shorten"):
        audio_duration(path)


# Each malformed file and what is actually wrong with it (see xxd of the files).
MALFORMED = {
    # fmt chunk size field is 0x66666666: the header is garbage past byte 16.
    "bad.wav": r"corrupt WAV header: chunk 'fmt ' at byte 12 claims 1717986918 bytes but only 24 follow",
    # no data chunk: an unknown 'HURF' chunk claims 0x39393939 bytes ("9999") in a 5 kB file.
    "evil.wav": r"corrupt WAV header: chunk 'HURF' at byte 36 claims 960051513 bytes",
    # a well-formed header with an empty data chunk.
    "null.wav": r"contains no audio samples",
    # rate field 0x0010AC44 (44100 with a stray high byte), 441 frames of digital silence.
    "awful.wav": r"implausible sample rate 1092676 Hz in the header",
}


@pytest.mark.parametrize("file_name", sorted(MALFORMED))
def test_malformed_files_raise_clear_errors(real, file_name):
    path = real / "malformed" / file_name
    for read in (load_audio, audio_duration):
        with pytest.raises(AudioError, match=MALFORMED[file_name]) as error:
            read(path)
        assert str(error.value).startswith(f"{path}: ")
    with pytest.raises(AudioError, match=MALFORMED[file_name]):
        load_audio(path.read_bytes())


# --- in-memory sources ----------------------------------------------------------------------


def test_bytes_and_file_object_match_path(real):
    path = real / "librispeech" / "1272-128104-0001.flac"
    expected = load_audio(path)
    torch.testing.assert_close(load_audio(path.read_bytes()), expected, rtol=0, atol=0)
    torch.testing.assert_close(load_audio(io.BytesIO(path.read_bytes())), expected, rtol=0, atol=0)
    with open(path, "rb") as stream:
        torch.testing.assert_close(load_audio(stream), expected, rtol=0, atol=0)
    with open(path) as text_stream, pytest.raises(TypeError, match="unsupported source"):
        load_audio(text_stream)


def test_raw_pcm16_bytes_need_source_rate():
    pcm = (make_tone(0.5, 8000) * 32767).astype("<i2")
    wave = load_audio(pcm.tobytes(), 16000, source_rate=8000)
    assert len(wave) == 8000 and wave.dtype == torch.float32
    native = load_audio(pcm.tobytes(), 8000, source_rate=8000)
    torch.testing.assert_close(native, torch.from_numpy(pcm / 32768.0).float())
    with pytest.raises(AudioError, match=r"<bytes>: not a recognised audio format .*pass source_rate"):
        load_audio(pcm.tobytes())
    with pytest.raises(AudioError, match=r"<bytes>: raw PCM16 data has an odd number of bytes \(7\)"):
        load_audio(b"\x01" * 7, source_rate=16000)


def test_container_rate_must_match_source_rate(librivox_wav):
    assert len(load_audio(librivox_wav.read_bytes(), source_rate=16000)) == 47840
    with pytest.raises(AudioError, match="is 16000 Hz but source_rate=8000"):
        load_audio(librivox_wav, source_rate=8000)


def test_integer_arrays_are_scaled():
    pcm16 = np.array([16384, -32768, 0], dtype=np.int16)
    torch.testing.assert_close(load_audio(pcm16), torch.tensor([0.5, -1.0, 0.0]))
    torch.testing.assert_close(load_audio(np.array([192, 0, 128], dtype=np.uint8)), torch.tensor([0.5, -1.0, 0.0]))
    torch.testing.assert_close(load_audio(torch.tensor([2**30], dtype=torch.int32)), torch.tensor([0.5]))
    with pytest.raises(AudioError, match="<array>: unsupported sample dtype int64"):
        load_audio(np.zeros(10, dtype=np.int64))


def test_stereo_downmix_both_layouts():
    left, right = make_tone(0.1, freq=300, seed=1), make_tone(0.1, freq=500, seed=2)
    expected = torch.from_numpy((left + right) / 2)
    channels_first = torch.from_numpy(np.stack([left, right]))  # (2, S)
    torch.testing.assert_close(load_audio(channels_first), expected)
    torch.testing.assert_close(load_audio(channels_first.T.numpy()), expected)  # (S, 2)
    with pytest.raises(AudioError, match=r"<array>: expected a 1-D .* got shape \(1, 2, 3\)"):
        load_audio(np.zeros((1, 2, 3), dtype=np.float32))


def test_array_result_does_not_alias_input():
    samples = make_tone(0.1)
    wave = load_audio(samples)
    wave.zero_()
    assert np.abs(samples).max() > 0


def test_resample_lengths():
    tone = torch.from_numpy(make_tone(1.0, 8000))
    assert len(load_audio(tone, 16000, source_rate=8000)) == 16000
    assert resample(tone, 8000, 8000) is tone
    assert resample(tone[None], 8000, 22050).shape == (1, 22050)
    with pytest.raises(ValueError, match="orig_rate must be a positive integer"):
        resample(tone, 0, 16000)


def test_invalid_arguments_are_value_errors():
    tone = make_tone(0.1)
    with pytest.raises(ValueError, match="sample_rate must be an integer in"):
        load_audio(tone, sample_rate=100)
    with pytest.raises(ValueError, match="offset must be"):
        load_audio(tone, offset=-1)
    with pytest.raises(ValueError, match="duration must be"):
        load_audio(tone, duration=0)
    with pytest.raises(TypeError, match="unsupported source list"):
        load_audio([0.0, 1.0])


# --- segments --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("relative", "tolerance"),
    [
        ("librivox/sense_and_sensibility_01_austen_64kb-0880.wav", 0.0),
        ("librispeech/1272-128104-0001.flac", 0.0),
        ("misc/jfk.flac", 0.0),
        # Opus decoding after a seek differs from a continuous decode by decoder warm-up (~3e-5).
        ("fleurs/fleurs-en-000.ogg", 1e-3),
    ],
)
def test_segment_equals_slice_of_full_load(real, relative, tolerance):
    path = real / relative
    rate = sf.info(path).samplerate
    full = load_audio(path, rate)
    segment = load_audio(path, rate, offset=0.5, duration=1.25)
    start = round(0.5 * rate)
    torch.testing.assert_close(segment, full[start : start + round(1.25 * rate)], rtol=0, atol=tolerance)
    tail = load_audio(path, rate, offset=1.0, duration=1000.0)  # past the end: cut short
    torch.testing.assert_close(tail, full[rate:], rtol=0, atol=tolerance)
    with pytest.raises(AudioError, match=r"offset 999 s is beyond the end of the audio"):
        load_audio(path, offset=999.0)


def test_array_segment():
    tone = make_tone(1.0)
    torch.testing.assert_close(load_audio(tone, offset=0.25, duration=0.5), torch.from_numpy(tone[4000:12000]))
    with pytest.raises(AudioError, match="<array>: offset 2 s is beyond the end"):
        load_audio(tone, offset=2.0)


# --- broken input ----------------------------------------------------------------------------


def test_missing_empty_and_directory(tmp_path):
    missing = tmp_path / "nope.wav"
    with pytest.raises(AudioError, match=f"{missing}: audio file not found"):
        load_audio(missing)
    with pytest.raises(AudioError, match="not found"):
        audio_duration(str(missing))
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match=f"{empty}: the file is empty"):
        load_audio(empty)
    with pytest.raises(AudioError, match="is a directory"):
        load_audio(tmp_path)
    with pytest.raises(AudioError, match=r"<bytes>: no data \(0 bytes\)"):
        load_audio(b"")
    with pytest.raises(AudioError, match=r"<file object>: no data \(0 bytes\)"):
        load_audio(io.BytesIO())
    with pytest.raises(AudioError, match="<array>: contains no audio samples"):
        load_audio(np.zeros(0, dtype=np.float32))
    with pytest.raises(AudioError, match="<array>: contains no audio samples"):
        load_audio(torch.zeros(2, 0))


def test_non_finite_samples(tmp_path):
    tone = make_tone(0.1)
    tone[[3, 7]] = np.nan
    with pytest.raises(AudioError, match=r"<array>: contains 2 non-finite samples \(NaN or inf\)"):
        load_audio(tone)
    tone[[3, 7]] = np.inf
    path = tmp_path / "inf.wav"
    sf.write(path, tone, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=f"{path}: contains 2 non-finite samples"):
        load_audio(path)


def test_truncated_wav(librivox_wav, tmp_path):
    data = librivox_wav.read_bytes()
    half = tmp_path / "half.wav"
    half.write_bytes(data[: len(data) // 2])
    # libsndfile clamps the data chunk to the file: the intact first half loads.
    wave = load_audio(half)
    torch.testing.assert_close(wave, load_audio(librivox_wav)[: len(wave)], rtol=0, atol=0)
    assert abs(len(wave) - (len(data) // 2 - 44) // 2) <= 1
    assert audio_duration(half) == pytest.approx(len(wave) / 16000)
    in_header = tmp_path / "header.wav"
    in_header.write_bytes(data[:30])
    with pytest.raises(AudioError, match=f"{in_header}: corrupt WAV header: chunk 'fmt ' .* claims 16 bytes"):
        load_audio(in_header)


def test_truncated_flac_and_opus(real, tmp_path):
    flac = (real / "librispeech" / "1272-128104-0001.flac").read_bytes()
    cut_flac = tmp_path / "cut.flac"
    cut_flac.write_bytes(flac[: len(flac) // 2])
    # The FLAC header promises 77040 frames; the decoder loses sync where the data stops.
    with pytest.raises(AudioError, match=f"{cut_flac}: decoding failed .*truncated or corrupt"):
        load_audio(cut_flac)
    with pytest.raises(AudioError, match="<bytes>: "):
        load_audio(flac[:100])
    opus = (real / "fleurs" / "fleurs-en-000.ogg").read_bytes()
    # A cut Ogg stream ends at its last complete page, so the intact part loads.
    wave = load_audio(opus[: len(opus) // 2])
    assert 0 < len(wave) < 168960 and torch.isfinite(wave).all()
    with pytest.raises(AudioError, match="<bytes>: "):
        load_audio(opus[:30])


# --- formats through the fallback decoders -----------------------------------------------------


def test_mp3(tmp_path):
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile cannot write mp3 (needs libsndfile >= 1.1 built with lame/mpg123)")
    path = tmp_path / "tone.mp3"
    sf.write(path, make_tone(1.0), 16000, format="MP3")
    # libsndfile >= 1.1 decodes mp3 itself; librosa/audioread is only needed with older builds.
    assert audio_duration(path) == pytest.approx(1.0, abs=0.05)
    wave = load_audio(path, 8000)
    assert abs(len(wave) - 8000) <= 400 and 0.1 < wave.abs().max() < 1.0
    assert len(load_audio(path.read_bytes(), 8000)) == len(wave)


def test_m4a_without_decoder_is_a_clear_error(tmp_path):
    # An mp4 header libsndfile does not know: the audioread fallback runs and fails (no ffmpeg
    # here, or ffmpeg rejects the garbage), and the message carries both decoders' reasons.
    path = tmp_path / "clip.m4a"
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))
    with pytest.raises(AudioError, match=f"{path}: cannot decode audio \\(soundfile: .*; audioread: .*\\)"):
        load_audio(path)
    with pytest.raises(AudioError, match="cannot decode audio"):
        audio_duration(path)
    with pytest.raises(AudioError, match="<bytes>: cannot decode audio"):
        load_audio(path.read_bytes())


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed: audioread cannot decode m4a")
def test_m4a_with_ffmpeg(tmp_path):
    wav, m4a = tmp_path / "tone.wav", tmp_path / "tone.m4a"
    sf.write(wav, make_tone(1.0), 16000)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(wav), str(m4a)], check=True)
    assert audio_duration(m4a) == pytest.approx(1.0, abs=0.1)
    assert abs(len(load_audio(m4a)) - 16000) < 2000


def test_librosa_fallback_reads_segments_channels_last(real):
    # The fallback decoder on a file soundfile also reads, so its output can be checked exactly.
    path = real / "misc" / "jfk.flac"
    frames, rate = _librosa_load(path, str(path), "unused", offset=1.0, duration=0.5)
    stereo, _ = sf.read(path, dtype="float32", start=44100, frames=22050)
    assert rate == 44100
    np.testing.assert_allclose(frames, stereo, atol=1e-6)
