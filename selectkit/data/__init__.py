"""Data for selectkit: sources a config names by ``_target_``, and batch gathering for DataLoaders.

A `DataSource` (the ``data`` config group) loads in ``setup()`` and exposes ``train`` and ``val``
`BatchDataset` s plus ``meta``. The sources:

- `FashionMNIST` and `Digits`: the built-in datasets, in memory (`build_datasets` with fixed settings);
- `Arrays`: ``.npy``/``.npz`` files, memory-mapped by default, so a pool larger than memory works;
- `TorchDataset`: any map-style torch Dataset, read item by item;
- `WordNet`: definitions and their words from WordNet's files, tokenised for text retrieval.

A `BatchDataset` returns a whole batch from one `BatchDataset.gather` call; `Batches` puts one in
front of a DataLoader (``collate_fn=batch_collate``) and adds the sampler's ``index``, ``weight``
and ``mask``. `WithSynthetic` appends synthetic rows to any of them; their ids follow the
dataset's own rows.
"""

from selectkit.data.arrays import Arrays, MappedArrays
from selectkit.data.base import BatchDataset, DataSource
from selectkit.data.batches import Batches, batch_collate, split_items
from selectkit.data.builtin import (
    DATASETS,
    DIGITS_CLASSES,
    Digits,
    FashionMNIST,
    build_datasets,
    load_digits_dataset,
    make_imbalanced,
    stratified_split,
)
from selectkit.data.fashion import (
    FASHION_CLASSES,
    FASHION_FILES,
    STANDARD_DIRS,
    USER_CACHE,
    _cache_clear,
    candidate_dirs,
    find_fashion_mnist,
    load_fashion_mnist,
    parse_idx,
    read_idx,
)
from selectkit.data.memory import ArrayDataset, WithSynthetic
from selectkit.data.torch_dataset import TorchDataset, TorchItems
from selectkit.data.wordnet import TextPairs, WordNet

__all__ = [
    "DATASETS",
    "DIGITS_CLASSES",
    "FASHION_CLASSES",
    "FASHION_FILES",
    "STANDARD_DIRS",
    "USER_CACHE",
    "ArrayDataset",
    "Arrays",
    "BatchDataset",
    "Batches",
    "DataSource",
    "Digits",
    "FashionMNIST",
    "MappedArrays",
    "TorchDataset",
    "TextPairs",
    "TorchItems",
    "WithSynthetic",
    "WordNet",
    "batch_collate",
    "build_datasets",
    "candidate_dirs",
    "find_fashion_mnist",
    "load_digits_dataset",
    "load_fashion_mnist",
    "make_imbalanced",
    "parse_idx",
    "read_idx",
    "split_items",
    "stratified_split",
]
