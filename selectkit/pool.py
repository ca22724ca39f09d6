"""`Pool`: the items one stage selects from, with their per-item data computed lazily, whole or by shard.

A pool may span several processes. Its ``comm`` (a `selectkit.distributed.Comm`) names the ranks;
every rank owns a contiguous shard of the pool's positions, cut in fixed logical blocks
(`selectkit.distributed.ShardLayout`, ``block_rows`` rows each), so the shard of a position does not
depend on anything but the world size, and a block holds the same items at every world size.

Two ways to read a provider (``labels``, ``features``, ``embeddings``, ``probs``, ...):

* `Pool.local` gives this rank's rows as a `selectkit.distributed.ShardedArray`: the provider is
  computed for the shard's items only. Selectors that declare ``sharded = True`` read their data this
  way and combine shards through the collectives of ``pool.comm``; their results are the same at every
  world size.
* `Pool.get` gives the whole ``[n, ...]`` array on every rank. Over several ranks each computes its
  shard and the shards are gathered, after a check that the whole array fits under
  ``providers.memory_cap_gb`` (the error names the selector). A selector that declares ``sharded``
  may read whole only the providers it lists in ``gathers``; labels and relations (``pairs``) are
  held whole by every rank anyway.

A pool without ``comm`` is held whole by this process (world size 1): `local` and `get` then give the
same rows.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from selectkit.distributed import Comm, ShardedArray, ShardLayout
from selectkit.errors import ConfigError, SelectionError

#: Providers that relate pool items to each other (one row per relation, not per item): ``pairs``
#: gives ``[m, 2]`` pool positions of (anchor, positive) pairs.
RELATIONS = frozenset({"pairs"})
#: Providers every rank holds whole at no cost (labels live in memory on every rank).
REPLICATED = frozenset({"labels"}) | RELATIONS


class Reader:
    """Who is reading a pool: the selector's setting path, its name, and its declared access."""

    def __init__(self, path: str, name: str, sharded: bool, gathers: frozenset[str]) -> None:
        self.path, self.name, self.sharded, self.gathers = path, name, sharded, frozenset(gathers)


