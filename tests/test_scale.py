"""Scaling knobs of the corpus recipes: the effective batch across GPU counts, features on the training
device, and the score metric (CER for AISHELL)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from asr.data import SpeechDataset, collate
from asr.data.shards import write_shards
from asr.data.stream import ShardDataset
from asr.features import FeatureConfig, FeatureExtractor
from asr.recipe.config import ExperimentConfig, RecipeConfig, ScoreConfig
from asr.scoring import score_experiment
from asr.train import TrainerConfig
from tests.train_helper import FEATURES, build_trainer, digit_utterances

# --- the effective batch on any number of GPUs -----------------------------------------------------


def test_accum_grad_scales_with_the_world_size():
    config = TrainerConfig(accum_grad=8, reference_world_size=1)  # e.g. fairseq's update_freq 8 on one GPU
    assert [config.accum_grad_for(n) for n in (1, 2, 4, 8)] == [8, 4, 2, 1]
    assert all(config.accum_grad_for(n) * n == 8 for n in (1, 2, 4, 8))  # batches per update stay 8
    assert TrainerConfig(accum_grad=2, reference_world_size=4).accum_grad_for(8) == 1
    assert TrainerConfig(accum_grad=3).accum_grad_for(8) == 3  # reference_world_size 0: as given
    with pytest.raises(ValueError, match=r"accum_grad=8 x reference_world_size=1 = 8 batches per update cannot be "
                                         r"split evenly over 3 processes; run on one of \[1, 2, 4, 8\] processes"):
        config.accum_grad_for(3)
    with pytest.raises(ValueError, match="TrainerConfig.reference_world_size: expected an integer >= 0"):
        TrainerConfig(reference_world_size=-1)
    assert TrainerConfig.from_dict(config.to_dict()) == config


def test_trainer_accumulates_for_the_reference_world_size(shared_dir, tmp_path):
    # One process standing in for two: twice the batches per update, half the updates per epoch.
    scaled = build_trainer(tmp_path / "scaled", shared_dir, {"accum_grad": 2, "reference_world_size": 2})
    assert (scaled.accum_grad, scaled.updates_per_epoch) == (4, math.ceil(len(scaled.train_sampler) / 4))


# --- features on the training device ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["logmel", "fbank"])
def test_waveform_batches_get_the_worker_side_features(shared_dir, kind):
    utterances = digit_utterances(shared_dir, ("george",), range(0, 1))[:6]
    features = FeatureExtractor(FeatureConfig(kind=kind, sample_rate=8000, n_mels=40, n_fft=256))
    on_worker = SpeechDataset(utterances, features, speed_factors=(0.9, 1.1), seed=1)
    waveforms = SpeechDataset(utterances, features, speed_factors=(0.9, 1.1), seed=1, waveforms=True)
    expected = collate([on_worker[i] for i in range(len(utterances))])
    batch = collate([waveforms[i] for i in range(len(utterances))])
    assert batch.feats is None and batch.waves.shape[0] == 6 and batch.wave_lengths.dtype == torch.long
    computed = batch.with_features(features, "cpu")
    assert computed.waves is None and computed.with_features(features) is computed
    assert torch.equal(computed.feat_lengths, expected.feat_lengths)
    torch.testing.assert_close(computed.feats, expected.feats, atol=1e-4, rtol=1e-5)


def test_shard_stream_of_waveforms(shared_dir, tmp_path):
    utterances = digit_utterances(shared_dir, ("george",), range(0, 1))
    index = write_shards(utterances, tmp_path / "shards", utts_per_shard=5)
    features = FeatureExtractor(FEATURES)
    streams = [ShardDataset(index, features, max_seconds=2.0, waveforms=waves) for waves in (False, True)]
    for plain, waves in zip(*streams):
        assert waves.feats is None and plain.ids == waves.ids
        torch.testing.assert_close(waves.with_features(features).feats, plain.feats, atol=1e-4, rtol=1e-5)


def test_training_with_features_on_the_device_matches_worker_features(shared_dir, tmp_path):
    options = {"max_epochs": 1, "max_steps": 2, "valid_decode_utts": 0, "plot_attention": False}

    def waveforms(dataset: SpeechDataset) -> SpeechDataset:
        return SpeechDataset(dataset.utterances, dataset.features, dataset.tokenizer,
                             speed_factors=dataset.speed_factors, seed=dataset.seed, waveforms=True)

    reference = build_trainer(tmp_path / "workers", shared_dir, options)
    on_device = build_trainer(tmp_path / "device", shared_dir, options, wrap_train=waveforms)
    assert reference.device_features is None and on_device.device_features is not None
    assert on_device.device_features is not on_device.train_dataset.features  # a copy, on the device
    reference.valid_dataset = on_device.valid_dataset = None  # (validation is not what this compares)
    reference.fit()
    on_device.fit()
    losses = [[r["loss"] for r in t.history if r["event"] == "train"] for t in (reference, on_device)]
    assert len(losses[0]) == 2 and losses[1] == pytest.approx(losses[0], rel=1e-4)
    audio = [[r["audio_per_sec"] > 0 for r in t.history if r["event"] == "train"] for t in (reference, on_device)]
    assert all(audio[0]) and all(audio[1])
    for name, value in reference.model.state_dict().items():
        torch.testing.assert_close(on_device.model.state_dict()[name], value, atol=1e-4, rtol=1e-3, msg=name)


# --- the score metric -------------------------------------------------------------------------------


def test_cer_metric_scores_characters(tmp_path):
    decode = tmp_path / "decode" / "test"
    decode.mkdir(parents=True)
    (decode / "ref.txt").write_text("u1 今天天气很好\nu2 我们去公园\n", encoding="utf-8")
    (decode / "hyp.txt").write_text("u1 今天天汽很好\nu2 我们去公\n", encoding="utf-8")
    table = score_experiment(tmp_path, {"test": decode}, metric="cer")
    results = json.loads((decode / "results.json").read_text(encoding="utf-8"))
    assert results["metric"] == "cer" and results["cer"] == pytest.approx(2 / 11)
    assert (results["char_substitutions"], results["char_deletions"], results["char_insertions"]) == (1, 1, 0)
    assert results["wer"] == 1.0  # no spaces: every sentence is one "word"
    assert "| test set | utts | CER % | WER % |" in table and "| test | 2 | 18.18 | 100.00 | 1 | 1 | 0 |" in table

    recipe = RecipeConfig(name="x")
    assert ExperimentConfig(recipe=recipe).score_metric == "wer"
    assert ExperimentConfig(recipe=recipe, task="st").score_metric == "bleu"
    assert ExperimentConfig(recipe=recipe, score=ScoreConfig(metric="cer")).score_metric == "cer"
    with pytest.raises(ValueError, match="score.metric='ter': expected one of"):
        ScoreConfig(metric="ter")
