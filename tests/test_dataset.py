"""SpeechDataset, collate and the DataLoader on real audio files and a real character tokenizer."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.audio import AudioError, audio_duration, load_audio
from asr.data import (
    IGNORE_ID,
    Batch,
    DynamicBatchSampler,
    SpeechDataset,
    Utterance,
    collate,
    make_dataloader,
)
from asr.features import FeatureConfig, FeatureExtractor
from asr.text import train_tokenizer
from tests.conftest import make_tone

TEXTS = ["hello world", "good morning", "yes", "a quick brown fox", "guten morgen", "hallo welt"]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, kind="char", extra_tokens=("<asr>", "<st>", "<de>"))


@pytest.fixture(scope="module")
def features():
    return FeatureExtractor(FeatureConfig())


@pytest.fixture(scope="module")
def utterances(tmp_path_factory) -> list[Utterance]:
    """Tones and noise of different lengths; one at 8 kHz; one a segment of a longer recording."""
    folder = tmp_path_factory.mktemp("audio")
    specs = [("u0", 0.8, 16000), ("u1", 1.3, 16000), ("u2", 0.5, 8000), ("u3", 2.0, 16000), ("u4", 1.1, 16000)]
    utts = []
    for i, (uid, seconds, rate) in enumerate(specs):
        path = folder / f"{uid}.wav"
        wave = make_tone(seconds, rate, freq=200.0 + 100 * i, seed=i)
        if i % 2:
            wave = wave + 0.1 * np.random.default_rng(i).standard_normal(wave.shape).astype(np.float32)
        sf.write(path, wave, rate)
        utts.append(Utterance(id=uid, audio=str(path), duration=audio_duration(path), text=TEXTS[i]))
    long = folder / "long.flac"
    sf.write(long, make_tone(3.0, 16000, freq=330.0, seed=9), 16000)
    utts.append(Utterance(id="seg", audio=str(long), duration=1.0, offset=0.5, text=TEXTS[5]))
    return utts


def test_examples_and_batch_shapes_padding_and_lengths(utterances, features, tokenizer):
    dataset = SpeechDataset(utterances, features, tokenizer, prefix_tokens=("<asr>",))
    assert len(dataset) == len(utterances)
    examples = [dataset[i] for i in range(len(dataset))]
    for utt, example in zip(utterances, examples):
        samples = round(utt.duration * 16000)  # every file comes back at 16 kHz, 8 kHz included
        assert example["id"] == utt.id
        assert example["feats"].shape == (features.num_frames(samples), 80)
        assert example["feats"].dtype == torch.float32
        assert example["targets"].tolist() == tokenizer.encode(utt.text) == example["ctc_targets"].tolist()
        assert example["prefix"].tolist() == [tokenizer.token_to_id("<asr>")]

    batch = collate(examples)
    lengths = [e["feats"].shape[0] for e in examples]
    assert batch.ids == [u.id for u in utterances]
    assert batch.feats.shape == (len(examples), max(lengths), 80)
    assert batch.feat_lengths.tolist() == lengths
    n = max(len(e["targets"]) for e in examples)
    assert batch.targets.shape == batch.ctc_targets.shape == (len(examples), n)
    assert batch.prefix.shape == (len(examples), 1) and batch.prefix.dtype == torch.long
    for b, e in enumerate(examples):
        t, m = lengths[b], len(e["targets"])
        assert torch.equal(batch.feats[b, :t], e["feats"]) and not batch.feats[b, t:].any()
        assert batch.target_lengths[b] == batch.ctc_target_lengths[b] == m
        assert batch.targets[b, :m].tolist() == e["targets"].tolist()
        assert (batch.targets[b, m:] == IGNORE_ID).all() and (batch.ctc_targets[b, m:] == IGNORE_ID).all()
        assert tokenizer.decode(batch.targets[b, :m].tolist()) == utterances[b].text


def test_segment_reads_only_its_part_of_the_recording(utterances, features):
    seg = utterances[-1]
    example = SpeechDataset([seg], features)[0]
    whole = load_audio(seg.audio)
    expected = features.extract(whole[8000:24000])
    torch.testing.assert_close(example["feats"], expected)
    # Without a tokenizer the token tensors are empty, and still collate.
    assert example["targets"].numel() == example["ctc_targets"].numel() == example["prefix"].numel() == 0
    batch = collate([example, example])
    assert batch.targets.shape == (2, 0) and batch.target_lengths.tolist() == [0, 0]


def test_real_librispeech_utterance(shared_dir, features, tokenizer):
    folder = shared_dir / "data" / "real" / "librispeech"
    transcripts = dict(line.split(" ", 1) for line in (folder / "trans.txt").read_text().splitlines() if " " in line)
    path = folder / "1272-128104-0001.flac"
    utt = Utterance(id=path.stem, audio=str(path), duration=audio_duration(path), text=transcripts[path.stem])
    # Train the tokenizer on this transcript too, so no character is unknown.
    tok = train_tokenizer([*TEXTS, utt.text], kind="char")
    example = SpeechDataset([utt], features, tok)[0]
    assert example["feats"].shape == (features.num_frames(round(utt.duration * 16000)), 80)
    assert abs(example["feats"].shape[0] - 100 * utt.duration) <= 2
    assert tok.decode(example["targets"].tolist()) == "nor is mister quilter's manner less interesting than his matter"


def test_speech_translation_targets(utterances, features, tokenizer):
    st = [
        Utterance(id=u.id, audio=u.audio, duration=u.duration, offset=u.offset, text=u.text, target_text=t)
        for u, t in zip(utterances[:2], ["hallo welt", "guten morgen"])
    ]
    dataset = SpeechDataset(st, features, tokenizer, task="st", prefix_tokens=("<st>", "<de>"))
    batch = collate([dataset[0], dataset[1]])
    assert batch.targets[0, : batch.target_lengths[0]].tolist() == tokenizer.encode("hallo welt")
    assert batch.ctc_targets[1, : batch.ctc_target_lengths[1]].tolist() == tokenizer.encode(utterances[1].text)
    assert batch.prefix.tolist() == [[tokenizer.token_to_id("<st>"), tokenizer.token_to_id("<de>")]] * 2

    with pytest.raises(ValueError, match="task 'st' needs target_text, which 1 utterance\\(s\\) lack: 'u2'"):
        SpeechDataset([*st, utterances[2]], features, tokenizer, task="st")


def test_speed_perturbation_scales_frames_and_is_reproducible(utterances, features, tokenizer):
    utt = utterances[3]  # 2 s
    plain = SpeechDataset([utt], features, tokenizer)[0]["feats"].shape[0]
    for factor in (0.8, 1.25):
        frames = SpeechDataset([utt], features, tokenizer, speed_factors=(factor,))[0]["feats"].shape[0]
        assert abs(frames - plain / factor) <= 2

    a = SpeechDataset(utterances * 10, features, speed_factors=(0.9, 1.0, 1.1), seed=5)
    b = SpeechDataset(utterances * 10, features, speed_factors=(0.9, 1.0, 1.1), seed=5)
    a.set_epoch(1)
    b.set_epoch(1)
    epoch1 = [a.speed_factor(i) for i in range(len(a))]
    assert epoch1 == [b.speed_factor(i) for i in range(len(b))]
    assert set(epoch1) == {0.9, 1.0, 1.1}
    a.set_epoch(2)
    assert a.epoch == 2 and [a.speed_factor(i) for i in range(len(a))] != epoch1
    assert SpeechDataset(utterances, features).speed_factor(0) == 1.0


def test_dataloader_with_workers_gives_the_same_batches(utterances, features, tokenizer):
    def epochs(num_workers: int) -> list[Batch]:
        dataset = SpeechDataset(utterances, features, tokenizer, speed_factors=(0.9, 1.0, 1.1), seed=3)
        sampler = DynamicBatchSampler([u.duration for u in utterances], max_seconds=3.0, seed=3)
        loader = make_dataloader(dataset, sampler, num_workers=num_workers)
        batches = []
        for epoch in range(2):  # the second epoch checks that set_epoch reaches persistent workers
            sampler.set_epoch(epoch)
            dataset.set_epoch(epoch)
            batches.extend(loader)
        return batches

    serial, parallel = epochs(0), epochs(2)
    assert [b.ids for b in serial] == [b.ids for b in parallel]
    assert sorted(i for b in serial[: len(serial) // 2] for i in b.ids) == sorted(u.id for u in utterances)
    for s, p in zip(serial, parallel):
        # Worker processes run single-threaded FFTs, so the last bits may differ.
        torch.testing.assert_close(s.feats, p.feats, atol=5e-3, rtol=1e-4)
        assert torch.equal(s.feat_lengths, p.feat_lengths) and torch.equal(s.targets, p.targets)
    half = len(serial) // 2
    frames = {i: n for b in serial[:half] for i, n in zip(b.ids, b.feat_lengths.tolist())}
    frames2 = {i: n for b in serial[half:] for i, n in zip(b.ids, b.feat_lengths.tolist())}
    assert frames != frames2  # speed factors differ between epochs


def test_bad_audio_names_the_utterance_and_path(tmp_path, utterances, features):
    garbage = tmp_path / "broken.wav"
    garbage.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    bad = Utterance(id="broken-utt", audio=str(garbage), duration=1.0, text="x")
    dataset = SpeechDataset([utterances[0], bad], features)
    loader = make_dataloader(dataset, DynamicBatchSampler([1.0, 1.0], max_batch_size=2, shuffle=False))
    with pytest.raises(AudioError, match=f"utterance 'broken-utt': {garbage}"):
        next(iter(loader))

    tiny = tmp_path / "tiny.wav"
    sf.write(tiny, make_tone(0.01), 16000)
    short = Utterance(id="tiny-utt", audio=str(tiny), duration=0.01, text="x")
    fbank = FeatureExtractor(FeatureConfig(kind="fbank"))
    with pytest.raises(AudioError, match=f"utterance 'tiny-utt': {tiny}: .*too short"):
        SpeechDataset([short], fbank)[0]


def test_batch_to_moves_every_tensor(utterances, features):
    dataset = SpeechDataset(utterances[:2], features)
    batch = collate([dataset[0], dataset[1]])
    moved = batch.to("meta")  # a device other than the CPU that exists everywhere
    assert moved.ids == batch.ids
    assert all(getattr(moved, name).device.type == "meta" for name in ("feats", "targets", "prefix", "feat_lengths"))
    assert batch.feats.device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs CUDA")
def test_pinned_batches_through_the_dataloader(utterances, features):
    dataset = SpeechDataset(utterances[:2], features)
    sampler = DynamicBatchSampler([1.0, 1.0], max_batch_size=2, shuffle=False)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, pin_memory=True)
    (batch,) = list(loader)
    assert batch.feats.is_pinned() and batch.targets.is_pinned()
    on_gpu = batch.to("cuda")
    assert on_gpu.feats.is_cuda and torch.equal(on_gpu.feats.cpu(), batch.feats)


def test_bad_arguments_are_rejected(utterances, features, tokenizer):
    with pytest.raises(ValueError, match="task must be one of"):
        SpeechDataset(utterances, features, tokenizer, task="mt")
    with pytest.raises(ValueError, match="prefix_tokens need a tokenizer"):
        SpeechDataset(utterances, features, prefix_tokens=("<asr>",))
    with pytest.raises(ValueError, match="speed factors must be positive"):
        SpeechDataset(utterances, features, speed_factors=(0.0,))
    with pytest.raises(ValueError, match="<xx>"):
        SpeechDataset(utterances, features, tokenizer, prefix_tokens=("<xx>",))
    with pytest.raises(ValueError, match="no examples"):
        collate([])
    one = SpeechDataset(utterances[:1], features, tokenizer, prefix_tokens=("<asr>",))[0]
    two = SpeechDataset(utterances[:1], features, tokenizer, prefix_tokens=("<st>", "<de>"))[0]
    with pytest.raises(ValueError, match="prefixes of different lengths"):
        collate([one, two])

