"""torch Dataset over letterboxed samples, loaded once into memory (datasets here are small)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from polyp_core.preprocess import normalize

from .augment import augment
from .data import Sample, load_pair


class SegmentationDataset(Dataset):
    def __init__(self, samples: list[Sample], size: int, train: bool, seed: int = 0):
        self.pairs = [load_pair(sample, size) for sample in samples]
        self.train = train
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.pairs[index]
        if self.train:
            image, mask = augment(image, mask, self.rng)
        return torch.from_numpy(normalize(image)), torch.from_numpy(mask[None].astype(np.float32))
