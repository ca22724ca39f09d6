"""Input coercion at the layer's boundary: 2-D float32 C-contiguous finite arrays, and a valid ``k``."""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit


def shape_of(x: Any, name: str) -> tuple[int, int]:
    """``(n, d)`` of a 2-D array-like, read without copying arrays and tensors."""
    shape = getattr(x, "shape", None)
    if shape is None:
        try:
            shape = np.shape(x)
        except ValueError as err:
            raise ValueError(f"{name} is not a rectangular array ({err})") from None
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2:
        hint = "; use x.reshape(-1, 1) for a single feature" if len(shape) == 1 else ""
        raise ValueError(f"{name} must be 2-D [n_samples, n_features], got shape {shape}{hint}")
    if shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"{name} has shape {shape}; it needs at least one row and one feature")
    return shape  # type: ignore[return-value]


def as_float32(x: Any, name: str) -> np.ndarray:
    """``x`` as a finite float32 C-contiguous 2-D array (a copy only when needed)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        if arr.dtype.kind == "O":
            try:
                arr = arr.astype(np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"{name} holds non-numeric values (dtype object); pass numeric features") from None
        else:
            raise ValueError(f"{name} holds non-numeric values (dtype {arr.dtype}); pass numeric features")
    shape_of(arr, name)
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(out.sum(dtype=np.float64)):
        bad = ~np.isfinite(out)
        if bad.any():
            what = "NaN" if np.isnan(out).any() else "infinite (or beyond float32 range)"
            row = int(np.flatnonzero(bad.any(axis=1))[0])
            raise ValueError(f"{name} contains {what} values (first in row {row}); clean or impute them first")
    return out


def normalized(x: np.ndarray) -> np.ndarray:
    """L2-normalised float32 copy of the rows of ``x`` (norms summed in float64); zero rows stay zero.

    One pass over ``x`` on the layer's worker threads, a block of rows at a time.
    """
    from selectkit.neighbors.flat import each_row_block

    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty_like(x)
    each_row_block(x.shape[0], 16_384, lambda i, j: _normalize_rows(x[i:j], out[i:j]))
    return out


@njit(nogil=True, cache=True)
def _normalize_rows(x: np.ndarray, out: np.ndarray) -> None:
    """``out[i] = x[i] / |x[i]|`` (``|x[i]|`` summed in float64, rounded to float32; a zero row is copied as it is)."""
    for i in range(x.shape[0]):
        s = 0.0
        for j in range(x.shape[1]):
            v = np.float64(x[i, j])
            s += v * v
        norm = np.float32(np.sqrt(s)) if s > 0 else np.float32(1.0)
        for j in range(x.shape[1]):
            out[i, j] = x[i, j] / norm


def l2_shift(base: np.ndarray) -> np.ndarray | None:
    """The float32 mean of ``base``'s rows when L2 search should run on rows centred on it, else None.

    Exact L2 search ranks by ``q . x - |x|^2 / 2`` in float32, whose rounding grows with ``|x| |q|``: on
    data far from the origin against its spread (features such as a year, or raw counts) it can
    misrank almost every neighbour. Distances do not change under a shift, so the layer centres base
    and queries on the base mean whenever the mean carries more of the rows' squared norm than their
    spread does (``|mean|^2 > mean |x - mean|^2``), which at least halves that rounding. Sums are
    float64, in one pass.
    """
    n = base.shape[0]
    if n == 0:
        return None
    total, squares = _moments(base)
    mean = total / n
    offset = float(mean @ mean)
    spread = squares / n - offset
    return mean.astype(np.float32) if offset > spread else None


@njit(nogil=True, cache=True)
def _moments(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Column sums and the sum of squares of ``x``, in float64."""
    total = np.zeros(x.shape[1], dtype=np.float64)
    squares = np.zeros(x.shape[1], dtype=np.float64)  # per column, so that the row loop vectorises
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            v = np.float64(x[i, j])
            total[j] += v
            squares[j] += v * v
    return total, squares.sum()


def shifted(x: np.ndarray, shift: np.ndarray, in_place: bool = False) -> np.ndarray:
    """``x - shift`` row by row in float32, on the layer's worker threads (into ``x`` when ``in_place``)."""
    from selectkit.neighbors.flat import each_row_block

    out = x if in_place else np.empty_like(x)
    each_row_block(x.shape[0], 16_384, lambda i, j: np.subtract(x[i:j], shift, out=out[i:j]))
    return out


def shares_input(arr: np.ndarray, source: Any) -> bool:
    """Whether ``arr`` may be (a view of) the caller's ``source``, which the layer must then not write."""
    if hasattr(source, "detach") and hasattr(source, "cpu"):
        source = source.detach().cpu().numpy()
    if isinstance(source, np.ndarray):
        return bool(np.shares_memory(arr, source))
    return not isinstance(source, (list, tuple))  # other containers (frames, ...) may hand out their own buffer


def check_k(k: Any, n_base: int, exclude_self: bool) -> int:
    """``k`` as an int in ``[1, n_base]`` (``n_base - 1`` when each query's own point is excluded)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k={k!r} must be a positive integer")
    k = int(k)
    available = n_base - 1 if exclude_self else n_base
    if k < 1:
        raise ValueError(f"k={k} must be at least 1")
    if k > available:
        extra = " other" if exclude_self else ""
        raise ValueError(f"k={k} exceeds the {available}{extra} base points available; lower k")
    return k


def check_dims(d_base: int, d_query: int) -> None:
    """Queries and base must have the same number of features."""
    if d_base != d_query:
        raise ValueError(f"queries have {d_query} features but the base has {d_base}; pass queries in the base's feature space")
