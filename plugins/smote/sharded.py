"""The SMOTE family over a pool sharded across ranks: per-class neighbour search over sharded class
members, and the rule that decides which classes are gathered.

The rule (setting ``gather_below`` of each over-sampler):

* a class of fewer than ``gather_below`` members that grows is **gathered**: its members' rows are
  all-gathered to every rank (only that class's rows, never the whole ``[n, d]`` array, and under
  ``providers.memory_cap_gb``), then the single-process code runs on them identically on every rank
  (its neighbour search over the class, the draws from the stage's generator);
* a larger class is **searched sharded**: its members' rows move to a layout of their own in the
  pool's logical blocks (`selectkit.distributed.rows.reshard`), each rank searches its own
  members' neighbours with `selectkit.distributed.sharded_knn`, and the seeds, partners and
  interpolation factors are keyed draws (`Keyed`): a seed's extra sample by the keyed number of its
  pool position, a sample's partner and factor by its index among the class's samples. Each rank
  draws the samples of the seeds it holds, and the samples are assembled in seed order.

Searches over all the data (Borderline-SMOTE's danger test, borderline-2's partners, ADASYN's
hardness) are `sharded_knn` over the pool's shards for every class: each rank asks for its own
members, and only the per-member counts (or, for a gathered class, the neighbour lists) are
gathered. Both paths give the same result at every world size.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from selectkit.distributed import Comm, ShardedArray, keyed_uniform, sharded_knn, subkey
from selectkit.distributed.keyed import keyed_bits
from selectkit.errors import ConfigError
from selectkit_plugins.smote import core
from selectkit.distributed.rows import gather_rows, reshard

#: sub-streams of a keyed class: which seeds make one more sample, ADASYN's remainders, partners, factors
_EXTRA, _REMAINDER, _PARTNER, _FACTOR = 1, 2, 3, 4


def factors(bits: np.ndarray) -> np.ndarray:
    """float32 interpolation factors in ``[0, 1)`` from 64 random bits each (the top 24 bits, exact)."""
    return (bits >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)


class Keyed:
    """Draws of one class keyed by pool position and sample index (``key``: the stage's key and the
    class), each rank drawing the samples of the seeds it holds, assembled over ``comm`` in seed order."""

    def __init__(self, comm: Comm, key: tuple[int, ...]) -> None:
        self.comm = comm
        self.key = key

    def even(self, n: int, g: int, seeds: np.ndarray) -> np.ndarray:
        """`selectkit_plugins.smote.core.even_counts`: the seeds with the smallest keyed numbers make one more."""
        return core.even_counts(n, g, None, keys=keyed_uniform(subkey(self.key, _EXTRA), seeds))

    def proportional(self, weights: np.ndarray, g: int, seeds: np.ndarray) -> np.ndarray:
        """`selectkit_plugins.smote.core.proportional_counts`, ties broken by keyed numbers."""
        return core.proportional_counts(weights, g, None, keys=keyed_uniform(subkey(self.key, _REMAINDER), seeds))

    def pick(self, data: core.Data, nn: core.NeighborRows, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each new sample's seed, neighbour and factor, drawn for the seeds ``nn`` holds and gathered
        whole in seed order (sample ``s`` of the class draws its partner column and factor by ``s``)."""
        local = counts[nn.start : nn.stop]
        seeds = nn.start + np.repeat(np.arange(nn.stop - nn.start, dtype=np.int64), local)
        samples = int(counts[: nn.start].sum()) + np.arange(seeds.size, dtype=np.int64)
        cols = (keyed_bits(subkey(self.key, _PARTNER), samples) % np.uint64(nn.idx.shape[1])).astype(np.int64)
        near = nn.idx[seeds - nn.start, cols]
        lam = factors(keyed_bits(subkey(self.key, _FACTOR), samples))
        drawn = np.empty(seeds.size, dtype=[("seed", "i8"), ("near", "i8"), ("lam", "f4")])
        drawn["seed"], drawn["near"], drawn["lam"] = seeds, near, lam
        whole = np.concatenate(self.comm.all_gather(drawn, "smote samples"))
        return whole["seed"].copy(), whole["near"].copy(), whole["lam"].copy()


