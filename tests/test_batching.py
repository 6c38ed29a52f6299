"""rlxf.infra.batching: length-bucketed batches are a permutation, cut where a Trainer cuts, carry little padding."""

import numpy as np
import pytest
import torch

from rlxf.infra.batching import BucketByLength, LengthBucketSampler, padding_ratio


def _lengths(n=203, seed=0):
    return np.random.default_rng(seed).integers(5, 97, size=n)


def test_one_pass_is_a_permutation_of_every_index():
    sampler = LengthBucketSampler(_lengths(), batch_size=8, seed=1, window=4)
    order = list(sampler)
    assert sorted(order) == list(range(203))
    assert len(sampler) == 203


def test_batches_are_cut_where_a_trainer_cuts_the_flat_order():
    """The DataLoader cuts the sampler's order every batch_size indices: those cuts must be the bucketed batches,
    so only the last batch may be short."""
    lengths = _lengths()
    sampler = LengthBucketSampler(lengths, batch_size=8, seed=1, window=4)
    batches = list(torch.utils.data.BatchSampler(sampler, batch_size=8, drop_last=False))
    assert all(len(b) == 8 for b in batches[:-1]) and len(batches[-1]) == 203 % 8
    # bucketed: within a batch the spread of lengths is far below that of a random batch
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches[:-1]])
    random_batches = np.array_split(np.random.default_rng(0).permutation(203), 203 // 8)
    random_spread = np.mean([lengths[b].max() - lengths[b].min() for b in random_batches])
    assert spread < 0.4 * random_spread


def test_padding_falls_against_random_batches():
    lengths = _lengths(2000)
    sampler = LengthBucketSampler(lengths, batch_size=16, seed=0)
    bucketed = list(torch.utils.data.BatchSampler(sampler, batch_size=16, drop_last=False))
    random_batches = list(torch.utils.data.BatchSampler(range(2000), batch_size=16, drop_last=False))
    assert padding_ratio(lengths, bucketed) < 1.05
    assert padding_ratio(lengths, random_batches) > 1.3


def test_a_fresh_order_each_pass_and_the_same_orders_from_the_same_seed():
    a = LengthBucketSampler(_lengths(), batch_size=8, seed=3)
    b = LengthBucketSampler(_lengths(), batch_size=8, seed=3)
    first, second = list(a), list(a)
    assert first != second
    assert (first, second) == (list(b), list(b))


def test_batch_order_is_random_not_long_to_short():
    """No curriculum: the mean length of a batch is uncorrelated with its position in the pass."""
    lengths = _lengths(1600)
    batches = LengthBucketSampler(lengths, batch_size=16, seed=0, window=50).batches(np.random.default_rng(0))
    means = np.array([lengths[b].mean() for b in batches])
    assert abs(np.corrcoef(np.arange(len(means)), means)[0, 1]) < 0.3


def test_padding_ratio_by_hand():
    assert padding_ratio([2, 4, 3, 3], [[0, 1], [2, 3]]) == pytest.approx((4 * 2 + 3 * 2) / 12)


@pytest.mark.parametrize("kwargs, match", [
    (dict(lengths=[], batch_size=2), "non-empty"),
    (dict(lengths=[3, 4], batch_size=0), "batch_size"),
    (dict(lengths=[3, 4], batch_size=2, window=0), "window"),
])
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LengthBucketSampler(**kwargs)


def test_the_mixin_reads_lengths_from_input_ids():
    class Args:
        per_device_train_batch_size, seed, data_seed = 2, 5, None

    class FakeTrainer(BucketByLength):
        args = Args()
        train_dataset = [{"input_ids": [1] * n} for n in (3, 9, 4, 8)]

    sampler = FakeTrainer()._get_train_sampler()
    assert list(sampler.lengths) == [3, 9, 4, 8] and sampler.batch_size == 2 and sampler.seed == 5
