"""Tar shards: writing from a manifest, reading back through ranks x workers, bad shards, streaming training."""

from __future__ import annotations

import io
import json
import logging
import tarfile
from collections import Counter
from pathlib import Path

import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from asr.audio import audio_duration, load_audio
from asr.cli.shard import main as shard_main
from asr.data import Batch, SpeechDataset, Utterance, write_manifest
from asr.data.shards import INDEX_NAME, ShardError, ShardIndex, iter_waveforms, read_shard, shard_key, write_shards
from asr.data.stream import ShardDataset
from asr.features import FeatureExtractor
from asr.model import DecoderConfig, EncoderConfig, ModelConfig, build_model
from asr.recipe import stages
from asr.recipe.config import DataConfig, ExperimentConfig, RecipeConfig
from asr.text import train_tokenizer
from asr.train import OptimConfig, Trainer, TrainerConfig
from tests.train_helper import FEATURES, digit_utterances

JFK_SEGMENTS = ((0.3, 1.2), (2.0, 1.5), (4.0, 0.8))  # (offset, duration) in jfk.flac (44.1 kHz stereo 24-bit)


@pytest.fixture(scope="module")
def utterances(shared_dir) -> list[Utterance]:
    """40 FSDD digits (whole 8 kHz wav files), 3 segments of a FLAC recording, 1 LibriSpeech flac."""
    utts = digit_utterances(shared_dir, ("george", "jackson"), range(0, 2))
    jfk = shared_dir / "data" / "real" / "misc" / "jfk.flac"
    utts += [Utterance(id=f"jfk.{i}/seg", audio=str(jfk), offset=offset, duration=duration, text="ask not",
                       speaker="jfk", target_text="frag nicht")
             for i, (offset, duration) in enumerate(JFK_SEGMENTS)]
    flac = shared_dir / "data" / "real" / "librispeech" / "1272-128104-0000.flac"
    utts.append(Utterance(id=flac.stem, audio=str(flac), duration=audio_duration(flac), text="mister quilter"))
    return utts


@pytest.fixture(scope="module")
def index(utterances, tmp_path_factory) -> ShardIndex:
    return write_shards(utterances, tmp_path_factory.mktemp("shards") / "train", utts_per_shard=4)


def _stream(index: ShardIndex, rank: int, world_size: int, workers: int, epoch: int, **options) -> list[Batch]:
    dataset = ShardDataset(index, FeatureExtractor(FEATURES), max_seconds=3.0, shuffle_buffer=6, sort_buffer=8,
                           seed=3, rank=rank, world_size=world_size, num_workers=workers, **options)
    dataset.set_epoch(epoch)
    batches = list(DataLoader(dataset, batch_size=None, num_workers=workers))
    assert len(batches) == len(dataset) or not dataset.even_batches  # (a damaged shard gives fewer)
    return batches


