"""Pivotal sampling over a sharded pool, the same sample at every world size.

Pivotal sampling (`selectkit.sampling.pivotal`) resolves a PCA tree bottom-up by duels; what is left
at the root is one undecided item with a residual probability. Here each logical block of the pool is
one tree, resolved on the rank that owns it (`selectkit.sampling.pivotal_tree`, with a generator keyed
by the block id): its duels decide every item of the block but at most one, whose residual is kept.
The leftovers, at most one per block, are gathered to every rank (position, ``pi``, residual and tree
coordinates) and resolved by one more pivotal pass over their own tree, last coin included. Every item
keeps its inclusion probability, and the sample has exactly ``sum(pi)`` items when that is an integer.

A block's sample depends on its rows and its key alone, and the leftovers arrive in block order, so
the sample does not depend on which rank resolved which block. Bytes sent per rank: the leftovers,
``(W - 1) * B_max * (24 + 4 t)`` for ``t`` coordinates, and then the chosen items.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from selectkit import sampling
from selectkit.distributed import Comm, ShardLayout, key_generator


def block_pivotal(
    comm: Comm, layout: ShardLayout, pi: np.ndarray, coords: np.ndarray, block_key: Callable[[int], Any], leftover_key: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Pivotal sampling with inclusion probabilities ``pi`` (this rank's rows) along PCA trees of
    ``coords`` (this rank's rows, ``[n_local, t]``): one tree per logical block (generator of
    ``block_key(block id)``), then one over the blocks' leftovers (generator of ``leftover_key``).

    Every rank must call it. Returns the whole sample on every rank: pool positions ascending and
    their ``pi``.
    """
    pi = np.asarray(pi, dtype=np.float64)
    item = [("pos", "i8"), ("pi", "f8")]
    leftover = np.zeros(len(layout.blocks), dtype=item + [("residual", "f8"), ("coords", "f4", (coords.shape[1],))])
    taken = []
    for j, (b, rows) in enumerate(layout.local_blocks()):
        chosen, survivor, residual = sampling.pivotal_tree(pi[rows], coords[rows], key_generator(block_key(b)))
        rec = np.empty(chosen.size, dtype=item)
        rec["pos"], rec["pi"] = layout.lo + rows.start + chosen, pi[rows][chosen]
        taken.append(rec)
        if survivor >= 0:
            leftover[j] = (layout.lo + rows.start + survivor, pi[rows][survivor], residual, coords[rows][survivor])
        else:
            leftover["pos"][j] = -1
    mine = np.concatenate(taken) if taken else np.zeros(0, dtype=item)
    rest = np.concatenate(comm.all_gather(leftover[leftover["pos"] >= 0], "leverage pivotal: leftovers"))
    last = rest[sampling.pivotal(rest["residual"], rest["coords"], key_generator(leftover_key))] if rest.size else rest
    tail = np.empty(last.size, dtype=item)
    tail["pos"], tail["pi"] = last["pos"], last["pi"]
    both = np.concatenate(comm.all_gather(mine, "leverage pivotal: sample") + [tail])
    both = both[np.argsort(both["pos"], kind="stable")]
    return both["pos"].copy(), both["pi"].copy()
