"""A small network for tabular rows, written without any framework in mind (no ``embed`` method)."""

from __future__ import annotations

from torch import nn


class TabularNet(nn.Module):
    """Two hidden layers with dropout, then a linear classifier ``out``."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 32, dropout: float = 0.1) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU())
        self.out = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.out(self.body(x))
