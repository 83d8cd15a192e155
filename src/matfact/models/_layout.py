"""Block layouts for the deterministic parallel SGD schedule (DSGD / FPSGD).

Users and items are dealt into ``n_blocks`` random groups each; ratings are
ordered block by block so that the kernels can process the B blocks of a
stratum (no shared user or item) in parallel, with identical results for any
thread count.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["BlockLayout", "blocked_ratings"]


class BlockLayout(NamedTuple):
    """Where each rating, user and item goes in the block schedule."""

    order: np.ndarray  #: positions of the ratings in kernel order
    block_ptr: np.ndarray  #: start of each (row group, column group) block
    user_position: np.ndarray  #: user → renumbered row
    item_position: np.ndarray  #: item → renumbered row
    item_bounds: np.ndarray  #: item group g owns renumbered items bounds[g]:bounds[g+1]


def _block_layout(n: int, n_blocks: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Assign rows to ``n_blocks`` random groups, laid out group after group.

    Returns ``position`` (row → position in the grouped layout) and ``bounds``
    (group g owns positions ``bounds[g]:bounds[g+1]``).
    """
    group = rng.permutation(n).astype(np.int64) % n_blocks
    layout = np.argsort(group, kind="stable")
    position = np.empty(n, dtype=np.int64)
    position[layout] = np.arange(n)
    bounds = np.zeros(n_blocks + 1, dtype=np.int64)
    np.cumsum(np.bincount(group, minlength=n_blocks), out=bounds[1:])
    return position, bounds


def blocked_ratings(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int,
                     n_blocks: int, rng: np.random.Generator) -> BlockLayout:
    """Lay ratings out for :func:`~matfact._kernels.sgd.sgd_epoch`.

    Users and items are renumbered so that each block's rows and columns are
    contiguous in the factor matrices, and the ratings are ordered by block,
    then by user, in a random order within a user. Sequential user rows and
    a compact item range per block keep memory access prefetch-friendly.

    Returns
    -------
    BlockLayout
    """
    user_position, user_bounds = _block_layout(n_users, n_blocks, rng)
    item_position, item_bounds = _block_layout(n_items, n_blocks, rng)
    # Memory matters at tens of millions of ratings: groups are looked up per user and
    # per item (not per rating), and the per-rating arrays are as narrow as their
    # values allow and freed as soon as they are used (peak about 20 bytes per rating,
    # was 56; measured by benchmarks/soak.py). The result is the same as
    #   row = searchsorted(user_bounds, user_position[users], "right") - 1 (col alike)
    #   key = ((row * n_blocks + col) * n_users + user_position[users])[shuffled]
    #   order = shuffled[argsort(key, kind="stable")]
    narrow = np.int32 if n_blocks * n_blocks * max(n_users, 1) < 2**31 else np.int64
    user_row = (np.searchsorted(user_bounds, user_position, side="right") - 1).astype(narrow)
    item_col = (np.searchsorted(item_bounds, item_position, side="right") - 1).astype(narrow)
    block = user_row[users]
    block *= n_blocks
    block += item_col[items]
    block_ptr = np.zeros(n_blocks * n_blocks + 1, dtype=np.int64)
    np.cumsum(np.bincount(block, minlength=n_blocks * n_blocks), out=block_ptr[1:])
    shuffled = rng.permutation(len(users))
    if len(users) < 2**31:
        shuffled = shuffled.astype(np.int32)  # the same positions, half the bytes
    key = block[shuffled]
    del block
    key *= n_users
    key += user_position.astype(narrow)[users[shuffled]]
    ranks = np.argsort(key, kind="stable")
    del key
    order = shuffled[ranks]
    return BlockLayout(order, block_ptr, user_position, item_position, item_bounds)
