"""The neighbour layer: memory-bounded kNN and k-means, shared by every selector.

Engines (``NeighborConfig.engine``): with ``'auto'`` (the default), exact (``flat``) and IVF search on
CPU run on the layer's own engine, cache-sized matrix-product tiles scanned by a compiled top-k
kernel (`selectkit.neighbors.flat`, `selectkit.neighbors.ivf`); HNSW and everything on a GPU run on
FAISS indexes. ``engine='faiss'`` uses FAISS's indexes for every backend.

Queries are processed in blocks and each block's results are merged into a bounded ``[nq, k]``
result, so no ``N x N`` matrix is ever built. Every entry point estimates its peak memory first and
refuses work above ``NeighborConfig.memory_cap_gb`` with `MemoryCapExceeded`.

Distance convention (what `knn` and `NeighborIndex.search` return):

* ``metric='l2'``: squared Euclidean distance, smallest first;
* ``metric='ip'``: inner product, largest first;
* ``metric='cosine'``: cosine similarity, largest first (zero vectors have similarity 0 to everything).

Tie rule: every row is sorted by (returned score, index), equal scores by ascending index. The
returned score of a pair is computed by one function from the float32 inputs (float64 sums,
`selectkit.neighbors.rescore`), whichever path found the pair (self-join, plain exact search, the
bfloat16 pass, IVF, FAISS), so neither a pair's score nor the order of equal scores depends on the
path or on the BLAS kernel. Identical base rows enter a row by ascending index, at the ``k``-th
place too. Otherwise which points make the ``k`` is decided by the engine's float32 products (the
layer's engines give exact ties there to the smaller index; the bfloat16 pass selects by the
returned score itself), so two exact paths can disagree at the ``k``-th place only between distinct
points whose scores lie within float32 rounding of each other.

`NeighborIndex.kneighbors` follows scikit-learn instead (Euclidean distance, ``1 - cosine``,
``-inner product``: smaller is closer) so it can stand wherever scikit-learn or imbalanced-learn
accept a neighbours object.

Threads: the layer's engine runs as many worker threads as ``torch.get_num_threads()``, each with
single-threaded matrix products; for the duration of a search it sets torch's thread count to 1 and
restores it afterwards, so do not run other torch work in parallel threads of the same process
meanwhile. `kmeans` on CPU runs its Lloyd iterations on numba's threads instead, as many as
torch's setting and never more than numba's own (``numba.set_num_threads``), with the BLAS held at
one thread meanwhile (IVF training runs the same loop). FAISS keeps its own setting
(``faiss.omp_set_num_threads``). Do not call the layer from forked DataLoader workers: FAISS's
OpenMP pool can hang after ``fork``. Compute neighbours in the main process.
"""

from selectkit.neighbors.config import NeighborConfig
from selectkit.neighbors.kmeans import KMeansResult, kmeans
from selectkit.neighbors.memory import MemoryCapExceeded, estimate_memory_bytes
from selectkit.neighbors.search import NeighborIndex, knn

__all__ = ["KMeansResult", "MemoryCapExceeded", "NeighborConfig", "NeighborIndex", "estimate_memory_bytes", "kmeans", "knn"]