def test_written_shards_hold_original_bytes_cut_segments_and_an_index(utterances, index):
    assert (index.num_utts, len(index.shards), index.skipped) == (44, 11, ())
    assert index.total_seconds == pytest.approx(sum(u.duration for u in utterances), abs=1e-3)
    assert index.num_translated == 3
    assert not list(index.path.parent.glob(".*"))  # no temporary files left behind
    stored = json.loads(index.path.read_text())
    assert stored["num_utts"] == 44 and [s["path"] for s in stored["shards"]][:2] == ["shard-000000.tar",
                                                                                      "shard-000001.tar"]
    by_id = {u.id: u for u in utterances}
    samples = [s for shard in index.shards for s in read_shard(shard.path, expected=shard.num_utts)]
    assert sorted(s.utterance.id for s in samples) == sorted(by_id)
    assert [s.utterance.duration for s in samples] == [d for shard in index.shards for d in shard.durations]
    with tarfile.open(index.shards[0].path) as tar:  # WebDataset layout: <key>.json then <key>.<audio>
        names = tar.getnames()
    assert [n.split(".", 1)[1] for n in names[:2]] == ["json", "wav"]
    assert names[0].split(".")[0] == names[1].split(".")[0]
    for sample in samples:
        utt = by_id[sample.utterance.id]
        assert sample.key == shard_key(utt.id) and "." not in sample.key and "/" not in sample.key
        assert (sample.utterance.text, sample.utterance.speaker) == (utt.text, utt.speaker)
        if utt.offset == 0:  # whole wav/flac files: the file's own bytes
            assert sample.audio == Path(utt.audio).read_bytes() and sample.audio_ext == Path(utt.audio).suffix[1:]
        else:  # a segment: cut, stored as 24-bit FLAC at the recording's rate
            info = sf.info(io.BytesIO(sample.audio))
            assert (sample.audio_ext, info.samplerate, info.subtype, info.channels) == ("flac", 44100, "PCM_24", 1)
            assert info.frames == pytest.approx(utt.duration * 44100, abs=1)
            expected = load_audio(utt.audio, 44100, offset=utt.offset, duration=utt.duration)
            torch.testing.assert_close(load_audio(sample.audio, 44100), expected, atol=2.0**-22, rtol=0)
            assert sample.utterance.target_text == "frag nicht"
    # The first utterances of the (shuffled) shards, for CMVN statistics.
    first = [u.id for u, _ in iter_waveforms(index, 8000, limit=5)]
    assert first == [s.utterance.id for s in samples[:5]]


def test_two_ranks_two_workers_see_every_utterance_exactly_once_per_epoch(utterances, index):
    ids = sorted(u.id for u in utterances)
    orders = []
    for epoch in (0, 1):
        seen = Counter()
        order = []
        for rank in (0, 1):
            for batch in _stream(index, rank, 2, 2, epoch, even_batches=False):
                assert isinstance(batch, Batch) and batch.feats.shape[2] == FEATURES.n_mels
                longest = float(batch.feat_lengths.max()) * FEATURES.hop_ms / 1000
                assert len(batch.ids) == 1 or len(batch.ids) * longest <= 3.0 + 0.05  # the duration bound
                seen.update(batch.ids)
                order += batch.ids
        assert sorted(seen) == ids and set(seen.values()) == {1}, epoch
        orders.append(order)
    assert orders[0] != orders[1]  # shards and utterances are reshuffled every epoch

    # Even batches (for DDP): the same count on both ranks, every utterance at least once.
    even = [_stream(index, rank, 2, 2, 0) for rank in (0, 1)]
    assert len(even[0]) == len(even[1])
    assert sorted(set(i for rank in even for b in rank for i in b.ids)) == ids

    # The streamed features are the map-style dataset's (whole files; worker FFTs may differ in the last bits).
    reference = SpeechDataset([u for u in utterances if u.offset == 0], FeatureExtractor(FEATURES))
    position = {u.id: i for i, u in enumerate(reference.utterances)}
    for batch in even[0][:3]:
        for row, utt_id in enumerate(batch.ids):
            if utt_id in position:
                feats = reference[position[utt_id]]["feats"]
                torch.testing.assert_close(batch.feats[row, : batch.feat_lengths[row]], feats, atol=5e-3, rtol=1e-4)


def test_resume_skips_the_consumed_batches_of_the_epoch(index):
    full = [b.ids for b in _stream(index, 0, 2, 2, 1)]
    dataset = ShardDataset(index, FeatureExtractor(FEATURES), max_seconds=3.0, shuffle_buffer=6, sort_buffer=8, seed=3,
                           rank=0, world_size=2, num_workers=2)
    for done in (3, 4, len(full) - 1):
        dataset.load_state_dict({"epoch": 1, "batches_done": done})
        assert [b.ids for b in DataLoader(dataset, batch_size=None, num_workers=2)] == full[done:], done
    dataset.set_epoch(1)  # a new epoch (or set_epoch) starts from the first batch again
    assert [b.ids for b in DataLoader(dataset, batch_size=None, num_workers=2)] == full
    with pytest.raises(ValueError, match="batches_done=99 is outside"):
        dataset.load_state_dict({"epoch": 1, "batches_done": 99})


