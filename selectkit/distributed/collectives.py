"""`Comm`: the collectives selection runs on, and the only selection code that calls torch.distributed.

Every collective takes and returns numpy arrays; bytes travel as uint8 tensors (on the current CUDA
device under NCCL, on CPU under gloo). At world size 1 nothing here touches torch.distributed, so no
process group is needed.

Bytes sent per rank are stated in each docstring for the usual algorithms (ring all-gather and
all-reduce, pairwise all-to-all, pipelined broadcast), with ``W`` the world size and ``b`` the bytes
of one rank's input; `Comm.bytes_sent` adds them up per call (a model of the traffic, not a reading of
the network).

Failures: a peer that dies, or does not answer within the process group's timeout, makes the collective
raise `CollectiveError`, one line naming ``distributed.timeout_s``. The timeout of the default process
group is fixed when it is created (``init_process_group(timeout=...)``): `init_process_group` here
creates it from ``timeout_s``; under a launcher that created it already (Lightning DDP), ``Comm(timeout_s)``
runs on a group of its own with that timeout (made once per timeout, at the same point on every rank).
Under NCCL a timed-out collective is reported by torch's watchdog, which may end the process itself.

Input checks that depend on one rank's data are agreed first (`Comm.agree`): when any rank finds bad
input, every rank raises the same error, instead of the others waiting in the next collective.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import zlib
from datetime import timedelta
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from selectkit.distributed.shard import ShardedArray, ShardLayout, canonical_nodes, is_count, tree_depth, tree_value
from selectkit.errors import ConfigError, SelectkitError

#: The default of ``distributed.timeout_s`` (torch's own default process-group timeout).
DEFAULT_TIMEOUT_S = 1800.0
#: Reductions whose gathered partials stay below this many bytes per rank are combined whole on every
#: rank (one all-gather); larger ones are cut into ``W`` slices, each combined on one rank (all-to-all).
SMALL_REDUCE_BYTES = 1 << 16
_HEADER = 10
_groups: dict[tuple[int, float], Any] = {}


class CollectiveError(SelectkitError, RuntimeError):
    """A collective failed: a peer rank died, or did not answer within ``distributed.timeout_s``."""


def _check_timeout(timeout_s: Any) -> float:
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
        raise ConfigError(f"distributed.timeout_s={timeout_s!r} must be a positive number of seconds")
    return float(timeout_s)


def _dist() -> Any:
    """torch.distributed when a process group is up, else None (imports torch only then)."""
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def init_process_group(
    backend: str | None = None,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    init_method: str | None = None,
    world_size: int | None = None,
    rank: int | None = None,
) -> "Comm":
    """Create the default process group with ``timeout_s`` as its timeout and return its `Comm`.

    ``backend`` defaults to NCCL when CUDA is available, else gloo; under NCCL the process binds
    ``cuda:LOCAL_RANK`` first. ``init_method``, ``world_size`` and ``rank`` default to torchrun's
    environment (``env://``).
    """
    import torch
    import torch.distributed as dist

    timeout_s = _check_timeout(timeout_s)
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    extra = {k: v for k, v in (("world_size", world_size), ("rank", rank)) if v is not None}
    dist.init_process_group(backend, init_method=init_method, timeout=timedelta(seconds=timeout_s), **extra)
    return Comm(timeout_s, group=dist.group.WORLD)


def _group_with_timeout(dist: Any, timeout_s: float) -> Any:
    """A group of every rank whose collectives time out after ``timeout_s`` (one per timeout)."""
    key = (id(dist.group.WORLD), timeout_s)
    if key not in _groups:
        _groups[key] = dist.new_group(timeout=timedelta(seconds=timeout_s))
    return _groups[key]


def _first_line(err: BaseException) -> str:
    line = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return re.sub(r"^\[[^\]]*\]\s*", "", line)


class Comm:
    """The ranks of a selection: ``world``, ``rank``, and the collectives they run together.

    Args:
        timeout_s: ``distributed.timeout_s``: seconds a collective may wait for a peer. None uses the
            default group as it is (its timeout was set by whoever created it); a number runs on a
            group of every rank with that timeout (`init_process_group` makes the default group with it).
        group: the process group to run on (None: the default group, or the timeout's own group).
        alone: a world of one whatever process group exists (`alone`).

    Outside a process group, or in a world of one, ``world == 1`` and every collective returns its
    input without calling torch.distributed.
    """

    def __init__(self, timeout_s: float | None = None, group: Any = None, *, alone: bool = False) -> None:
        self.timeout_s = None if timeout_s is None else _check_timeout(timeout_s)
        self.bytes_sent = 0
        self.world, self.rank, self.group, self.backend = 1, 0, None, "none"
        dist = None if alone else _dist()
        if dist is None or dist.get_world_size() == 1:
            return
        if group is None and self.timeout_s is not None:
            group = _group_with_timeout(dist, self.timeout_s)
        self._dist = dist
        self.group = group
        self.world = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        self.backend = str(dist.get_backend(group))

    @classmethod
    def alone(cls) -> "Comm":
        """A world of one (this process by itself), even inside a process group: for data it holds whole."""
        return cls(alone=True)

    @property
    def device(self) -> Any:
        """Where tensors go for the backend: the current CUDA device under NCCL, else the CPU."""
        import torch

        return torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else torch.device("cpu")

    def __repr__(self) -> str:
        return f"Comm(world={self.world}, rank={self.rank}, backend={self.backend!r}, timeout_s={self.timeout_s})"

    def layout(self, n: int, block_rows: int | None = None) -> ShardLayout:
        """This rank's `ShardLayout` of an ``n``-row pool (``block_rows`` None: the default)."""
        if block_rows is None:
            return ShardLayout(int(n), self.world, self.rank)
        return ShardLayout(int(n), self.world, self.rank, block_rows)

    def check_layout(self, layout: ShardLayout) -> None:
        """A layout made for another world or rank is a programming error: ValueError."""
        if (layout.world, layout.rank) != (self.world, self.rank):
            raise ValueError(f"layout for rank {layout.rank} of {layout.world} used on rank {self.rank} of {self.world}")

    # transport ------------------------------------------------------------------------------------

    def _run(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except RuntimeError as err:  # DistBackendError, gloo's timeouts and closed connections
            limit = "the process group's timeout" if self.timeout_s is None else f"{self.timeout_s:g} s"
            raise CollectiveError(
                f"distributed: {what} failed on rank {self.rank} of {self.world} ({_first_line(err)}): a rank died or did not "
                f"answer within distributed.timeout_s ({limit}); check the other ranks' logs, or raise distributed.timeout_s "
                "if a rank is only slow"
            ) from None

    def _tensor(self, raw: np.ndarray) -> Any:
        import torch

        t = torch.from_numpy(raw if raw.flags.writeable else raw.copy())
        return t.to(self.device) if self.backend == "nccl" else t

    def _gather_equal(self, raw: np.ndarray, what: str) -> np.ndarray:
        """All ranks' equal-length uint8 vectors, stacked ``[W, len]`` in rank order."""
        t = self._tensor(raw)
        out = [t.new_empty(t.shape) for _ in range(self.world)]
        self._run(what, lambda: self._dist.all_gather(out, t, group=self.group))
        self.bytes_sent += (self.world - 1) * raw.nbytes
        return np.stack([o.cpu().numpy() for o in out])

    def _headers(self, x: np.ndarray, what: str) -> np.ndarray:
        """Every rank's ``[rows, nbytes, itemsize, dtype crc, ndim, trailing dims...]`` (int64 ``[W, 10]``)."""
        if x.ndim > _HEADER - 4:
            raise ValueError(f"{what}: arrays of more than {_HEADER - 4} dimensions are not supported")
        head = np.zeros(_HEADER, dtype=np.int64)
        head[:5] = (x.shape[0], x.nbytes, x.dtype.itemsize, zlib.crc32(x.dtype.str.encode()), x.ndim)
        head[5 : 4 + x.ndim] = x.shape[1:]
        heads = self._gather_equal(head.view(np.uint8), what).view(np.int64).reshape(self.world, _HEADER)
        if (heads[:, 2:] != heads[0, 2:]).any():
            raise ValueError(f"{what}: ranks passed arrays of different dtypes or row shapes ({heads[:, 2:].tolist()})")
        return heads

    def _padded(self, x: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
        """Every rank's header, and ``x``'s bytes padded to the largest rank's."""
        heads = self._headers(x, what)
        raw = np.zeros(int(heads[:, 1].max()), dtype=np.uint8)
        raw[: x.nbytes] = x.reshape(-1).view(np.uint8)
        return heads, raw

    @staticmethod
    def _unpadded(buffers: Sequence[np.ndarray], heads: np.ndarray, like: np.ndarray) -> list[np.ndarray]:
        """The ranks' arrays back from their padded bytes (``like``: this rank's, for dtype and row shape)."""
        return [
            np.frombuffer(np.asarray(buf)[: head[1]].tobytes(), dtype=like.dtype).reshape(int(head[0]), *like.shape[1:])
            for buf, head in zip(buffers, heads)
        ]

    def all_gather(self, x: np.ndarray, what: str = "all_gather") -> list[np.ndarray]:
        """Every rank's array (rows may differ; dtype and row shape must not), in rank order.

        Bytes sent per rank: ``(W - 1) * max_r b_r`` (padded to the largest), plus ``80 (W - 1)`` of header.
        """
        if np.ndim(x) == 0:
            raise ValueError(f"{what}: pass at least a 1-D array (np.atleast_1d)")
        x = np.ascontiguousarray(x)
        if self.world == 1:
            return [x]
        heads, raw = self._padded(x, what)
        return self._unpadded(self._gather_equal(raw, what), heads, x)

    def gather(self, x: np.ndarray, dst: int, what: str = "gather") -> list[np.ndarray] | None:
        """Every rank's array on rank ``dst`` (None elsewhere), in rank order.

        Bytes sent per rank (not ``dst``): ``max_r b_r`` (padded), plus ``80 (W - 1)`` of header.
        """
        x = np.ascontiguousarray(x)
        if self.world == 1:
            return [x]
        heads, raw = self._padded(x, what)
        t = self._tensor(raw)
        out = [t.new_empty(t.shape) for _ in range(self.world)] if self.rank == dst else None
        self._run(what, lambda: self._dist.gather(t, out, dst=dst, group=self.group))
        if self.rank != dst:
            self.bytes_sent += raw.nbytes
            return None
        return self._unpadded([o.cpu().numpy() for o in out], heads, x)

    def broadcast(self, x: np.ndarray | None, src: int, what: str = "broadcast") -> np.ndarray:
        """Rank ``src``'s array on every rank (the others pass None).

        Bytes sent per rank: at most ``b`` (pipelined), plus a pickled shape and dtype.
        """
        if x is not None:
            x = np.asarray(x)
            x = x if x.flags.c_contiguous else np.ascontiguousarray(x)
        if self.world == 1:
            return x
        spec = [None]
        if self.rank == src:
            spec = [(x.shape, x.dtype.str)]
        self._run(what, lambda: self._dist.broadcast_object_list(spec, src=src, group=self.group))
        shape, dtype = spec[0]
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        raw = x.reshape(-1).view(np.uint8) if self.rank == src else np.empty(nbytes, dtype=np.uint8)
        t = self._tensor(raw)
        self._run(what, lambda: self._dist.broadcast(t, src=src, group=self.group))
        self.bytes_sent += nbytes
        return x if self.rank == src else np.frombuffer(t.cpu().numpy().tobytes(), dtype=dtype).reshape(shape)

    def all_to_all(self, pieces: Sequence[np.ndarray], what: str = "all_to_all") -> list[np.ndarray]:
        """``pieces[j]`` (1-D, one dtype) goes to rank ``j``; returns what each rank sent here, in rank order.

        Bytes sent per rank: ``sum_{j != rank} |pieces[j]|``, plus ``8 W (W - 1)`` of sizes.
        """
        if len(pieces) != self.world:
            raise ValueError(f"{what}: {len(pieces)} pieces for a world of {self.world}")
        pieces = [np.ascontiguousarray(p).reshape(-1) for p in pieces]
        if self.world == 1:
            return pieces
        dtype = pieces[0].dtype
        sizes = np.array([p.nbytes for p in pieces], dtype=np.int64)
        table = self._gather_equal(sizes.view(np.uint8), what).view(np.int64).reshape(self.world, self.world)
        incoming = table[:, self.rank]
        send = self._tensor(np.concatenate([p.view(np.uint8) for p in pieces]))
        recv = send.new_empty((int(incoming.sum()),))
        self._run(
            what,
            lambda: self._dist.all_to_all_single(recv, send, incoming.tolist(), sizes.tolist(), group=self.group),
        )
        self.bytes_sent += int(sizes.sum() - sizes[self.rank])
        raw = recv.cpu().numpy()
        cuts = np.concatenate([[0], np.cumsum(incoming)])
        return [np.frombuffer(raw[cuts[r] : cuts[r + 1]].tobytes(), dtype=dtype) for r in range(self.world)]

    def all_gather_objects(self, obj: Any, what: str = "all_gather_objects") -> list[Any]:
        """Every rank's picklable ``obj``, in rank order (for small things: digests, errors, sizes).

        Bytes sent per rank: ``(W - 1)`` times the largest pickle, plus its size.
        """
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        self._run(what, lambda: self._dist.all_gather_object(out, obj, group=self.group))
        self.bytes_sent += (self.world - 1) * len(pickle.dumps(obj))
        return out

    def barrier(self, what: str = "barrier") -> None:
        """Wait for every rank (an empty all-gather, so it honours the timeout under gloo too)."""
        if self.world > 1:
            self._gather_equal(np.zeros(1, dtype=np.uint8), what)

    def agree(self, error: BaseException | None, what: str = "input check") -> None:
        """Raise on every rank when any rank found an error: the lowest failing rank's error, as it is.

        Call it after a local check, with the exception it raised or None. Bytes sent per rank:
        ``(W - 1)`` times the largest pickled error.
        """
        if self.world == 1:
            if error is not None:
                raise error
            return
        errors = self.all_gather_objects(error, what)
        first = next((r for r, e in enumerate(errors) if e is not None), None)
        if first is None:
            return
        if first == self.rank:
            raise error  # type: ignore[misc]
        raise errors[first]

    def checked(self, fn: Callable[[], Any], what: str = "input check") -> Any:
        """``fn()`` run locally, its ValueError (ConfigError included) agreed over the ranks (`agree`)."""
        try:
            out, error = fn(), None
        except ValueError as err:
            out, error = None, err
        self.agree(error, what)
        return out

    # reductions -----------------------------------------------------------------------------------

    def all_max(self, x: Any) -> np.ndarray:
        """Element-wise maximum over ranks (exact, order-free). Bytes per rank: ``2 (W - 1) / W * b``."""
        return self._native_reduce(x, "MAX")

    def all_min(self, x: Any) -> np.ndarray:
        """Element-wise minimum over ranks (exact, order-free). Bytes per rank: ``2 (W - 1) / W * b``."""
        return self._native_reduce(x, "MIN")

    def _native_reduce(self, x: Any, op: str) -> np.ndarray:
        x = np.asarray(x)
        wide = np.array(x, dtype=np.int64 if x.dtype.kind in "biu" else np.float64)
        if self.world == 1:
            return wide
        t = self._tensor(wide.reshape(-1).copy())
        self._run(f"all_{op.lower()}", lambda: self._dist.all_reduce(t, op=getattr(self._dist.ReduceOp, op), group=self.group))
        self.bytes_sent += 2 * (self.world - 1) * wide.nbytes // self.world
        return t.cpu().numpy().reshape(wide.shape)

    def all_sum(self, x: Any) -> np.ndarray:
        """Element-wise sum over ranks, the same on every rank: int64 for integers (exact), float64 for
        floats added in rank order (``((x_0 + x_1) + x_2) + ...``), whatever order the ranks arrive in.

        Deterministic at a given world size, not across world sizes (use `block_sum` for that).
        Bytes sent per rank: ``2 (W - 1) / W * 8 s`` for ``s`` elements (a reduce-scatter by all-to-all,
        each slice added in rank order on one rank, then an all-gather of the slices).
        """
        x = np.asarray(x)
        if x.dtype.kind in "biu":
            if self.world == 1:
                return x.astype(np.int64)
            return self._native_reduce(x, "SUM")
        x = np.array(x, dtype=np.float64)
        if self.world == 1:
            return x

        def in_rank_order(parts: list[np.ndarray]) -> np.ndarray:
            total = parts[0][0].copy()
            for p in parts[1:]:
                total += p[0]
            return total

        return self._combine([x.reshape(-1)], [1] * self.world, x.size, in_rank_order, "all_sum").reshape(x.shape)

    def block_sum(self, partials: Any, layout: ShardLayout, shape: Sequence[int] | None = None) -> np.ndarray:
        """The float64 sum of per-block partials along the fixed tree over block ids: bit for bit the
        same at every world size (see `selectkit.distributed.shard`).

        ``partials`` is an array ``[blocks this rank owns, *shape]`` (in block order), or a function of
        a global block id returning that block's partial (then give ``shape``; it is called once per
        local block, and at most ``log2`` partials are alive at a time). Every rank gets the sum.

        Bytes sent per rank: with ``c_r <= 2 log2(B_r) + 2`` tree nodes for the ``B_r`` blocks rank ``r``
        owns and ``s`` elements per partial, ``(W - 1) / W * 8 s c_r + (W - 1) * 8 ceil(s / W)``; below
        `SMALL_REDUCE_BYTES` one all-gather, ``(W - 1) * 8 s max_r c_r``.
        """
        self.check_layout(layout)
        if callable(partials):
            if shape is None:
                raise ValueError("block_sum with a function of the block id needs the partials' shape")
            shape, leaf = tuple(shape), partials
        else:
            arr = np.asarray(partials)
            if arr.shape[0] != len(layout.blocks):
                raise ValueError(f"block_sum: {arr.shape[0]} partials for the {len(layout.blocks)} blocks this rank owns")
            shape, first = arr.shape[1:], layout.blocks.start
            leaf = lambda b: arr[b - first]  # noqa: E731
        size = int(np.prod(shape, dtype=np.int64))
        blocks = layout.n_blocks

        def value(level: int, index: int) -> np.ndarray:
            out = tree_value(level, index, blocks, leaf=lambda b: np.asarray(leaf(b), dtype=np.float64).reshape(-1))
            if out.shape != (size,):
                raise ValueError(f"block_sum: a partial has {out.size} elements, expected shape {shape}")
            return out

        mine = [value(lv, ix) for lv, ix in canonical_nodes(layout.blocks.start, layout.blocks.stop, blocks)]
        if self.world == 1:
            return mine[0].reshape(shape)
        keys = [canonical_nodes(layout.blocks_of(r).start, layout.blocks_of(r).stop, blocks) for r in range(self.world)]

        def along_tree(parts: list[np.ndarray]) -> np.ndarray:
            known = {key: part[i] for keys_r, part in zip(keys, parts) for i, key in enumerate(keys_r)}
            return tree_value(tree_depth(blocks), 0, blocks, known=known)

        return self._combine(mine, [len(k) for k in keys], size, along_tree, "block_sum").reshape(shape)

    def _combine(
        self, mine: list[np.ndarray], counts: list[int], size: int, combine: Callable[[list[np.ndarray]], np.ndarray], what: str
    ) -> np.ndarray:
        """Reduce every rank's ``counts[r]`` float64 vectors of ``size`` with ``combine`` (a function of
        the ranks' ``[counts[r], m]`` stacks, element-wise): whole on every rank when small, else slice
        by slice, one slice per rank, and the slices gathered."""
        stack = np.stack(mine) if mine else np.zeros((0, size))
        if 8 * size * max(counts) * self.world <= SMALL_REDUCE_BYTES:
            parts = self.all_gather(stack, what)
            return combine([p.reshape(c, size) for p, c in zip(parts, counts)])
        bounds = [j * size // self.world for j in range(self.world + 1)]
        pieces = [stack[:, bounds[j] : bounds[j + 1]] for j in range(self.world)]
        width = bounds[self.rank + 1] - bounds[self.rank]
        got = self.all_to_all(pieces, what)
        mine_slice = combine([g.reshape(c, width) for g, c in zip(got, counts)])
        return np.concatenate(self.all_gather(np.ascontiguousarray(mine_slice, dtype=np.float64), what))


class TopK(NamedTuple):
    """The global top-k: ``scores`` float64 ``[k']``, ``ids`` int64 ``[k']`` best first (``k' = min(k,
    items)``), and ``payload``, the rows given with each item (dict of arrays, empty when none)."""

    scores: np.ndarray
    ids: np.ndarray
    payload: dict[str, np.ndarray]


def global_topk(
    comm: Comm, scores: Any, ids: Any, k: int, *, largest: bool = True, payload: dict[str, np.ndarray] | None = None
) -> TopK:
    """The ``k`` best items over every rank's ``(scores, ids)``, ties broken by the lowest global id:
    exact and the same at every world size. Every rank gets the result.

    ``ids`` are the items' global ids (distinct over ranks); ``payload`` maps names to per-item arrays
    (``[n_local, ...]``) that travel with the winners (their rows, labels). NaN scores are refused.
    Each rank sends only its own top ``k``: bytes sent per rank ``(W - 1) * k * (16 + p)`` for ``p``
    payload bytes per item.
    """
    payload = payload or {}

    def local() -> np.ndarray:
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        i = np.asarray(ids, dtype=np.int64).reshape(-1)
        if not is_count(k):
            raise ValueError(f"global_topk: k={k!r} must be a non-negative integer")
        if s.shape != i.shape or any(np.shape(v)[:1] != s.shape for v in payload.values()):
            raise ValueError(f"global_topk: {s.size} scores, {i.size} ids and payload rows {[np.shape(v)[:1] for v in payload.values()]} differ")
        if np.isnan(s).any():
            raise ValueError(f"global_topk: {int(np.isnan(s).sum())} scores are NaN (first at id {int(i[np.isnan(s)][0])})")
        key = -s if largest else s
        cand = np.arange(s.size)
        if s.size > k:
            cand = np.flatnonzero(key <= np.partition(key, k - 1)[k - 1]) if k else cand[:0]
        best = cand[np.lexsort((i[cand], key[cand]))][:k]
        fields = [("key", "f8"), ("id", "i8")] + [(n, np.asarray(v).dtype, np.shape(v)[1:]) for n, v in payload.items()]
        rec = np.empty(best.size, dtype=fields)
        rec["key"], rec["id"] = key[best], i[best]
        for name, v in payload.items():
            rec[name] = np.asarray(v)[best]
        return rec

    rec = comm.checked(local, "global_topk")
    merged = np.concatenate(comm.all_gather(rec, "global_topk"))
    top = merged[np.lexsort((merged["id"], merged["key"]))][:k]
    out_scores = -top["key"] if largest else top["key"].copy()
    return TopK(out_scores, top["id"].copy(), {name: top[name].copy() for name in payload})


def gram(comm: Comm, x: ShardedArray, chunk_rows: int = 8192) -> np.ndarray:
    """``X^T X`` of the whole pool in float64, bit for bit the same at every world size.

    Each block's ``X_b^T X_b`` is summed over chunks of ``chunk_rows`` rows (float64 products), and the
    blocks along the fixed tree (`Comm.block_sum`); equal results assume the same BLAS and thread
    setting on every rank. Memory: one float64 chunk (``chunk_rows * d * 8``) and ``log2`` partials
    of ``d^2``. Bytes sent per rank: those of `Comm.block_sum` with ``s = d^2``.
    """
    d = int(x.local.shape[1])

    def partial(b: int) -> np.ndarray:
        rows = x.block(b)
        out = np.zeros((d, d))
        for start in range(0, rows.shape[0], chunk_rows):
            chunk = np.asarray(rows[start : start + chunk_rows], dtype=np.float64)
            out += chunk.T @ chunk
        return out

    return comm.block_sum(partial, x.layout, shape=(d, d))


def config_digest(obj: Any) -> str:
    """A sha256 hex digest of a plain config (dicts, lists, scalars; keys sorted, others by ``repr``)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=repr).encode()).hexdigest()


def _differences(values: list[Any]) -> str:
    groups: dict[str, list[int]] = {}
    for r, v in enumerate(values):
        groups.setdefault(str(v), []).append(r)
    return "; ".join(f"rank{'s' if len(rs) > 1 else ''} {','.join(map(str, rs))}: {v[:16]}" for v, rs in groups.items())


def check_same_config(comm: Comm, digest: str, what: str) -> None:
    """Compare ``digest`` (of the setting named ``what``) over the ranks; when they differ raise
    `ConfigError` on every rank, naming the ranks and ``what``. Bytes per rank: ``(W - 1)`` digests."""
    digests = comm.all_gather_objects(str(digest), f"check_same_config({what})")
    if len(set(digests)) > 1:
        raise ConfigError(f"{what} differs between ranks ({_differences(digests)}): start every rank with the same {what}")


def check_same_pool(comm: Comm, n: int, digest: str, what: str = "the pool file") -> None:
    """Compare the pool's size ``n`` and content ``digest`` over the ranks; when they differ raise
    `ConfigError` on every rank naming the ranks and ``what`` (the setting that points at the pool)."""
    seen = comm.all_gather_objects((int(n), str(digest)), f"check_same_pool({what})")
    if len({s[0] for s in seen}) > 1:
        raise ConfigError(f"{what} differs between ranks in size ({_differences([s[0] for s in seen])}): point every rank at the same pool")
    if len({s[1] for s in seen}) > 1:
        raise ConfigError(f"{what} differs between ranks in content ({_differences([s[1] for s in seen])}): point every rank at the same pool")
