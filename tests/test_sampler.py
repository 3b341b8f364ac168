"""DynamicBatchSampler: coverage, cost bound, determinism, sharding and exact resume."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

from asr.data import DynamicBatchSampler


def durations(n: int = 500, seed: int = 0) -> list[float]:
    # Log-normal around 5 s, like read speech corpora, clipped to 0.5-20 s.
    return np.clip(np.random.default_rng(seed).lognormal(1.6, 0.5, n), 0.5, 20.0).tolist()


def padded_cost(batch: list[int], lengths: list[float]) -> float:
    return len(batch) * max(lengths[i] for i in batch)


def test_every_index_once_per_epoch_and_cost_bounded():
    lengths = durations()
    sampler = DynamicBatchSampler(lengths, max_seconds=60.0, max_batch_size=16)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert sorted(itertools.chain(*batches)) == list(range(len(lengths)))
        assert all(padded_cost(b, lengths) <= 60.0 and len(b) <= 16 for b in batches)
        # Bucketing keeps padding low: the total padded cost is close to the total audio.
        assert sum(padded_cost(b, lengths) for b in batches) < 1.3 * sum(lengths)


def test_same_seed_and_epoch_give_the_same_batches_and_epochs_differ():
    lengths = durations()
    a = DynamicBatchSampler(lengths, max_seconds=40.0, seed=3)
    b = DynamicBatchSampler(lengths, max_seconds=40.0, seed=3)
    a.set_epoch(1)
    b.set_epoch(1)
    assert list(a) == list(b)
    epoch1 = list(a)
    a.set_epoch(2)
    assert list(a) != epoch1
    a.set_epoch(0)
    assert list(DynamicBatchSampler(lengths, max_seconds=40.0, seed=4)) != list(a)


def test_no_shuffle_is_sorted_and_the_same_every_epoch():
    lengths = durations(100)
    sampler = DynamicBatchSampler(lengths, max_seconds=30.0, shuffle=False)
    first = list(sampler)
    sampler.set_epoch(5)
    assert list(sampler) == first
    order = list(itertools.chain(*first))
    assert order == sorted(range(len(lengths)), key=lambda i: lengths[i])


def test_max_frames_bounds_the_padded_frames():
    lengths = durations(200)
    sampler = DynamicBatchSampler(lengths, max_frames=3000, frame_shift=0.01)
    batches = list(sampler)
    assert sorted(itertools.chain(*batches)) == list(range(200))
    assert all(len(b) * max(lengths[i] for i in b) / 0.01 <= 3000 + 1e-6 for b in batches)


def test_max_batch_size_alone_gives_fixed_size_batches():
    sampler = DynamicBatchSampler([1.0] * 10, max_batch_size=4, shuffle=False)
    assert [len(b) for b in sampler] == [4, 4, 2]


def test_overlong_utterances_form_their_own_batch_with_one_warning():
    lengths = [1.0] * 20 + [30.0, 45.0]
    with pytest.warns(UserWarning, match="2 utterance\\(s\\) are longer than the batch bound") as record:
        sampler = DynamicBatchSampler(lengths, max_seconds=10.0)
    assert len(record) == 1 and "index 21 (45.00 s)" in str(record[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # iterating warns no more
        batches = list(sampler)
    assert [20] in batches and [21] in batches
    assert all(padded_cost(b, lengths) <= 10.0 for b in batches if b not in ([20], [21]))
    assert sorted(itertools.chain(*batches)) == list(range(22))


@pytest.mark.parametrize("world_size", [2, 3])
def test_sharding_covers_everything_with_equal_batch_counts(world_size):
    lengths = durations(301)
    full = DynamicBatchSampler(lengths, max_seconds=50.0, seed=7)
    full.set_epoch(2)
    all_batches = list(full)
    shards = []
    for rank in range(world_size):
        sampler = DynamicBatchSampler(lengths, max_seconds=50.0, seed=7, rank=rank, world_size=world_size)
        sampler.set_epoch(2)
        shards.append(list(sampler))
        assert len(shards[-1]) == len(sampler)
    assert len({len(s) for s in shards}) == 1
    assert len(shards[0]) == -(-len(all_batches) // world_size)
    seen = [i for shard in shards for batch in shard for i in batch]
    assert set(seen) == set(range(len(lengths)))
    # Padding only repeats batches from the start of the epoch's list, as DistributedSampler does.
    padding = len(shards[0]) * world_size - len(all_batches)
    assert len(seen) == len(lengths) + sum(len(b) for b in all_batches[:padding])
    if padding == 0:
        assert len(seen) == len(set(seen))


def test_sharding_pads_when_there_are_fewer_batches_than_ranks():
    shards = [list(DynamicBatchSampler([1.0, 2.0], max_seconds=2.0, rank=r, world_size=3)) for r in range(3)]
    assert all(len(s) == 1 for s in shards)
    assert {i for s in shards for b in s for i in b} == {0, 1}


@pytest.mark.parametrize("world_size", [1, 2])
def test_resume_yields_exactly_the_remaining_batches_once(world_size):
    lengths = durations(200)
    kwargs = dict(max_seconds=40.0, seed=1, rank=world_size - 1, world_size=world_size)
    sampler = DynamicBatchSampler(lengths, **kwargs)
    sampler.set_epoch(3)
    epoch3 = list(sampler)
    it = iter(sampler)
    consumed = [next(it) for _ in range(5)]
    state = sampler.state_dict()
    assert state == {"epoch": 3, "batches_done": 5}

    resumed = DynamicBatchSampler(lengths, **kwargs)
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state
    resumed.set_epoch(3)  # a training loop calls this at the start of every epoch; it keeps the skip
    rest = list(resumed)
    assert consumed + rest == epoch3
    assert resumed.state_dict() == {"epoch": 3, "batches_done": len(epoch3)}
    assert list(resumed) == epoch3  # the skip is one-shot
    resumed.set_epoch(4)
    assert resumed.state_dict() == {"epoch": 4, "batches_done": 0}
    assert len(list(resumed)) == len(resumed)


def test_resume_of_another_epoch_is_dropped_when_the_epoch_changes():
    sampler = DynamicBatchSampler(durations(100), max_seconds=40.0)
    sampler.load_state_dict({"epoch": 0, "batches_done": 3})
    sampler.set_epoch(1)
    assert len(list(sampler)) == len(sampler)


def test_bad_arguments_and_states_are_rejected():
    with pytest.raises(ValueError, match="duration of index 1 is -1.0"):
        DynamicBatchSampler([1.0, -1.0], max_seconds=10.0)
    with pytest.raises(ValueError, match="not both"):
        DynamicBatchSampler([1.0], max_seconds=10.0, max_frames=100)
    with pytest.raises(ValueError, match="give max_seconds, max_frames or max_batch_size"):
        DynamicBatchSampler([1.0])
    with pytest.raises(ValueError, match="rank 2 is not in"):
        DynamicBatchSampler([1.0], max_seconds=10.0, rank=2, world_size=2)
    with pytest.raises(ValueError, match="non-empty"):
        DynamicBatchSampler([], max_seconds=10.0)
    sampler = DynamicBatchSampler([1.0] * 10, max_seconds=2.0)
    with pytest.raises(ValueError, match="batches_done=6 is outside \\[0, 5\\]"):
        sampler.load_state_dict({"epoch": 0, "batches_done": 6})
    with pytest.raises(ValueError, match="missing key"):
        sampler.load_state_dict({"epoch": 0})
