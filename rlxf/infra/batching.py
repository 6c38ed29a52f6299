"""Length-bucketed training batches: examples of similar length share a batch, so little of each batch is padding.

Short texts (tweets, MONA conditions: ~40-55 tokens, up to the 96-token cap) batched at random pad to the longest in
the batch: about 1.6 tokens computed per real token at batch 16. `LengthBucketSampler` shuffles the examples, sorts
each window of `window` batches by length, cuts it into batches and shuffles the batches, so the order stays random
at the batch level (no long-to-short curriculum, unlike transformers' `LengthGroupedSampler`, which runs every window
from its longest batch to its shortest) while padding falls to a few per cent. `BucketByLength` puts it into a
`transformers.Trainer` (and its subclasses: TRL's trainers); `BucketedTrainer` is the plain Trainer with it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from transformers import Trainer


class LengthBucketSampler(torch.utils.data.Sampler[int]):
    """Indices in batches of similar length; a fresh order on every pass (epoch), reproducible from `seed`."""

    def __init__(self, lengths: Sequence[int], batch_size: int, *, seed: int = 0, window: int = 50):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if window < 1:
            raise ValueError(f"window must be >= 1 batches, got {window}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if self.lengths.ndim != 1 or len(self.lengths) == 0:
            raise ValueError(f"lengths must be a non-empty list of token counts, got shape {self.lengths.shape}")
        self.batch_size, self.seed, self.window = batch_size, seed, window
        self.passes = 0  # each __iter__ is one pass over the data (the Trainer iterates once per epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def batches(self, rng: np.random.Generator) -> list[np.ndarray]:
        """One pass cut into batches: full ones in random order, then the one partial batch (if any) last, so a
        consumer that cuts the flat order every `batch_size` indices gets exactly these batches."""
        order = rng.permutation(len(self.lengths))
        span = self.window * self.batch_size
        full, rest = [], []
        for start in range(0, len(order), span):
            chunk = order[start : start + span]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            cut = len(chunk) - len(chunk) % self.batch_size
            full += [chunk[i : i + self.batch_size] for i in range(0, cut, self.batch_size)]
            rest.append(chunk[cut:])
        leftover = np.concatenate(rest)  # at most one short chunk per window; together they may fill batches
        leftover = leftover[np.argsort(self.lengths[leftover], kind="stable")]
        cut = len(leftover) - len(leftover) % self.batch_size
        full += [leftover[i : i + self.batch_size] for i in range(0, cut, self.batch_size)]
        shuffled = [full[i] for i in rng.permutation(len(full))]
        return shuffled + ([leftover[cut:]] if cut < len(leftover) else [])

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.passes])
        self.passes += 1
        for batch in self.batches(rng):
            yield from (int(i) for i in batch)


def padding_ratio(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Tokens computed (each batch padded to its longest) per real token."""
    lengths = np.asarray(lengths)
    computed = sum(int(lengths[list(b)].max()) * len(b) for b in batches if len(b))
    return computed / max(int(sum(lengths[list(b)].sum() for b in batches if len(b))), 1)


class BucketByLength:
    """Mixin for `transformers.Trainer` (first in the bases): train batches from `LengthBucketSampler`, lengths read
    from each training example's `input_ids`."""

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        lengths = [len(dataset[i]["input_ids"]) for i in range(len(dataset))]
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return LengthBucketSampler(lengths, self.args.per_device_train_batch_size, seed=seed)


class BucketedTrainer(BucketByLength, Trainer):
    """transformers' Trainer with length-bucketed training batches (the classifiers and SFT train with it)."""
