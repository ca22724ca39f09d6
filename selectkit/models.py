"""Small models for the built-in datasets: a CNN and an MLP.

Each model has ``forward(x) -> logits``, ``embed(x) -> penultimate features`` and
``head(features) -> logits`` (selectors work in the embedding space, and samples made in that space can
be trained on), plus an ``embedding_dim`` attribute. `build_model` picks one by name.
"""

from __future__ import annotations

import inspect
import math
from typing import Callable, Sequence

import torch
from torch import nn

from selectkit.errors import ConfigError


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU blocks (the first two max-pooled), a pooled linear embedding and a linear head.

    About 90k parameters at ``width=32``; a few CPU epochs reach roughly 90% on Fashion-MNIST.

    Args:
        in_channels: image channels.
        num_classes: output classes.
        input_size: height (= width) of the input images; at least 4 (two 2x poolings).
        width: channels of the first block; the later blocks have twice as many.
        embedding_dim: width of the embedding (penultimate) layer.
        dropout: dropout on the embedding during training.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        input_size: int = 28,
        width: int = 32,
        embedding_dim: int = 128,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check_positive("model.width", width)
        _check_positive("model.embedding_dim", embedding_dim)
        _check_dropout(dropout)
        if int(input_size) < 4:
            raise ConfigError(f"model: the cnn needs images of at least 4x4 pixels, got {input_size}x{input_size}; use model=mlp")
        wide = 2 * width
        pooled = min(2, int(input_size) // 4)

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(in_channels, width),
            nn.MaxPool2d(2),
            *block(width, wide),
            nn.MaxPool2d(2),
            *block(wide, wide),
            nn.AdaptiveAvgPool2d(pooled),
            nn.Flatten(),
        )
        self.project = nn.Sequential(nn.Linear(wide * pooled * pooled, embedding_dim), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.classifier = nn.Linear(embedding_dim, num_classes)
        self.embedding_dim = int(embedding_dim)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features, ``[N, embedding_dim]``."""
        return self.project(self.features(x))

    def head(self, z: torch.Tensor) -> torch.Tensor:
        """Logits from embedding-space features."""
        return self.classifier(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, ``[N, num_classes]``."""
        return self.head(self.embed(x))


class MLP(nn.Module):
    """Flatten, then Linear-ReLU-Dropout blocks; the last hidden layer is the embedding.

    Args:
        in_features: flattened input size.
        hidden: widths of the hidden layers (empty: the flattened input is the embedding).
        num_classes: output classes.
        dropout: dropout after each hidden layer.
    """

    def __init__(self, in_features: int, hidden: Sequence[int] = (256, 128), num_classes: int = 10, dropout: float = 0.1) -> None:
        super().__init__()
        _check_dropout(dropout)
        layers: list[nn.Module] = [nn.Flatten()]
        width = int(in_features)
        for i, h in enumerate(hidden):
            _check_positive(f"model.hidden.{i}", h)
            layers += [nn.Linear(width, int(h)), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = int(h)
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes)
        self.embedding_dim = width

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features, ``[N, embedding_dim]``."""
        return self.body(x)

    def head(self, z: torch.Tensor) -> torch.Tensor:
        """Logits from embedding-space features."""
        return self.classifier(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, ``[N, num_classes]``."""
        return self.head(self.embed(x))


def _check_positive(key: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{key} must be an integer >= 1, got {value!r}")


def _check_dropout(value: object) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
        raise ConfigError(f"model.dropout must be a number in [0, 1), got {value!r}")


def _cnn(input_shape: Sequence[int], num_classes: int, **kwargs) -> nn.Module:
    return SmallCNN(in_channels=int(input_shape[0]), num_classes=num_classes, input_size=int(input_shape[-1]), **kwargs)


def _mlp(input_shape: Sequence[int], num_classes: int, **kwargs) -> nn.Module:
    return MLP(math.prod(int(s) for s in input_shape), num_classes=num_classes, **kwargs)


#: Model name -> (factory, the class whose keyword arguments the ``model.*`` settings fill).
MODELS: dict[str, tuple[Callable[..., nn.Module], type]] = {"cnn": (_cnn, SmallCNN), "mlp": (_mlp, MLP)}
_SET_BY_FACTORY = {"self", "in_channels", "input_size", "in_features", "num_classes"}


def build_model(name: str, input_shape: Sequence[int], num_classes: int, **kwargs) -> nn.Module:
    """The model ``name`` (``cnn`` | ``mlp``) for channels-first inputs of ``input_shape``.

    ``kwargs`` are the remaining ``model.*`` settings (e.g. ``width`` for the CNN, ``hidden`` and
    ``dropout`` for the MLP); an unknown one raises `ConfigError` naming it.
    """
    if name not in MODELS:
        raise ConfigError(f"model.name must be one of {', '.join(MODELS)}, got {name!r}")
    factory, cls = MODELS[name]
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p not in _SET_BY_FACTORY]
    for key in kwargs:
        if key not in allowed:
            raise ConfigError(f"model.{key} is not a setting of model {name}; its settings: {', '.join(allowed)}")
    if len(input_shape) < 1 or any(int(s) < 1 for s in input_shape):
        raise ConfigError(f"model: input shape {tuple(input_shape)} is not a channels-first image shape")
    return factory(tuple(input_shape), int(num_classes), **kwargs)
