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

#: Ratings per step of the chunked passes: bounds their temporaries (a few MB).
_CHUNK = 1 << 18


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
                    n_blocks: int, rng: np.random.Generator, *,
                    chunk: int = _CHUNK) -> BlockLayout:
    """Lay ratings out for :func:`~matfact._kernels.sgd.sgd_epoch`.

    Users and items are renumbered so that each block's rows and columns are
    contiguous in the factor matrices, and the ratings are ordered by block,
    then by user, in a random order within a user. Sequential user rows and
    a compact item range per block keep memory access prefetch-friendly.

    ``order`` is int32 below 2³¹ ratings (int64 above) and is the caller's to
    overwrite: :class:`~matfact.BiasedMF` turns it into its kernel-order user
    array in place. ``chunk`` bounds the per-rating temporaries (a memory knob;
    the result does not depend on it).

    Returns
    -------
    BlockLayout
    """
    user_position, user_bounds = _block_layout(n_users, n_blocks, rng)
    item_position, item_bounds = _block_layout(n_items, n_blocks, rng)
    n = len(users)
    # The order is that of this formula (tests/models/test_layout.py), computed in chunks
    # with two int32 arrays per rating at the peak, the shuffle and the order, instead of
    # its full-length int64 temporaries (docs/reliability.md, "Peak memory of a fit"):
    #   row = searchsorted(user_bounds, user_position[users], "right") - 1 (col alike)
    #   block = row * n_blocks + col
    #   shuffled = rng.permutation(len(users))
    #   key = (block * n_users + user_position[users])[shuffled]
    #   order = shuffled[argsort(key, kind="stable")]
    # i.e. by (block, renumbered user), ties in shuffled order. The ratings are first
    # dealt, in shuffled order, into buckets of consecutive keys (blocks, each cut into
    # ranges of its users so that a bucket is small), then each run of buckets is
    # sorted by key on its own; stable sorts keep the shuffled order of ties.
    user_row = np.searchsorted(user_bounds, user_position, side="right") - 1
    item_col = np.searchsorted(item_bounds, item_position, side="right") - 1
    n_cells = n_blocks * n_blocks
    block_ptr = np.zeros(n_cells + 1, dtype=np.int64)
    # Cut each block's users into `pieces` ranges: about 256 buckets in all at least.
    pieces = -(-256 // n_cells)
    group_size = np.maximum(np.diff(user_bounds), 1)[user_row]
    user_piece = (user_position - user_bounds[user_row]) * pieces // group_size
    n_buckets = n_cells * pieces
    bucket_dtype = np.min_scalar_type(max(n_buckets - 1, 0))
    user_bucket = (user_row * (n_blocks * pieces) + user_piece).astype(np.int64)
    item_bucket = (item_col * pieces).astype(np.int64)
    narrow_users = np.int32 if n_users < 2**31 else np.int64
    rank_of_user = user_position.astype(narrow_users)

    def buckets(user_codes: np.ndarray, item_codes: np.ndarray) -> np.ndarray:
        return (user_bucket[user_codes] + item_bucket[item_codes]).astype(bucket_dtype)

    bucket_count = np.zeros(n_buckets, dtype=np.int64)
    for start in range(0, n, chunk):
        bucket_count += np.bincount(buckets(users[start:start + chunk],
                                            items[start:start + chunk]), minlength=n_buckets)
    block_ptr[1:] = np.cumsum(bucket_count.reshape(n_cells, pieces).sum(axis=1))
    bucket_ptr = np.zeros(n_buckets + 1, dtype=np.int64)
    np.cumsum(bucket_count, out=bucket_ptr[1:])
    # Deal the shuffled positions into their buckets, keeping the shuffled order.
    index_dtype = np.int32 if n < 2**31 else np.int64
    # rng.permutation(n), drawn into the narrow type directly: the same shuffle.
    shuffled = np.arange(n, dtype=index_dtype)
    rng.shuffle(shuffled)
    order = np.empty(n, dtype=index_dtype)
    next_free = bucket_ptr[:-1].copy()
    for start in range(0, n, chunk):
        part = shuffled[start:start + chunk]
        bucket = buckets(users[part], items[part])
        ranks = np.argsort(bucket, kind="stable")
        bucket = bucket[ranks]
        counts = np.bincount(bucket, minlength=n_buckets)
        first = np.cumsum(counts) - counts  # where each bucket starts in the sorted part
        order[next_free[bucket] + (np.arange(len(part)) - first[bucket])] = part[ranks]
        next_free += counts
    del shuffled
    # Sort runs of whole buckets (at most `chunk` ratings, or one bucket) by key.
    first_bucket = 0
    while first_bucket < n_buckets:
        start = bucket_ptr[first_bucket]
        end_bucket = max(int(np.searchsorted(bucket_ptr, start + chunk, side="right")) - 1,
                         first_bucket + 1)
        stop = bucket_ptr[end_bucket]
        if stop - start > 1:
            part = order[start:stop]
            key = (user_row[users[part]] * n_blocks + item_col[items[part]]) * n_users
            key += rank_of_user[users[part]]
            part[...] = part[np.argsort(key, kind="stable")]
        first_bucket = end_bucket
    return BlockLayout(order, block_ptr, user_position, item_position, item_bounds)
