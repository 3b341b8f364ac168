"""Features: log-mel against librosa, Kaldi fbank, batching, CMVN, SpecAugment, speed perturbation."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from asr.features import (
    CMVNStats,
    FeatureConfig,
    FeatureExtractor,
    GlobalCMVN,
    SpecAugment,
    SpecAugmentConfig,
    speed_perturb,
)
from tests.conftest import make_tone


@pytest.fixture(scope="module")
def speech(shared_dir) -> np.ndarray:
    wave, rate = sf.read(shared_dir / "data/real/librispeech/1272-128104-0000.flac", dtype="float32")
    assert rate == 16000
    return wave


def test_logmel_matches_librosa(speech):
    config = FeatureConfig()
    ours = FeatureExtractor(config).extract(torch.from_numpy(speech)).numpy()
    mel = librosa.feature.melspectrogram(
        y=speech, sr=16000, n_fft=512, hop_length=160, win_length=400, window="hann",
        center=True, pad_mode="reflect", power=2.0, n_mels=80,
    )
    reference = np.log(np.maximum(mel, 1e-10)).T
    assert ours.shape == reference.shape
    # Tolerance: float32 STFT vs librosa's float32/64 mix; compare where there is real energy.
    audible = reference > np.log(1e-6)
    assert np.abs(ours - reference)[audible].max() < 2e-3
    assert np.abs(ours - reference).mean() < 1e-3


@pytest.mark.parametrize("kind", ["logmel", "fbank"])
def test_batch_equals_single(kind):
    extractor = FeatureExtractor(FeatureConfig(kind=kind))
    waves = [torch.from_numpy(make_tone(s, freq=f, seed=i)) for i, (s, f) in enumerate([(1.0, 300), (0.37, 900)])]
    batch = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    lengths = torch.tensor([w.numel() for w in waves])
    feats, feat_lengths = extractor(batch, lengths)
    for i, wave in enumerate(waves):
        single = extractor.extract(wave)
        assert feat_lengths[i] == single.size(0) == extractor.num_frames(wave.numel())
        torch.testing.assert_close(feats[i, : feat_lengths[i]], single, atol=1e-4, rtol=1e-4)
        assert torch.all(feats[i, feat_lengths[i]:] == 0)


def test_fbank_is_kaldi_compatible(speech):
    wave = torch.from_numpy(speech)
    ours = FeatureExtractor(FeatureConfig(kind="fbank")).extract(wave)
    import torchaudio

    reference = torchaudio.compliance.kaldi.fbank(wave.unsqueeze(0) * 32768, num_mel_bins=80, dither=0.0,
                                                  energy_floor=0.0, low_freq=0.0)
    torch.testing.assert_close(ours, reference)
    assert ours.size(0) == 1 + (wave.numel() - 400) // 160


def test_config_validation_and_round_trip():
    with pytest.raises(ValueError, match="kind"):
        FeatureConfig(kind="mfcc")
    with pytest.raises(ValueError, match="n_fft"):
        FeatureConfig(win_ms=50, n_fft=512)
    with pytest.raises(ValueError, match="unknown key .n_mel."):
        FeatureConfig.from_dict({"n_mel": 40})
    config = FeatureConfig(n_mels=40, sample_rate=8000, n_fft=256)
    assert FeatureConfig.from_dict(config.to_dict()) == config
    assert config.win_length == 200 and config.hop_length == 80


def test_too_short_audio_is_a_clear_error():
    with pytest.raises(ValueError, match="too short"):
        FeatureExtractor(FeatureConfig(kind="fbank")).extract(torch.zeros(100))


def test_cmvn_normalises_and_round_trips(tmp_path):
    extractor = FeatureExtractor()
    stats = CMVNStats(80)
    utterances = [extractor.extract(torch.from_numpy(make_tone(0.5, freq=200 + 100 * i, seed=i))) for i in range(4)]
    for feats in utterances:
        stats.update(feats)
    stats.save(tmp_path / "cmvn.json")
    loaded = CMVNStats.load(tmp_path / "cmvn.json")
    cmvn = GlobalCMVN.from_stats(loaded)
    normalised = cmvn(torch.cat(utterances).unsqueeze(0))[0]
    torch.testing.assert_close(normalised.mean(0), torch.zeros(80), atol=1e-3, rtol=0)
    torch.testing.assert_close(normalised.std(0, unbiased=False), torch.ones(80), atol=1e-3, rtol=0)
    # The statistics live in the model's state dict.
    assert set(cmvn.state_dict()) == {"mean", "istd"}
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        CMVNStats.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="empty"):
        _ = CMVNStats(3).mean


def test_specaugment_masks_inside_lengths_only_in_training():
    torch.manual_seed(0)
    augment = SpecAugment(SpecAugmentConfig(freq_masks=2, freq_width=10, time_masks=2, time_width_ratio=0.2))
    x = torch.randn(3, 100, 40) + 10.0  # no natural zeros
    lengths = torch.tensor([100, 60, 30])
    augment.eval()
    assert torch.equal(augment(x, lengths), x)
    augment.train()
    y = augment(x, lengths)
    masked = y == 0
    assert masked.any()
    for i, n in enumerate(lengths.tolist()):
        freq_masked = masked[i, :n].all(dim=0)
        assert freq_masked.sum() <= 20
        time_masked = masked[i].all(dim=1)
        assert time_masked.sum() <= 2 * int(n * 0.2)
        assert not time_masked[n:].any()  # padding is left alone


def test_time_warp_keeps_shape_and_padding():
    torch.manual_seed(1)
    augment = SpecAugment(SpecAugmentConfig(freq_masks=0, time_masks=0, time_warp=5)).train()
    x = torch.randn(2, 50, 8)
    x[1, 40:] = 0
    y = augment(x, torch.tensor([50, 40]))
    assert y.shape == x.shape
    assert torch.all(y[1, 40:] == 0)
    assert not torch.equal(y[0], x[0])


def test_speed_perturbation_changes_duration_and_pitch():
    wave = torch.from_numpy(make_tone(1.0, freq=500))
    faster = speed_perturb(wave, 16000, 1.1)
    slower = speed_perturb(wave, 16000, 0.9)
    assert abs(faster.numel() - 16000 / 1.1) <= 2
    assert abs(slower.numel() - 16000 / 0.9) <= 2
    assert speed_perturb(wave, 16000, 1.0) is wave
    spectrum = torch.fft.rfft(faster).abs()
    peak_hz = spectrum.argmax().item() * 16000 / faster.numel()
    assert abs(peak_hz - 550) < 5
    with pytest.raises(ValueError, match="speed factor"):
        speed_perturb(wave, 16000, 0.0)


def test_dither_only_in_training():
    extractor = FeatureExtractor(FeatureConfig(dither=1.0))
    wave = torch.from_numpy(make_tone(0.3))
    extractor.eval()
    assert torch.equal(extractor.extract(wave), extractor.extract(wave))
    extractor.train()
    assert not torch.equal(extractor.extract(wave), extractor.extract(wave))
