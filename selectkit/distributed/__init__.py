"""Selection beyond one process: a sharded pool and the collectives selectors run on it.

The pool is cut into fixed logical blocks (`ShardLayout`, ``distributed.block_rows`` rows each) and
every rank owns a contiguous run of whole blocks; a rank's rows travel as a `ShardedArray`. `Comm` is
the only selection code that calls torch.distributed (gloo on CPU, NCCL on GPU); at world size 1 no
process group is needed and nothing is sent.

Results do not depend on the world size: per-item randomness is keyed by global id
(`keyed_uniform`), floating-point sums run per block and are combined along a fixed tree over the
blocks (`Comm.block_sum`), and ties go to the lowest global id. The exceptions (k-means' rank-ordered
sums, equal to rounding) are listed in docs/distributed.md, with each collective's traffic.

Collectives: `Comm.all_sum`, `Comm.block_sum`, `Comm.all_max`, `Comm.all_min`,
`Comm.all_gather_objects`; `global_topk`; `gumbel_topk`, `bernoulli`, `sample_with_replacement`,
`inclusion_probabilities`; `sharded_knn`; `kmeans_parallel_init`, `sharded_kmeans`; `gram`; and the
start-up checks `check_same_config`, `check_same_pool`, `check_world`; moving rows between ranks:
`checked_rows`, `gather_rows`, `fetch_rows`, `reshard`.
"""

from selectkit.distributed.collectives import (
    DEFAULT_TIMEOUT_S,
    CollectiveError,
    Comm,
    TopK,
    check_same_config,
    check_same_pool,
    config_digest,
    global_topk,
    gram,
    init_process_group,
)
from selectkit.distributed.keyed import key_generator, keyed_gumbel, keyed_uniform, subkey
from selectkit.distributed.kmeans import ParallelInit, ShardedKMeansResult, kmeans_parallel_init, sharded_kmeans, weighted_kmeanspp
from selectkit.distributed.knn import sharded_knn
from selectkit.distributed.sampling import bernoulli, gumbel_topk, inclusion_probabilities, sample_with_replacement
from selectkit.distributed.rows import checked_rows, fetch_rows, gather_rows, reshard
from selectkit.distributed.shard import DEFAULT_BLOCK_ROWS, ShardedArray, ShardLayout, check_world

__all__ = [
    "DEFAULT_BLOCK_ROWS",
    "DEFAULT_TIMEOUT_S",
    "CollectiveError",
    "Comm",
    "ParallelInit",
    "ShardLayout",
    "ShardedArray",
    "ShardedKMeansResult",
    "TopK",
    "bernoulli",
    "check_same_config",
    "check_same_pool",
    "check_world",
    "checked_rows",
    "config_digest",
    "fetch_rows",
    "gather_rows",
    "global_topk",
    "gram",
    "gumbel_topk",
    "inclusion_probabilities",
    "init_process_group",
    "key_generator",
    "keyed_gumbel",
    "keyed_uniform",
    "kmeans_parallel_init",
    "reshard",
    "sample_with_replacement",
    "sharded_kmeans",
    "sharded_knn",
    "subkey",
    "weighted_kmeanspp",
]
