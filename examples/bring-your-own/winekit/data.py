"""The wine recognition data (scikit-learn ships it: 178 wines, 13 chemical measurements, 3 cultivars)
as a plain map-style torch Dataset."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_wine
from torch.utils.data import Dataset


class WineRows(Dataset):
    """Standardised wine measurements and cultivar labels; ``split`` picks a fixed 75/25 split.

    Items are ``(x, y)``: a float32 tensor of 13 measurements and an int label. ``targets`` holds every
    label, so a framework can read them without fetching items.
    """

    def __init__(self, split: str = "train", seed: int = 0) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        data = load_wine()
        order = np.random.default_rng(seed).permutation(len(data.target))
        cut = int(0.75 * len(order))
        rows = order[:cut] if split == "train" else order[cut:]
        train = data.data[order[:cut]]
        x = (data.data[rows] - train.mean(0)) / train.std(0)
        self.x = torch.tensor(x, dtype=torch.float32)
        self.targets = data.target[rows].astype(np.int64)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        return self.x[i], int(self.targets[i])