class Pool:
    """The items one stage selects from, with lazily computed per-item data.

    ``ids`` are the items' global ids (dataset rows; synthetic rows follow the dataset's own); an int
    ``n`` stands for the ids ``0..n-1`` without building that array until someone asks for it.
    ``providers`` map a provider name to a function ``(ids, **params) -> array`` of exactly those ids'
    rows, computed on first access (per distinct parameters); ``arrays`` are values given up front (no
    parameters, whole). ``labelled`` is the already labelled set as a pool of its own (same providers),
    offered in a round loop so that acquisition selectors which need it (k-center distances, TypiClust
    clusters) can read it; empty elsewhere.

    ``comm`` spreads the pool over ranks (None: this process holds it whole); ``block_rows`` sets its
    logical blocks (None: `selectkit.distributed.DEFAULT_BLOCK_ROWS`); ``memory_cap_gb`` bounds an
    array gathered whole from shards (``providers.memory_cap_gb``; None: no bound).
    """

    def __init__(
        self,
        ids: np.ndarray | int,
        *,
        weights: np.ndarray | None = None,
        providers: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
        labelled: "Pool | None" = None,
        comm: Comm | None = None,
        block_rows: int | None = None,
        memory_cap_gb: float | None = None,
        **arrays: np.ndarray,
    ) -> None:
        if isinstance(ids, (int, np.integer)):
            self._ids: np.ndarray | None = None
            self._size = int(ids)
        else:
            self._ids = np.asarray(ids, dtype=np.int64)
            self._size = int(self._ids.shape[0])
        self.weights = weights
        self._providers = dict(providers or {})
        self._cache: dict[tuple, np.ndarray] = {}
        self._local: dict[tuple, np.ndarray] = {}
        for key, value in arrays.items():
            if value is not None:
                self._cache[(key,)] = np.asarray(value)
        self._labelled = labelled
        self.comm = comm if comm is not None and comm.world > 1 else None
        self.block_rows = block_rows
        self.memory_cap_gb = memory_cap_gb
        self._layout: ShardLayout | None = None
        self.reader: Reader | None = None

    # ------------------------------------------------------------------ shape of the pool
    @property
    def labelled(self) -> "Pool":
        """The already labelled items (a round loop's labelled set) as a `Pool`; empty when none."""
        if self._labelled is None:
            self._labelled = Pool(0)
        return self._labelled

    @property
    def ids(self) -> np.ndarray:
        """Global ids of the pool items (int64)."""
        if self._ids is None:
            self._ids = np.arange(self._size, dtype=np.int64)
        return self._ids

    def __len__(self) -> int:
        return self._size

    @property
    def world(self) -> int:
        """How many ranks share this pool (1 without ``comm``)."""
        return 1 if self.comm is None else self.comm.world

    @property
    def layout(self) -> ShardLayout:
        """This rank's shard of the pool's positions."""
        if self._layout is None:
            world, rank = (1, 0) if self.comm is None else (self.comm.world, self.comm.rank)
            extra = {} if self.block_rows is None else {"block_rows": int(self.block_rows)}
            self._layout = ShardLayout(len(self), world, rank, **extra)
        return self._layout

    @property
    def local_positions(self) -> np.ndarray:
        """Pool positions of this rank's shard (int64 ``[lo, hi)``)."""
        return np.arange(self.layout.lo, self.layout.hi, dtype=np.int64)

    @property
    def local_ids(self) -> np.ndarray:
        """Global ids of this rank's shard."""
        lo, hi = self.layout.lo, self.layout.hi
        return np.arange(lo, hi, dtype=np.int64) if self._ids is None else self._ids[lo:hi]

    def collectives(self) -> Comm:
        """The `Comm` the pool's ranks run collectives on (a world of one without ``comm``)."""
        return Comm.alone() if self.comm is None else self.comm

    # ------------------------------------------------------------------ reading providers
    def has(self, name: str) -> bool:
        """Whether ``name`` is available (already computed or computable)."""
        return (name,) in self._cache or name in self._providers

    def available(self) -> set[str]:
        """Names of every provider or array this pool offers."""
        return {k[0] for k in self._cache} | set(self._providers)

    def _missing(self, name: str) -> ConfigError:
        return ConfigError(f"this pool offers no {name!r}; available: {sorted(self.available())}")

    def _compute(self, name: str, ids: np.ndarray, rows: int, params: Mapping[str, Any]) -> np.ndarray:
        value = np.asarray(self._providers[name](ids, **params))
        if name in RELATIONS:
            if value.ndim != 2 or value.shape[1] != 2 or value.dtype.kind not in "iu" or (value.size and (value.min() < 0 or value.max() >= len(self))):
                raise SelectionError(f"provider {name!r} must return [m, 2] integer pool positions in [0, {len(self)})")
        elif value.shape[0] != rows:
            raise SelectionError(f"provider {name!r} returned {value.shape[0]} rows for {rows} items")
        return value

    def get(self, name: str, **params: Any) -> np.ndarray:
        """The whole per-item array ``name`` (computed with ``params``) on first access, then cached.

        Over several ranks, each computes its shard and the shards are gathered (see the module's
        docstring for who may, and the memory bound)."""
        key = (name, *sorted(params.items()))
        if key in self._cache:
            return self._cache[key]
        if name not in self._providers:
            if (name,) in self._cache and not params:
                return self._cache[(name,)]
            raise self._missing(name)
        if name not in REPLICATED and self.reader is not None and self.reader.sharded and name not in self.reader.gathers:
            raise SelectionError(
                f"{self.reader.path} ({self.reader.name}) declares sharded = True but reads {name!r} whole: read pool.local({name!r}), "
                f"or list {name!r} in its gathers"
            )
        return self._whole(key, name, params)

    def _whole(self, key: tuple, name: str, params: Mapping[str, Any]) -> np.ndarray:
        """The whole array of provider ``name``: computed here alone, or gathered from the shards."""
        if key not in self._cache:
            if self.comm is None or name in REPLICATED:
                self._cache[key] = self._compute(name, self.ids, len(self), params)
            else:
                self._cache[key] = self._gather(name, self.local(name, **params).local)
        return self._cache[key]

    def local(self, name: str, **params: Any) -> ShardedArray:
        """This rank's rows of the per-item array ``name`` as a `ShardedArray` (the whole array at
        world size 1); computed for the shard's items only, then cached."""
        if name in RELATIONS:
            raise SelectionError(f"{name!r} relates items to each other; read it whole with pool.get({name!r})")
        key = (name, *sorted(params.items()))
        layout = self.layout
        whole = self._cache.get(key)
        if whole is None and not params and name not in self._providers:
            whole = self._cache.get((name,))
        if whole is not None:
            return ShardedArray(whole[layout.lo : layout.hi], layout)
        if name not in self._providers:
            raise self._missing(name)
        if self.comm is None or name in REPLICATED:
            return ShardedArray(self._whole(key, name, params)[layout.lo : layout.hi], layout)
        if key not in self._local:
            self._local[key] = self._compute(name, self.local_ids, layout.n_local, params)
        return ShardedArray(self._local[key], layout)

    def get_at(self, name: str, positions: np.ndarray, **params: Any) -> np.ndarray:
        """``name`` for the items at pool ``positions`` only, in that order, not cached.

        Sliced from the whole array when that is already computed or given; otherwise the provider is
        called with those items' ids alone (on every rank that asks), so a model output for a few items
        costs a few forward passes instead of a pass over the pool.
        """
        positions = np.asarray(positions, dtype=np.int64)
        key = (name, *sorted(params.items()))
        if key in self._cache:
            return self._cache[key][positions]
        if name not in self._providers:
            if (name,) in self._cache and not params:
                return self._cache[(name,)][positions]
            raise self._missing(name)
        return self._compute(name, self.ids[positions], positions.shape[0], params)

    def _gather(self, name: str, local: np.ndarray) -> np.ndarray:
        """The whole array from every rank's shard, refused above ``memory_cap_gb`` on every rank alike."""
        comm = self.comm
        shapes = comm.all_gather_objects((tuple(local.shape), local.dtype.str), f"pool.get({name!r})")
        row_shape = next((s[1:] for s, _ in shapes if s[0] > 0), local.shape[1:])
        dtype = np.dtype(next((d for s, d in shapes if s[0] > 0), local.dtype.str))
        need = len(self) * int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize
        if self.memory_cap_gb is not None and need > self.memory_cap_gb * 2**30:
            who = f"{self.reader.path} ({self.reader.name})" if self.reader is not None else "a selector"
            raise ConfigError(
                f"providers.memory_cap_gb: {who} reads {name} of all {len(self)} items on every rank, about {need / 2**30:.1f} GB "
                f"(> {self.memory_cap_gb:g}); raise providers.memory_cap_gb, select from a smaller pool first, or use a sharded selector"
            )
        local = local.reshape(local.shape[0], *row_shape).astype(dtype, copy=False)
        return np.concatenate(comm.all_gather(local, f"pool.get({name!r})"))

    # ------------------------------------------------------------------ shorthands
    @property
    def labels(self) -> np.ndarray:
        """Integer class labels of the pool items."""
        return self.get("labels")

    @property
    def features(self) -> np.ndarray:
        """Raw input features, flattened to ``[n, d]``."""
        return self.get("features")

    @property
    def embeddings(self) -> np.ndarray:
        """The model's embeddings of the pool items, ``[n, d]``."""
        return self.get("embeddings")