class ShardedData(core.Data):
    """The float32 rows of a sharded pool (``rows``, this rank's shard) as `core.draw` sees them.

    Args:
        comm: the pool's ranks.
        rows: this rank's float32 ``[n_local, d]`` rows.
        source: the neighbour layer's search (`core.LayerNeighbors`) for gathered classes.
        config: the `selectkit.neighbors.NeighborConfig` of the sharded searches.
        names: how errors name the settings.
        gather_below: classes of fewer members are gathered (the module's rule).
        key: the stage's key of keyed draws (``ctx.key``).
        memory_cap_gb: bound on one gathered class's rows (``providers.memory_cap_gb``; None: none).
        who: the selector, as errors name it.
    """

    def __init__(
        self, comm: Comm, rows: ShardedArray, source: Any, config: Any, names: core.Names, *, gather_below: int,
        key: tuple[int, ...], memory_cap_gb: float | None, who: str,
    ) -> None:
        super().__init__(rows.local, source)
        self.comm, self.sharded, self.config, self.names = comm, rows, config, names
        self.gather_below, self.key, self.memory_cap_gb, self.who = int(gather_below), key, memory_cap_gb, who
        self._around_logged = False

    def keyed(self, n: int) -> bool:
        """The rule: a class of ``gather_below`` members or more is searched sharded, with keyed draws."""
        return n >= self.gather_below

    def keyed_draws(self, code: int) -> Keyed:
        """The keyed draws of class position ``code``."""
        return Keyed(self.comm, subkey(self.key, code))

    def rows(self, rows: np.ndarray) -> np.ndarray:
        """A gathered class's rows on every rank, refused above ``providers.memory_cap_gb``."""
        need = rows.size * self.X.shape[1] * self.X.dtype.itemsize
        if self.memory_cap_gb is not None and need > self.memory_cap_gb * 2**30:
            raise ConfigError(
                f"providers.memory_cap_gb: {self.who} gathers a class's {rows.size} members on every rank, about {need / 2**30:.1f} GB "
                f"(> {self.memory_cap_gb:g}); lower {self.names.setting('gather_below')} (now {self.gather_below}) so that the class is "
                "searched sharded, or raise providers.memory_cap_gb"
            )
        return gather_rows(self.comm, self.sharded, rows, "smote class rows")

    def _search(self, comm: Comm, queries: np.ndarray, base: ShardedArray, k: int, own: np.ndarray) -> np.ndarray:
        """This rank's queries' ``k`` nearest base rows other than ``own`` (their ids in the base)."""
        with core.renamed(self.names):
            _, idx = sharded_knn(comm, queries, base, k + 1, config=self.config)
        return self.comm.checked(lambda: core.fill_missing(core.drop_self(idx, own), self.names), "smote neighbours")

    def within(self, name: Any, rows: np.ndarray, k: int, queries: np.ndarray | None = None, keyed: bool = False) -> core.NeighborRows:
        """Gathered (the base class's search on every rank) or, for a keyed class, searched sharded:
        the class's rows resharded, each rank asking for its own queries."""
        if not keyed:
            return super().within(name, rows, k, queries, keyed)
        comm, base = reshard(self.comm, self.sharded, rows, "smote class rows")
        asked = np.arange(rows.size, dtype=np.int64) if queries is None else queries
        lo, hi = self.sharded.layout.lo, self.sharded.layout.hi
        a, b = (int(i) for i in np.searchsorted(rows[asked], [lo, hi]))
        idx = self._search(comm, self.X[rows[asked[a:b]] - lo], base, k, asked[a:b])
        self.searches.append({"base": name, "n": int(rows.size), "backend": self.config.backend, "sharded": True})
        return core.NeighborRows(a, b, asked.size, idx, whole=False)

    def around(self, rows: np.ndarray, k: int) -> core.NeighborRows:
        """`sharded_knn` over every rank's shard, each rank asking for the rows it holds."""
        lo, hi = self.sharded.layout.lo, self.sharded.layout.hi
        a, b = (int(i) for i in np.searchsorted(rows, [lo, hi]))
        idx = self._search(self.comm, self.X[rows[a:b] - lo], self.sharded, k, rows[a:b])
        if not self._around_logged:
            self._around_logged = True
            self.searches.append({"base": "all", "n": int(self.sharded.n), "backend": self.config.backend, "sharded": True})
        return core.NeighborRows(a, b, rows.size, idx, whole=False)

    def gather(self, part: core.NeighborRows, values: np.ndarray) -> np.ndarray:
        """Every rank's per-query values, in rank order (the queries' order)."""
        return values if part.whole else np.concatenate(self.comm.all_gather(np.asarray(values), "smote counts"))

    def whole(self, part: core.NeighborRows) -> core.NeighborRows:
        """Every rank's neighbour lists, in rank order (the queries' order)."""
        if part.whole:
            return part
        return core.NeighborRows(0, part.total, part.total, np.concatenate(self.comm.all_gather(part.idx, "smote neighbours")))

    def interpolate(self, parents: np.ndarray, lam: np.ndarray) -> np.ndarray:
        """`core.interpolate` of the parents' rows, gathered: the same values as over the whole array."""
        used, at = np.unique(parents, return_inverse=True)
        return core.interpolate(gather_rows(self.comm, self.sharded, used, "smote parents"), at.reshape(parents.shape), lam)