def _corrupt_member(path: Path, name: str) -> None:
    with tarfile.open(path) as tar:
        offset = tar.getmember(name).offset_data
    data = bytearray(path.read_bytes())
    data[offset : offset + 16] = b"\x00garbage header"[:16].ljust(16, b"!")  # same size: later members intact
    path.write_bytes(bytes(data))


def test_corrupt_and_truncated_shards_are_reported_and_skipped(utterances, tmp_path, caplog):
    index = write_shards(utterances[:16], tmp_path / "shards", utts_per_shard=4, shuffle_seed=None)
    with tarfile.open(index.shards[0].path) as tar:
        bad_name = tar.getnames()[3]  # the second utterance's audio
    bad_key = bad_name.split(".")[0]
    _corrupt_member(index.shards[0].path, bad_name)
    truncated = index.shards[1].path
    with tarfile.open(truncated) as tar:
        cut = tar.getmember(tar.getnames()[5]).offset_data + 100  # inside the third utterance's audio
        cut_key = tar.getnames()[5].split(".")[0]
    truncated.write_bytes(truncated.read_bytes()[:cut])

    with caplog.at_level(logging.WARNING):
        batches = _stream(index, 0, 1, 0, 0, even_batches=False)
    seen = [i for b in batches for i in b.ids]
    lost = {utterances[1].id, *(u.id for u in utterances[6:8])}  # the corrupt one, the truncated shard's rest
    assert sorted(seen) == sorted(u.id for u in utterances[:16] if u.id not in lost)
    messages = "\n".join(r.getMessage() for r in caplog.records)
    assert f"{index.shards[0].path}: key {bad_key!r}" in messages and "cannot decode the audio" in messages
    assert f"{truncated}: truncated or corrupt archive while reading key {cut_key!r}" in messages

    # Members that do not pair up, and malformed metadata, are reported by key too.
    handmade = tmp_path / "handmade.tar"
    with tarfile.open(handmade, "w") as tar:
        for name, data in (("a.json", b"{not json"), ("a.wav", b"RIFF"), ("b.wav", b"RIFF"),
                           ("c.json", json.dumps({"id": "c", "text": "x", "duration": 1.0}).encode()),
                           ("c.flac", b"fLaC")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert [s.key for s in read_shard(handmade, expected=3)] == ["c"]
    messages = "\n".join(r.getMessage() for r in caplog.records)
    assert "key 'a': malformed metadata" in messages and "key 'b' has members ['wav']" in messages
    assert "ended after 1 of 3 utterances" in messages


def test_bad_arguments_and_directories_are_clear_errors(utterances, index, tmp_path):
    with pytest.raises(ShardError, match=r"11 shard\(s\) cannot feed world_size 4 x 4 DataLoader worker"):
        ShardDataset(index, FeatureExtractor(FEATURES), world_size=4, num_workers=4)
    dataset = ShardDataset(index, FeatureExtractor(FEATURES), num_workers=2)
    with pytest.raises(ValueError, match="built for num_workers=2 but runs in a DataLoader with 0"):
        next(iter(DataLoader(dataset, batch_size=None)))
    with pytest.raises(ShardError, match="no shard index"):
        ShardIndex.load(tmp_path)
    out = tmp_path / "again"
    write_shards(utterances[:6], out, utts_per_shard=2)
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        write_shards(utterances[:6], out, utts_per_shard=2)
    again = write_shards(utterances[:6], out, utts_per_shard=3, overwrite=True)
    assert sorted(p.name for p in out.glob("shard-*.tar")) == [s.path.name for s in again.shards]  # stale ones gone
    (out / again.shards[1].path.name).unlink()
    with pytest.raises(ShardError, match="1 shard file\\(s\\) missing"):
        ShardIndex.load(out / INDEX_NAME)


def test_asr_shard_cli_skips_unreadable_audio(utterances, tmp_path, capsys):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    manifest = tmp_path / "train.jsonl"
    write_manifest(manifest, [*utterances[:5], Utterance(id="broken", audio=str(broken), duration=1.0, text="x")])
    out = tmp_path / "out"
    assert shard_main([str(manifest), str(out), "--utts-per-shard", "2", "--quiet"]) == 0
    assert "5 utterances" in capsys.readouterr().out
    index = ShardIndex.load(out)
    assert (index.num_utts, len(index.shards), index.skipped) == (5, 3, ("broken",))
    assert shard_main([str(manifest), str(out), "--quiet"]) == 2
    assert "pass overwrite=True (asr-shard --overwrite)" in capsys.readouterr().err


# --- training from shards ------------------------------------------------------------------------


def _streaming_trainer(index: ShardIndex, exp_dir: Path, max_steps: int, tokenizer) -> Trainer:
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=tokenizer.vocab_size, input_dim=FEATURES.n_mels,
                                    encoder=EncoderConfig(d_model=32, n_heads=2, n_layers=1, ffn_dim=64),
                                    decoder=DecoderConfig(d_model=32, n_heads=2, n_layers=1, ffn_dim=64)))
    dataset = ShardDataset(index, FeatureExtractor(FEATURES), tokenizer, max_seconds=2.0, shuffle_buffer=4,
                           sort_buffer=8, speed_factors=(0.9, 1.0, 1.1), num_workers=2)
    config = TrainerConfig(max_epochs=5, max_steps=max_steps, num_workers=2, progress_bar=False, log_every_steps=1,
                           plot_attention=False, valid_decode_utts=0)
    return Trainer(model, dataset, None, None, config, OptimConfig(lr=2e-3, warmup_steps=5), exp_dir,
                   tokenizer=tokenizer)


