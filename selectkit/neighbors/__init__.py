"""The neighbour layer: memory-bounded kNN and k-means on FAISS, shared by every selector.

Queries are processed in blocks and each block's results are merged into a bounded ``[nq, k]``
result, so no ``N x N`` matrix is ever built. Every entry point estimates its peak memory first and
refuses work above ``NeighborConfig.memory_cap_gb`` with `MemoryCapExceeded`.

Distance convention (what `knn` and `NeighborIndex.search` return):

* ``metric='l2'``: squared Euclidean distance, smallest first;
* ``metric='ip'``: inner product, largest first;
* ``metric='cosine'``: cosine similarity, largest first (zero vectors have similarity 0 to everything).

`NeighborIndex.kneighbors` follows scikit-learn instead (Euclidean distance, ``1 - cosine``,
``-inner product``: smaller is closer) so it can stand wherever scikit-learn or imbalanced-learn
accept a neighbours object.

FAISS and torch keep their own thread settings (``faiss.omp_set_num_threads``,
``torch.set_num_threads``); this layer never changes them. Do not call it from forked DataLoader
workers: FAISS's OpenMP pool can hang after ``fork``. Compute neighbours in the main process.
"""

from selectkit.neighbors.config import NeighborConfig
from selectkit.neighbors.kmeans import kmeans
from selectkit.neighbors.memory import MemoryCapExceeded, estimate_memory_bytes
from selectkit.neighbors.search import NeighborIndex, knn

__all__ = ["MemoryCapExceeded", "NeighborConfig", "NeighborIndex", "estimate_memory_bytes", "kmeans", "knn"]