def test_streaming_training_resumes_exactly_mid_epoch(utterances, tmp_path):
    digits = [u for u in utterances if u.id[0].isdigit() and u.id[1] == "_"][:24]
    index = write_shards(digits, tmp_path / "shards", utts_per_shard=3)
    tokenizer = train_tokenizer([u.text for u in digits], kind="char")
    reference = _streaming_trainer(index, tmp_path / "reference", 4, tokenizer)
    assert reference.updates_per_epoch > 4  # the resume point (step 2) and the end are inside the first epoch
    reference.fit()
    _streaming_trainer(index, tmp_path / "resumed", 2, tokenizer).fit()
    resumed = _streaming_trainer(index, tmp_path / "resumed", 4, tokenizer)
    result = resumed.fit()
    assert result.resumed_from_step == 2 and result.step == 4
    for name, value in reference.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, rtol=0, atol=0, msg=name)
    losses = [r["loss"] for r in reference.history if r["event"] == "train"]
    assert [r["loss"] for r in resumed.history if r["event"] == "train"] == losses


def test_recipe_stage_streams_from_data_shards(utterances, index, tmp_path):
    config = ExperimentConfig(recipe=RecipeConfig(name="shards"), exp_dir=str(tmp_path / "exp"),
                              data=DataConfig(shards=str(index.path), features=FEATURES, cmvn_utts=6,
                                              features_on_device=True, max_seconds=5.0),
                              trainer=TrainerConfig(num_workers=1))
    tokenizer = train_tokenizer([u.text for u in utterances], kind="char", extra_tokens=("<asr>",))
    dataset, sampler = stages._training_data(config, [], FeatureExtractor(FEATURES), tokenizer)
    assert isinstance(dataset, ShardDataset) and sampler is None and dataset.waveforms and dataset.num_workers == 1
    assert dataset.max_seconds == 5.0 and dataset.shuffle_buffer == 1000
    stats = stages._cmvn_stats(config, [], FeatureExtractor(FEATURES))
    assert (config.model_dir / "cmvn.json").is_file()
    expected = sum(FeatureExtractor(FEATURES).num_frames(w.numel()) for _, w in iter_waveforms(index, 8000, limit=6))
    assert stats.count == expected
