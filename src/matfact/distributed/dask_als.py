r"""ALS and implicit ALS on a Dask cluster: :class:`DaskALS`, :class:`DaskImplicitALS`.

The ratings are repartitioned once into **user blocks** and **item blocks** (contiguous
ranges of user / item indices, balanced by number of ratings), as Spark's block ALS does.
Each block is a CSR matrix of its rows kept on the workers as a Dask future computed from
the input's task graph, so a block lost with its worker is recomputed from the source
(the Parquet/CSV partitions, or the in-memory frame). The driver keeps both factor
matrices. One half-step (say, users) then

1. computes the Gram matrix :math:`Y^\top Y` of the full item factors on the driver with
   :func:`~matfact._linalg.gram64` (implicit feedback only), as the local model does;
2. sends each user block the item rows it needs, :math:`Y[\text{needed}_b]`
   (``transfer="rows"``), or the whole of :math:`Y` to every worker
   (``transfer="broadcast"``: the driver sends it once, the workers copy it among
   themselves), whichever is fewer bytes on the busiest link;
3. solves every row of every block with the local model's own public half-step
   (:meth:`ALS.half_step <matfact.ALS.half_step>`: :func:`~matfact._kernels.als.solve_rows`;
   :meth:`ImplicitALS.half_step <matfact.ImplicitALS.half_step>`:
   :func:`~matfact._kernels.als.implicit_cg` or
   :func:`~matfact._kernels.als.implicit_cholesky`), on the worker's threads;
4. gathers the blocks' new rows into the driver's user factors.

Rows are independent given the other side, so the factors equal those of the local fit
from the same seed (the same initialisation code runs on the driver) up to the order of
floating-point sums. A task whose worker dies is retried: Dask recomputes lost blocks from
the graph, and the driver re-sends factor rows that were lost with the worker.

Bytes per iteration (float32 factors, ``k`` factors, ``W`` workers, blocks
:math:`b` with :math:`|\text{needed}_b|` distinct other-side rows) are worked out in
``docs/distributed.md``.
"""

from __future__ import annotations

import threading
import time
import warnings
from concurrent.futures import CancelledError
from typing import Any, ClassVar, NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp

from matfact._kernels.als import implicit_loss
from matfact._linalg import forget_gram, gram64
from matfact._params import check_random_state, validate_params
from matfact._threads import numba_threads
from matfact.data.interactions import IdIndex, Interactions, normalize_ids
from matfact.exceptions import DataError, MatfactError, NotFittedError, ParameterError
from matfact.models.als import ALS, ImplicitALS

__all__ = ["DaskALS", "DaskImplicitALS", "evaluate_ranking", "fit_on_cluster",
           "DaskNotInstalledError"]

_EMPTY = np.zeros(0, dtype=np.float32)
_TRANSFERS = ("auto", "rows", "broadcast")
#: Attempts of one half-step whose tasks were cancelled because a worker died.
_ATTEMPTS = 5
#: Attempts (and the pause between them) to scatter factor rows while a dead worker is
#: still listed by the scheduler.
_SCATTER_ATTEMPTS = 20
_SCATTER_PAUSE_S = 0.5
#: One kernel at a time per worker process: it already runs on all the worker's threads,
#: and numba's default (workqueue) threading layer must not be entered concurrently.
_KERNEL_LOCK = threading.Lock()


class DaskNotInstalledError(MatfactError, ImportError):
    """Dask (with ``distributed`` and ``dask.dataframe``) is needed and missing."""


def _require_dask() -> None:
    try:
        import dask  # noqa: F401
        import dask.dataframe  # noqa: F401

        import distributed  # noqa: F401
    except ImportError as err:
        raise DaskNotInstalledError(
            f"matfact.distributed needs Dask with its distributed scheduler and DataFrames "
            f"({err}); install them with: pip install 'dask[distributed,dataframe]'"
        ) from None


def _client(client: Any) -> Any:
    """``client``, else the current default :class:`distributed.Client`."""
    _require_dask()
    from distributed import Client, get_client

    if client is None:
        try:
            return get_client()
        except ValueError:
            raise ParameterError(
                "no Dask client: pass client=distributed.Client('tcp://scheduler:8786') (or a "
                "LocalCluster's client) to fit, or create one first"
            ) from None
    if not isinstance(client, Client):
        raise ParameterError(f"client must be a distributed.Client, got {type(client).__name__}")
    return client


def _is_dask_frame(data: Any) -> bool:
    try:
        import dask.dataframe as dd
    except ImportError:
        return False
    return isinstance(data, dd.DataFrame)


# ------------------------------------------------------------------------------------ blocks
class _Block(NamedTuple):
    """The ratings of rows ``lo:hi`` of one side, as CSR over the rows they need.

    ``indices`` are positions in ``needed`` (the sorted distinct other-side indices the
    block refers to), so the kernels read ``other[needed]`` and the driver sends only
    those rows. Entries are sorted by row, then by other-side index, as in the local
    model's CSR matrices, so every row sums in the same order.
    """

    lo: int
    hi: int
    indptr: np.ndarray  #: int64, (hi - lo + 1,)
    indices: np.ndarray  #: int32 positions in ``needed``
    values: np.ndarray  #: float32 ratings (explicit) or weights (implicit)
    weights: np.ndarray  #: float32 sample weights, or empty
    needed: np.ndarray  #: int64 sorted other-side indices


def _codes(index: IdIndex | None, raw: np.ndarray, what: str) -> np.ndarray:
    if index is None:  # already dense indices (from an Interactions)
        return raw.astype(np.int64, copy=False)
    codes = index.get_indexer(normalize_ids(raw, what))
    if (codes < 0).any():
        raise DataError(f"{what} ids changed while the data was read twice (an id absent from "
                        f"the first pass); do not modify the input during fit")
    return codes


def _column_values(frame: pd.DataFrame, column: str | None, what: str, *, positive: bool,
                   nonnegative: bool) -> np.ndarray | None:
    if column is None:
        return None
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        raise DataError(f"{int(bad.sum())} NaN, infinite or non-numeric {what} in column "
                        f"{column!r}; drop or fill them first")
    if positive and (values <= 0).any():
        raise DataError(f"{what} in column {column!r} must be > 0 for implicit feedback; "
                        f"drop non-interactions instead of giving them weight 0")
    if nonnegative and (values < 0).any():
        raise DataError(f"sample weights in column {column!r} must be ≥ 0")
    return values


def _frame_stats(frame: pd.DataFrame, columns: tuple, implicit: bool) -> dict[str, Any]:
    """First pass over one partition: its distinct ids with counts, and value sums."""
    user, item, rating, weight = columns
    for column, what in ((user, "user"), (item, "item")):
        if frame[column].isna().any():
            raise DataError(f"missing {what} ids in column {column!r}; drop those rows first")
    users, user_counts = np.unique(normalize_ids(frame[user].to_numpy(), "user"),
                                   return_counts=True)
    items, item_counts = np.unique(normalize_ids(frame[item].to_numpy(), "item"),
                                   return_counts=True)
    ratings = _column_values(frame, None if implicit else rating, "ratings", positive=False,
                             nonnegative=False)
    weights = _column_values(frame, weight, "weights" if implicit else "sample weights",
                             positive=implicit, nonnegative=not implicit)
    out: dict[str, Any] = {"users": users, "user_counts": user_counts, "items": items,
                           "item_counts": item_counts, "n": len(frame)}
    if ratings is not None and len(ratings):
        r32 = ratings.astype(np.float32).astype(np.float64)  # the stored precision
        out.update(rating_sum=float(r32.sum()), rating_min=float(r32.min()),
                   rating_max=float(r32.max()))
        if weights is not None:
            w32 = weights.astype(np.float32).astype(np.float64)
            out.update(weight_sum=float(w32.sum()), weighted_sum=float(np.dot(w32, r32)))
    return out


def _split(frame: pd.DataFrame, columns: tuple, implicit: bool, user_index: IdIndex | None,
           item_index: IdIndex | None, user_bounds: np.ndarray,
           item_bounds: np.ndarray) -> tuple:
    """Cut one partition into its pieces for every user block, then every item block."""
    user, item, rating, weight = columns
    users = _codes(user_index, frame[user].to_numpy(), "user")
    items = _codes(item_index, frame[item].to_numpy(), "item")
    values = _column_values(frame, weight if implicit else rating,
                            "weights" if implicit else "ratings", positive=implicit,
                            nonnegative=False)
    values = (np.ones(len(frame), np.float32) if values is None else values.astype(np.float32))
    weights = None if implicit else _column_values(frame, weight, "sample weights",
                                                   positive=False, nonnegative=True)
    if weights is not None:
        weights = weights.astype(np.float32)
    pieces = []
    for rows, cols, bounds in ((users, items, user_bounds), (items, users, item_bounds)):
        block = np.searchsorted(bounds, rows, side="right") - 1
        order = np.argsort(block, kind="stable")
        cuts = np.searchsorted(block[order], np.arange(len(bounds)))
        for b in range(len(bounds) - 1):
            take = order[cuts[b]:cuts[b + 1]]
            pieces.append((rows[take], cols[take], values[take],
                           None if weights is None else weights[take]))
    return tuple(pieces)


def _build(lo: int, hi: int, side: str, *pieces: tuple) -> _Block:
    """One block's CSR from its pieces of every partition."""
    rows = np.concatenate([p[0] for p in pieces]) - lo
    cols = np.concatenate([p[1] for p in pieces])
    values = np.concatenate([p[2] for p in pieces])
    weighted = pieces[0][3] is not None
    needed, local = np.unique(cols, return_inverse=True)
    local = local.reshape(-1)
    order = np.lexsort((local, rows))
    rows, local, values = rows[order], local[order], values[order]
    repeated = (rows[1:] == rows[:-1]) & (local[1:] == local[:-1])
    if repeated.any():
        raise DataError(f"{int(repeated.sum())} repeated (user, item) pair(s) among {side}s "
                        f"{lo}..{hi - 1}; aggregate them first, e.g. "
                        f"ddf.groupby(['user', 'item']).rating.last().reset_index()")
    indptr = np.zeros(hi - lo + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=hi - lo), out=indptr[1:])
    weights = (np.concatenate([p[3] for p in pieces])[order].astype(np.float32) if weighted
               else _EMPTY)
    return _Block(lo, hi, indptr, local.astype(np.int32), values.astype(np.float32), weights,
                  needed.astype(np.int64))


def _block_sizes(block: _Block) -> tuple[int, int]:
    return len(block.needed), len(block.values)


def _block_needed(block: _Block) -> np.ndarray:
    return block.needed


def _block_csr(block: _Block) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The block's rows with other-side indices (for the driver's ``seen_``)."""
    return block.indptr, block.needed[block.indices].astype(np.int32), block.values


def _bounds(counts: np.ndarray, n_blocks: int) -> np.ndarray:
    """Contiguous row ranges with about equal numbers of ratings each."""
    n = len(counts)
    cumulative = np.cumsum(counts, dtype=np.float64)
    targets = cumulative[-1] * np.arange(1, n_blocks) / n_blocks
    cuts = np.searchsorted(cumulative, targets, side="left") + 1
    return np.unique(np.concatenate([[0], np.clip(cuts, 1, n), [n]])).astype(np.int64)


# ------------------------------------------------------------------------------------ solving
class _GivenGram(ImplicitALS):
    """:class:`ImplicitALS` whose Gram matrix is the driver's, computed on all rows.

    A block sees only the rows it needs; ``YᵀY + λI`` must be of the whole matrix.
    """

    given_gram_: np.ndarray  # float64

    def _gram64(self, factors: np.ndarray) -> np.ndarray:
        return self.given_gram_


def _worker_threads() -> int:
    from distributed import get_worker

    try:
        return int(get_worker().state.nthreads)
    except (ValueError, AttributeError):  # run outside a worker (tests of the function)
        return 1


def _solve_block(block: _Block, shared: Any, local: tuple, spec: dict,
                 previous: tuple | None = None) -> tuple:
    """One block's half-step on a worker; returns (factors, bias, loss term).

    ``previous`` is this block's result of the last half-step of its side, kept on the
    worker: CG warm-starts from its rows, which the driver then need not send.
    """
    other, other_bias, own = local
    if previous is not None:
        own = previous[0]
    if shared is not None:  # broadcast: the full other side, read through `needed`
        if len(block.needed) == len(shared[0]):  # sorted, distinct: every row, in order
            other, other_bias = shared
        else:
            other = shared[0][block.needed]
            other_bias = shared[1][block.needed] if len(shared[1]) else _EMPTY
    model = spec["model"]
    n = block.hi - block.lo
    with _KERNEL_LOCK, numba_threads(_worker_threads()):
        if isinstance(model, ImplicitALS):
            out = np.array(own, dtype=np.float32, order="C", copy=True) if own is not None \
                else np.zeros((n, model.n_factors), np.float32)
            conf = model.confidence_of(block.values)
            model.half_step((block.indptr, block.indices, conf), other, out)
            loss = 0.0
            if spec["loss"]:
                # Σ c (p − x·y)² over the block's rows and every column (symmetric in
                # users and items), plus the block's confidences for the normalizer.
                loss = implicit_loss(block.indptr, block.indices, conf, out, other,
                                     spec["plain_gram"])
            return out, None, (loss, float(conf.sum(dtype=np.float64)))
        out = np.zeros((n, model.n_factors), np.float32)
        out_bias = np.zeros(n if model.biased else 0, np.float32)
        model.half_step((block.indptr, block.indices, block.values), block.weights, other,
                        other_bias, out, out_bias)
        sse = 0.0
        if spec["loss"]:
            # This is the item half-step: rows are items, `other` the users they need.
            model.user_factors_, model.item_factors_ = other, out
            model.user_bias_, model.item_bias_ = (other_bias, out_bias) if model.biased \
                else (None, None)
            items = np.repeat(np.arange(n, dtype=np.int32), np.diff(block.indptr))
            sse = model.squared_error(block.indices, items, block.values.astype(np.float64),
                                      block.weights.astype(np.float64) if len(block.weights)
                                      else None)
        return out, (out_bias if model.biased else None), (sse, 0.0)


class _Plan:
    """The blocks of one fit on the cluster and how factors travel to them."""

    def __init__(self, client: Any, user_blocks: list, item_blocks: list,
                 user_bounds: np.ndarray, item_bounds: np.ndarray, transfer: str) -> None:
        self.client = client
        self.blocks = {"user": user_blocks, "item": item_blocks}
        self.bounds = {"user": user_bounds, "item": item_bounds}
        n_workers = max(1, len(client.scheduler_info()["workers"]))
        sizes = client.gather(client.map(_block_sizes, user_blocks + item_blocks, pure=False))
        n_other = {"user": int(item_bounds[-1]), "item": int(user_bounds[-1])}
        self.transfer: dict[str, str] = {}
        self.needed: dict[str, list | None] = {}
        self.rows_sent: dict[str, int] = {}  # rows received by the workers per half-step
        self.driver_rows: dict[str, int] = {}  # of which the driver sends
        for side, part in (("user", sizes[:len(user_blocks)]),
                           ("item", sizes[len(user_blocks):])):
            rows = sum(s[0] for s in part)
            broadcast = min(n_workers, len(part)) * n_other[side]
            # "rows" sends Σ|needed_b| rows out of the driver, each worker receiving its
            # blocks' share; "broadcast" sends the matrix out of the driver once and the
            # workers copy it among themselves (a tree): about 2 n_other on the busiest
            # link. Rows win when Σ|needed_b| (1 + 1/W) ≤ 2 n_other.
            cheaper = rows * (1 + 1 / n_workers) <= 2 * n_other[side]
            mode = transfer if transfer != "auto" else ("rows" if cheaper else "broadcast")
            self.transfer[side] = mode
            self.rows_sent[side] = rows if mode == "rows" else broadcast
            self.driver_rows[side] = rows if mode == "rows" else n_other[side]
            self.needed[side] = (client.gather(client.map(_block_needed, self.blocks[side],
                                                          pure=False))
                                 if mode == "rows" else None)
        self.nnz = sum(s[1] for s in sizes[:len(user_blocks)])
        #: Each block's last result future (kept on its worker for CG's warm start).
        self.last: dict[str, list] = {side: [None] * len(self.blocks[side])
                                      for side in ("user", "item")}

    def release(self) -> None:
        for side in ("user", "item"):
            for future in self.blocks[side] + [f for f in self.last[side] if f is not None]:
                future.release()

    def half_step(self, side: str, other: np.ndarray, other_bias: np.ndarray,
                  own: np.ndarray | None, out: np.ndarray, out_bias: np.ndarray | None,
                  spec: dict) -> tuple[float, float]:
        """Solve every block of ``side``; write the rows into ``out``; sum the loss terms."""
        pending = list(range(len(self.blocks[side])))
        totals = [0.0, 0.0]
        last = self.last[side]
        for attempt in range(_ATTEMPTS):
            # CG's warm start: the block's last result where it is kept, else (first
            # iteration, or a retry after a worker died) its rows from the driver.
            previous = [last[b] if own is not None and attempt == 0 else None
                        for b in pending]
            futures = self._submit(side, pending, other, other_bias, own, spec, previous)
            failed = []
            for b, future, result in zip(pending, futures, self._results(futures),
                                         strict=True):
                if result is None:  # its factor rows were lost with a worker: re-send
                    failed.append(b)
                    last[b] = None
                    continue
                last[b] = future if own is not None else None
                rows, bias, loss = result
                lo, hi = self.bounds[side][b], self.bounds[side][b + 1]
                out[lo:hi] = rows
                forget_gram(out)  # written in place: a Gram kept for fold-in is stale
                if bias is not None:
                    out_bias[lo:hi] = bias
                totals[0] += loss[0]
                totals[1] += loss[1]
            if not failed:
                return totals[0], totals[1]
            pending = failed
        raise MatfactError(f"the {side} half-step failed {_ATTEMPTS} times: workers keep "
                           f"dying (see the scheduler's log)")

    def _results(self, futures: list) -> list:
        """Each future's result, or None if it was cancelled (a worker died); errors raise."""
        from distributed import wait

        try:
            wait(futures)
        except CancelledError:
            pass
        for future in futures:
            if future.status == "error":
                future.result()  # raises the task's exception
        try:
            # One bulk transfer: the blocks' rows come back from every worker at once.
            return self.client.gather(futures)
        except (CancelledError, OSError):  # a worker died meanwhile: sort out which
            results = []
            for future in futures:
                try:
                    results.append(future.result())
                except (CancelledError, OSError):
                    results.append(None)
            return results

    def _scatter(self, payloads: list, workers: list | None = None,
                 broadcast: bool = False) -> list:
        """``client.scatter``, retried while the scheduler still lists a dead worker."""
        for attempt in range(_SCATTER_ATTEMPTS):
            try:
                return self.client.scatter(payloads, workers=workers, broadcast=broadcast,
                                           hash=False)
            except (OSError, TimeoutError):  # CommClosedError is an OSError
                if attempt == _SCATTER_ATTEMPTS - 1:
                    raise
                # A worker died and the scheduler has not noticed yet: let it notice,
                # then let Dask place the data anywhere.
                time.sleep(_SCATTER_PAUSE_S)
                workers = None
        raise AssertionError("unreachable")

    def _submit(self, side: str, pending: list[int], other: np.ndarray, other_bias: np.ndarray,
                own: np.ndarray | None, spec: dict, previous: list) -> list:
        client = self.client
        blocks = self.blocks[side]
        bounds = self.bounds[side]
        shared = None
        if self.transfer[side] == "broadcast":
            shared = self._scatter([(other, other_bias)], broadcast=True)[0]
        # Send each block's rows to the worker that holds the block.
        sending = shared is None or (own is not None and None in previous)
        where = client.who_has([blocks[b] for b in pending]) if sending else {}
        groups: dict[str | None, list[int]] = {}
        for b in pending:
            holders = where.get(blocks[b].key) or ()
            groups.setdefault(holders[0] if holders else None, []).append(b)
        local: dict[int, Any] = {}
        for worker, members in groups.items():
            send, payloads = [], []
            for b in members:
                mine = (None if own is None or previous[pending.index(b)] is not None
                        else own[bounds[b]:bounds[b + 1]])
                if shared is None:
                    needed = self.needed[side][b]
                    payloads.append((other[needed],
                                     other_bias[needed] if len(other_bias) else _EMPTY, mine))
                elif mine is not None:
                    payloads.append((None, None, mine))
                else:  # nothing of the block's own to send: no scatter round trip
                    local[b] = (None, None, None)
                    continue
                send.append(b)
            if send:
                futures = self._scatter(payloads, None if worker is None else [worker])
                local.update(zip(send, futures, strict=True))
        return [client.submit(_solve_block, blocks[b], shared, local[b], spec, prev,
                              pure=False)
                for b, prev in zip(pending, previous, strict=True)]


# ------------------------------------------------------------------------------------ fitting
class _DaskFit:
    """What :class:`DaskALS` and :class:`DaskImplicitALS` share: input, blocks, iterations."""

    _local_class: ClassVar[type]
    #: The running fit's cluster settings (``None`` outside ``fit``: partial_fit is local).
    _dask: dict | None = None
    #: The last fit's transfer modes and bytes (for the docs and the benchmark).
    transfer_: dict | None = None

    def fit(self, data: Any, *, client: Any = None, validation: Interactions | None = None,
            progress: bool | str | None = None, callback: Any = None, user: str = "user",
            item: str = "item",
            rating: str | None = "rating", weight: str | None = None, n_blocks: int | None = None,
            transfer: str = "auto") -> Any:
        """Fit on a Dask cluster; the fitted state is the local model's.

        Parameters
        ----------
        data : dask.dataframe.DataFrame or Interactions
            One interaction per row. A Dask DataFrame (e.g. ``dd.read_parquet(...)``) is
            read twice on the workers (ids and counts, then the blocks) and never
            gathered whole, except for the seen-items matrix the fitted model keeps.
        client : distributed.Client, default=None
            The cluster; by default the current client.
        validation, progress, callback
            As in :meth:`ALS.fit <matfact.ALS.fit>`.
        user, item, rating, weight : str
            Column names of a Dask DataFrame. ``rating`` is ignored by implicit
            models; ``weight`` is the implicit weight (default 1) or the explicit
            sample weight (default none).
        n_blocks : int, default=None
            User blocks and item blocks (each); default: the cluster's worker threads.
        transfer : {"auto", "rows", "broadcast"}, default="auto"
            Send each block the factor rows it needs (all from the driver), or
            broadcast the whole matrix (the driver sends it once, the workers copy it
            among themselves); ``"auto"`` picks, per side, the fewer bytes on the
            busiest link: rows when ``Σ_b |needed_b| (1 + 1/W) ≤ 2 n_other``
            (see ``docs/distributed.md``).

        Returns
        -------
        self
        """
        if transfer not in _TRANSFERS:
            raise ParameterError(f"transfer must be one of {_TRANSFERS}, got {transfer!r}")
        if n_blocks is not None and (isinstance(n_blocks, bool)
                                     or not isinstance(n_blocks, (int, np.integer))
                                     or n_blocks < 1):
            raise ParameterError(f"n_blocks must be an integer ≥ 1 or None, got {n_blocks!r}")
        client = _client(client)
        if n_blocks is None:
            n_blocks = max(1, sum(client.nthreads().values()))
        self._dask = {"client": client, "n_blocks": int(n_blocks), "transfer": transfer}
        try:
            if isinstance(data, Interactions):
                # The local fit, with _train running on the cluster.
                return self._local_class.fit(self, data, validation=validation,
                                             progress=progress, callback=callback)
            if _is_dask_frame(data):
                return self._fit_frame(data, (user, item, rating, weight), validation,
                                       progress, callback)
            raise DataError(f"fit data must be a dask.dataframe.DataFrame or a matfact."
                            f"Interactions, got {type(data).__name__}")
        finally:
            self._dask = None

    def to_local(self) -> Any:
        """A plain :class:`~matfact.ALS` / :class:`~matfact.ImplicitALS` with this state."""
        local = self._local_class(**self.get_params())
        for name, value in vars(self).items():
            if name.endswith("_") and not name.startswith("_") and name != "transfer_":
                setattr(local, name, value)
        return local

    def save(self, path: Any) -> None:
        """Save as the local class, so :func:`matfact.load` needs no Dask."""
        self.to_local().save(path)

    @classmethod
    def load(cls, path: Any) -> Any:
        """Read a model :meth:`save` wrote: the plain local class (``ALS`` / ``ImplicitALS``).

        A Dask model is saved as its local class, so this is ``ALS.load`` (or
        ``ImplicitALS.load``): ``DaskALS.load(path)`` reads what ``DaskALS.save`` wrote.
        """
        return cls._local_class.load(path)

    # -- input ------------------------------------------------------------------------
    def _interactions_frame(self, data: Interactions) -> Any:
        """The (already indexed) interactions as a Dask DataFrame of codes."""
        import dask.dataframe as dd

        implicit = isinstance(self, ImplicitALS)
        frame = pd.DataFrame({"user": data.user_codes, "item": data.item_codes,
                              "value": data.values})
        if not implicit and data.has_weights:
            frame["weight"] = data.weights
        n_parts = max(1, min(self._dask["n_blocks"], len(frame)))
        columns = ("user", "item", None if implicit else "value",
                   "value" if implicit else ("weight" if data.has_weights else None))
        return dd.from_pandas(frame, npartitions=n_parts, sort=False), columns

    def _fit_frame(self, ddf: Any, columns: tuple, validation: Any, progress: bool,
                   callback: Any) -> Any:
        import dask

        validate_params(self)
        implicit = isinstance(self, ImplicitALS)
        user, item, rating, weight = columns
        wanted = [c for c in (user, item, None if implicit else rating, weight) if c is not None]
        if not implicit and rating is None:
            raise ParameterError(f"{type(self).__name__} learns from explicit ratings: give the "
                                 f"rating column (rating=...)")
        missing = [c for c in wanted if c not in ddf.columns]
        if missing:
            raise DataError(f"missing column(s) {missing}; the data has columns "
                            f"{list(map(str, ddf.columns))}")
        if self.time_decay is not None:
            raise ParameterError(f"{type(self).__name__}: time_decay needs timestamps, which "
                                 f"a Dask DataFrame input does not carry; fit on an "
                                 f"Interactions, or set time_decay=None")
        if callback is not None and not callable(callback):
            raise ParameterError(f"callback must be callable, got {callback!r}")
        if validation is not None:
            self._check_interactions(validation, "validation")
        client = self._dask["client"]
        parts = ddf[wanted].to_delayed()
        stats = client.gather(client.compute(
            [dask.delayed(_frame_stats, pure=True)(p, columns, implicit) for p in parts]))
        stats = [s for s in stats if s["n"]]
        if not stats:
            raise DataError("no interactions: the data is empty")
        user_index, user_counts = _merge_counts([s["users"] for s in stats],
                                                [s["user_counts"] for s in stats], "user")
        item_index, item_counts = _merge_counts([s["items"] for s in stats],
                                                [s["item_counts"] for s in stats], "item")
        self._clear_fitted_state()
        self._callback = callback
        try:
            self.user_index_, self.item_index_ = user_index, item_index
            self.is_implicit_ = implicit
            self.rating_scale_ = None if implicit else (
                min(s["rating_min"] for s in stats), max(s["rating_max"] for s in stats))
            self.item_titles_ = None
            self._init_state(len(user_index), len(item_index), stats, weight is not None)
            plan = self._plan(parts, columns, user_index, item_index, user_counts, item_counts)
            try:
                self._iterate(plan, validation, progress, self.max_iter)
                self.seen_ = _gather_seen(plan, len(user_index), len(item_index))
            finally:
                plan.release()
        except BaseException:
            self._clear_fitted_state()
            raise
        finally:
            self._callback = None
        return self

    def _plan(self, parts: list, columns: tuple, user_index: IdIndex | None,
              item_index: IdIndex | None, user_counts: np.ndarray,
              item_counts: np.ndarray) -> _Plan:
        """Repartition ``parts`` into user and item blocks, computed and kept on the workers."""
        import dask

        client, n_blocks = self._dask["client"], self._dask["n_blocks"]
        implicit = isinstance(self, ImplicitALS)
        user_bounds = _bounds(user_counts, n_blocks)
        item_bounds = _bounds(item_counts, n_blocks)
        n_user_blocks, n_item_blocks = len(user_bounds) - 1, len(item_bounds) - 1
        indexes = (dask.delayed(user_index, pure=True), dask.delayed(item_index, pure=True))
        splits = [dask.delayed(_split, nout=n_user_blocks + n_item_blocks, pure=True)(
            p, columns, implicit, *indexes, user_bounds, item_bounds) for p in parts]
        # Deal the blocks round-robin to the workers (each side on its own), so every
        # worker solves its share; the solve tasks then run where their block is. The
        # placement is a preference: a block lost with its worker is rebuilt elsewhere.
        workers = sorted(client.scheduler_info()["workers"])
        builders = []
        for side, bounds, offset in (("user", user_bounds, 0),
                                     ("item", item_bounds, n_user_blocks)):
            for b in range(len(bounds) - 1):
                with dask.annotate(workers=[workers[b % len(workers)]],
                                   allow_other_workers=True):
                    builders.append(dask.delayed(_build, pure=True)(
                        int(bounds[b]), int(bounds[b + 1]), side,
                        *[s[offset + b] for s in splits]))
        with warnings.catch_warnings():
            # An Interactions' arrays are in the graph (so Dask can rebuild a lost block);
            # that is the point, not a mistake to warn about.
            warnings.filterwarnings("ignore", message="Sending large graph",
                                    category=UserWarning)
            futures = client.compute(builders, optimize_graph=False)
        return _Plan(client, futures[:n_user_blocks], futures[n_user_blocks:], user_bounds,
                     item_bounds, self._dask["transfer"])

    def _iterate(self, plan: _Plan, validation: Any, progress: bool, n_iter: int) -> None:
        raise NotImplementedError

    def _record_transfer(self, plan: _Plan) -> None:
        """Rows and bytes sent per iteration, as in ``docs/distributed.md``.

        Steady state: CG's warm-start rows go out in the first iteration only.
        """
        n_rows = int(plan.bounds["user"][-1]) + int(plan.bounds["item"][-1])
        # float32 factors, plus the float32 bias of each row for biased ALS
        row_bytes = 4 * self.n_factors + (4 if getattr(self, "biased", False) else 0)
        self.transfer_ = {
            "mode": dict(plan.transfer),
            "blocks": {side: len(plan.blocks[side]) for side in ("user", "item")},
            "rows_to_blocks": dict(plan.rows_sent),
            "bytes_to_workers": row_bytes * (plan.rows_sent["user"] + plan.rows_sent["item"]),
            "bytes_from_driver": row_bytes * (plan.driver_rows["user"]
                                              + plan.driver_rows["item"]),
            "bytes_from_workers": row_bytes * n_rows,
        }

    def _train_on_cluster(self, data: Interactions, validation: Any, progress: bool,
                          n_iter: int) -> None:
        """The local ``_train`` (after the local ``_fit`` initialised), on the cluster."""
        ddf, columns = self._interactions_frame(data)
        plan = self._plan(ddf.to_delayed(), columns, None, None,
                          np.bincount(data.user_codes, minlength=data.n_users),
                          np.bincount(data.item_codes, minlength=data.n_items))
        try:
            self._iterate(plan, validation, progress, n_iter)
        finally:
            plan.release()


def _merge_counts(ids: list[np.ndarray], counts: list[np.ndarray],
                  what: str) -> tuple[IdIndex, np.ndarray]:
    """One sorted vocabulary (as :meth:`IdIndex.from_values`) and each id's total count."""
    index, codes = IdIndex.from_values(np.concatenate(ids), what)
    total = np.bincount(codes, weights=np.concatenate(counts), minlength=len(index))
    return index, total.astype(np.int64)


def _gather_seen(plan: _Plan, n_users: int, n_items: int) -> sp.csr_matrix:
    """The users × items matrix of the training values, from the user blocks."""
    client = plan.client
    parts = client.gather(client.map(_block_csr, plan.blocks["user"], pure=False))
    indptr = [np.zeros(1, np.int64)]
    offset = 0
    for part in parts:
        indptr.append(part[0][1:] + offset)
        offset += int(part[0][-1])
    matrix = sp.csr_matrix((np.concatenate([p[2] for p in parts]),
                            np.concatenate([p[1] for p in parts]), np.concatenate(indptr)),
                           shape=(n_users, n_items))
    matrix.has_sorted_indices = True
    return matrix


class DaskALS(_DaskFit, ALS):
    r""":class:`~matfact.ALS` fitted on a Dask cluster (``dask.distributed``).

    The same model, parameters and result as :class:`~matfact.ALS`: from the same
    ``random_state`` the factors equal the local fit's (up to float summation order).
    :meth:`fit` takes a Dask DataFrame (columns ``user``, ``item``, ``rating`` and an
    optional sample ``weight``) or an :class:`~matfact.Interactions`, and a
    :class:`distributed.Client`; see the module docstring for the algorithm.

    Everything after ``fit`` is local: inference, :meth:`save` (which writes a plain
    ``ALS``, loaded by :func:`matfact.load` without Dask), :meth:`partial_fit`.
    :meth:`to_local` returns the plain :class:`~matfact.ALS`. The workers' own thread
    counts are used; ``n_threads`` applies to local work only.

    Examples
    --------
    >>> import dask.dataframe as dd                                  # doctest: +SKIP
    >>> from distributed import Client, LocalCluster                 # doctest: +SKIP
    >>> client = Client(LocalCluster(n_workers=2, threads_per_worker=1))  # doctest: +SKIP
    >>> ratings = dd.read_parquet("s3://bucket/ratings/")            # doctest: +SKIP
    >>> model = DaskALS(n_factors=64, random_state=0).fit(ratings, client=client)  # doctest: +SKIP
    >>> model.save("als.zip")  # a plain ALS                         # doctest: +SKIP
    """

    _local_class: ClassVar[type] = ALS

    def _train(self, data: Interactions, validation: Any, progress: bool, n_iter: int) -> None:
        if self._dask is None:  # partial_fit after the fit: local
            return super()._train(data, validation, progress, n_iter)
        return self._train_on_cluster(data, validation, progress, n_iter)

    def _init_state(self, n_users: int, n_items: int, stats: list[dict], weighted: bool) -> None:
        # The initialisation of ALS._fit, from the pooled sums of the partitions.
        rng = check_random_state(self.random_state)
        if weighted:
            total = sum(s["weight_sum"] for s in stats)
            if total <= 0:
                raise DataError("every sample weight is 0: nothing to learn from")
            mean = sum(s["weighted_sum"] for s in stats) / total
        else:
            mean = sum(s["rating_sum"] for s in stats) / sum(s["n"] for s in stats)
        self.global_mean_ = mean if self.biased else 0.0
        self.user_factors_ = np.zeros((n_users, self.n_factors), np.float32)
        self.item_factors_ = self._init_factors(rng, n_items)
        self.user_bias_ = np.zeros(n_users, np.float32) if self.biased else None
        self.item_bias_ = np.zeros(n_items, np.float32) if self.biased else None
        self._total_weight = (sum(s["weight_sum"] for s in stats) if weighted
                              else float(sum(s["n"] for s in stats)))

    def _iterate(self, plan: _Plan, validation: Any, progress: bool, n_iter: int) -> None:
        self._record_transfer(plan)
        model = ALS(**self.get_params())
        model.global_mean_ = self.global_mean_

        def step(iteration: int) -> tuple[float, dict]:
            ub = self.user_bias_ if self.biased else _EMPTY
            ib = self.item_bias_ if self.biased else _EMPTY
            plan.half_step("user", self.item_factors_, ib, None, self.user_factors_, ub,
                           {"model": model, "loss": False})
            # The item blocks also return the squared errors of their ratings, with the
            # factors of the finished iteration (those of ALS.squared_error).
            sse, _ = plan.half_step("item", self.user_factors_, ub, None, self.item_factors_,
                                    ib, {"model": model, "loss": True})
            return sse, {}

        self._run_iterations(step, self._total_weight, validation, progress,
                             type(self).__name__, n_iter=n_iter)

    def _train_on_cluster(self, data: Interactions, validation: Any, progress: bool,
                          n_iter: int) -> None:
        self._total_weight = (float(data.weights.sum(dtype=np.float64)) if data.has_weights
                              else float(data.nnz))
        super()._train_on_cluster(data, validation, progress, n_iter)


class DaskImplicitALS(_DaskFit, ImplicitALS):
    r""":class:`~matfact.ImplicitALS` fitted on a Dask cluster (``dask.distributed``).

    The same model, parameters and result as :class:`~matfact.ImplicitALS`; each
    half-step computes :math:`Y^\top Y + \lambda I` once on the driver and sends it to
    every block with the rows the block needs; CG warm-starts from the block's previous
    result, kept on its worker. :meth:`fit` takes a Dask DataFrame (columns ``user``, ``item``
    and an optional ``weight``; pass ``weight="rating"`` to use ratings as weights) or
    an :class:`~matfact.Interactions`. Saved as a plain ``ImplicitALS``; see
    :class:`DaskALS`.

    Examples
    --------
    >>> model = DaskImplicitALS(alpha=1.0, reg=0.05).fit(ddf, client=client,  # doctest: +SKIP
    ...                                                  weight="plays")
    """

    _local_class: ClassVar[type] = ImplicitALS
    #: The weight column of the Dask DataFrame being fitted, for ``confidence="auto"``.
    _frame_weights: np.ndarray | None = None

    def fit(self, data: Any, **kwargs: Any) -> DaskImplicitALS:
        if isinstance(data, Interactions) and not data.is_implicit:
            data = data.to_implicit()
        return super().fit(data, **kwargs)

    fit.__doc__ = _DaskFit.fit.__doc__

    def _train(self, data: Interactions, progress: bool, n_iter: int) -> None:
        if self._dask is None:  # partial_fit after the fit: local
            return super()._train(data, progress, n_iter)
        self._user_counts = np.bincount(data.user_codes, minlength=data.n_users)
        self._item_counts = np.bincount(data.item_codes, minlength=data.n_items)
        return self._train_on_cluster(data, None, progress, n_iter)

    def _init_state(self, n_users: int, n_items: int, stats: list[dict], weighted: bool) -> None:
        # The initialisation of ImplicitALS._fit: users, then items, from one generator.
        self.rating_scale_ = None
        self._choose_confidence(self._frame_weights)
        rng = check_random_state(self.random_state)
        self.user_factors_ = self._init_factors(rng, n_users)
        self.item_factors_ = self._init_factors(rng, n_items)
        self.global_mean_ = 0.0
        self.user_bias_ = self.item_bias_ = None

    def _fit_frame(self, ddf: Any, columns: tuple, validation: Any, progress: bool,
                   callback: Any) -> Any:
        if validation is not None:
            raise ParameterError("ImplicitALS does not take validation= (its loss is not an "
                                 "RMSE); evaluate held-out data with evaluate_ranking")
        weight = columns[3]
        self._frame_weights = None
        if weight is not None and weight in ddf.columns:
            # The confidence rule reads the weights' quantiles: one float column on the
            # driver, less than the seen-items matrix the fit gathers anyway. Bad values
            # are left to the fit's own checks, which name them.
            values = self._dask["client"].compute(ddf[weight]).result()
            values = pd.to_numeric(values, errors="coerce").to_numpy(np.float64)
            self._frame_weights = values[np.isfinite(values)].astype(np.float32)
        try:
            return super()._fit_frame(ddf, columns, validation, progress, callback)
        finally:
            self._frame_weights = None

    def _plan(self, parts: list, columns: tuple, user_index: Any, item_index: Any,
              user_counts: np.ndarray, item_counts: np.ndarray) -> _Plan:
        self._user_counts, self._item_counts = user_counts, item_counts
        return super()._plan(parts, columns, user_index, item_index, user_counts, item_counts)

    def _penalty(self) -> float:
        """``Σ λ_u‖x_u‖² + Σ λ_i‖y_i‖²``, ``λ n^ν`` per row, as in :meth:`ImplicitALS.loss`."""
        penalty = 0.0
        for counts, factors in ((self._user_counts, self.user_factors_),
                                (self._item_counts, self.item_factors_)):
            indptr = np.concatenate([[0], np.cumsum(counts)])
            lam = self.reg + self._row_reg(indptr) if self.reg_exponent else self.reg
            norms = np.einsum("ij,ij->i", factors, factors).astype(np.float64)
            penalty += float(np.dot(np.broadcast_to(lam, len(factors)), norms))
        return penalty

    def _iterate(self, plan: _Plan, validation: Any, progress: bool, n_iter: int) -> None:
        self._record_transfer(plan)
        params = {**self.get_params(), **self.confidence_params()}  # "auto" resolved
        n_cells = float(plan.bounds["user"][-1]) * float(plan.bounds["item"][-1]) - plan.nnz
        warm = self.solver == "cg"

        def spec(other: np.ndarray, loss: bool) -> dict:
            model = _GivenGram(**params)
            model.given_gram_ = self._gram64(other)  # YᵀY + λI of the whole side, as locally
            return {"model": model, "loss": loss,
                    "plain_gram": gram64(other) if loss else None}

        def step(iteration: int) -> tuple[float, dict]:
            plan.half_step("user", self.item_factors_, _EMPTY,
                           self.user_factors_ if warm else None, self.user_factors_, None,
                           spec(self.item_factors_, False))
            data_term, conf_sum = plan.half_step(
                "item", self.user_factors_, _EMPTY, self.item_factors_ if warm else None,
                self.item_factors_, None, spec(self.user_factors_, self.calculate_loss))
            if not self.calculate_loss:
                return 0.0, {}
            return (data_term + self._penalty()) / (conf_sum + n_cells), {}

        self._run_iterations(step, 1.0, None, progress, type(self).__name__, n_iter=n_iter)
        if not self.calculate_loss:
            self.loss_history_ = {"train_loss": [], "validation_rmse": []}


# ------------------------------------------------------------------------------------ evaluation
class _ClusterRanker:
    """A fitted model whose top-k lists are computed on the cluster, user block by block."""

    def __init__(self, model: Any, client: Any, n_blocks: int) -> None:
        self._model = model
        self._client = client
        self._n_blocks = n_blocks

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def recommend_codes(self, users: np.ndarray, n: int, *, exclude_seen: bool = True,
                        candidates: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The model's :meth:`~matfact.models.base.Recommender.recommend_codes`, by user blocks
        on the workers (what :func:`matfact.evaluate_ranking` calls for the top-k lists)."""
        client = self._client
        model = client.scatter([self._model], broadcast=True, hash=False)[0]
        chunks = np.array_split(users, max(1, min(self._n_blocks, len(users))))
        futures = [client.submit(_recommend_block, model, chunk, n, exclude_seen, candidates,
                                 pure=False) for chunk in chunks]
        parts = client.gather(futures)
        return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


def _recommend_block(model: Any, users: np.ndarray, n: int, exclude_seen: bool,
                     candidates: Any) -> tuple[np.ndarray, np.ndarray]:
    with _KERNEL_LOCK, numba_threads(_worker_threads()):
        return model.recommend_codes(users, n, exclude_seen=exclude_seen, candidates=candidates)


def _auc_block(model: Any, test: Interactions) -> np.ndarray:
    from matfact.evaluation.validate import evaluate_ranking as local_evaluate

    with _KERNEL_LOCK, numba_threads(_worker_threads()):
        _, frame = local_evaluate(model, test, metrics=["auc"], per_user=True)
    return frame["auc"].to_numpy()


def evaluate_ranking(model: Any, test: Interactions, *, client: Any = None, k: int = 10,
                     metrics: Any = None, per_user: bool = False,
                     n_blocks: int | None = None) -> Any:
    """:func:`matfact.evaluate_ranking`, with the users scored on a Dask cluster.

    The test users are cut into ``n_blocks`` blocks (default: the cluster's worker
    threads); each worker receives the model once and computes the top-k lists (and
    the AUC) of its blocks; the metrics are then computed on the driver by
    :func:`matfact.evaluate_ranking` itself, so the result is the same.

    Parameters
    ----------
    model : fitted matfact model
    test : Interactions
    client : distributed.Client, default=None
    k, metrics, per_user
        As in :func:`matfact.evaluate_ranking`.
    n_blocks : int, default=None

    Returns
    -------
    dict, or (dict, pandas.DataFrame) with ``per_user=True``
    """
    from matfact.evaluation.metrics import aggregate, parse_metric
    from matfact.evaluation.validate import DEFAULT_RANKING_METRICS, relevant_items
    from matfact.evaluation.validate import evaluate_ranking as local_evaluate

    client = _client(client)
    if not isinstance(test, Interactions):
        raise DataError(f"test data must be a matfact.Interactions, got {type(test).__name__}")
    if not model.is_fitted:
        raise NotFittedError(f"this {type(model).__name__} is not fitted yet; call fit() "
                             f"first")
    names = list(DEFAULT_RANKING_METRICS if metrics is None else
                 ((metrics,) if isinstance(metrics, str) else metrics))
    if n_blocks is None:
        n_blocks = max(1, sum(client.nthreads().values()))
    ranker = _ClusterRanker(model, client, n_blocks)
    others = [m for m in names if parse_metric(m)[0] != "auc"]
    result: Any = {}
    frame = None
    if others:
        result = local_evaluate(ranker, test, k=k, metrics=others, per_user=per_user)
        if per_user:
            result, frame = result
    if len(others) < len(names):
        # AUC scores every item for every user: on the workers, by blocks of test users.
        users, _ = relevant_items(test, model.item_index_)
        chunks = np.array_split(np.arange(len(users)), max(1, min(n_blocks, len(users))))
        scattered = client.scatter([model], broadcast=True, hash=False)[0]
        futures = []
        for chunk in chunks:
            part = test.subset(users=users[chunk])
            futures.append(client.submit(_auc_block, scattered, part, pure=False))
        values = np.concatenate(client.gather(futures))
        summary = {name: value for name, value in result.items()
                   if name not in ("n_users", "n_unknown_users")}
        summary["auc"] = aggregate(values)
        summary["n_users"] = len(users)
        summary["n_unknown_users"] = int((model.user_index_.get_indexer(users) < 0).sum())
        result = summary
        if per_user:
            auc_frame = pd.DataFrame({"auc": values}, index=pd.Index(users, name="user"))
            frame = auc_frame if frame is None else frame.join(auc_frame)
    return (result, frame) if per_user else result


# ------------------------------------------------------------------------------------ command line
def fit_on_cluster(model: ALS | ImplicitALS, data: Interactions | str, *,
                   scheduler: str | None = None, local_cluster: int | None = None,
                   progress: bool = False, columns: tuple | None = None) -> Any:
    """Fit a local ``ALS`` / ``ImplicitALS`` on a Dask cluster and return the local model.

    What ``matfact train --scheduler ADDRESS`` and ``--local-cluster N`` run: the
    model's parameters go to :class:`DaskALS` / :class:`DaskImplicitALS`, fitted on the
    scheduler at ``scheduler`` or on a :class:`distributed.LocalCluster` of
    ``local_cluster`` worker processes of one thread each, started and stopped here.
    ``data`` is an :class:`~matfact.Interactions`, or a Parquet path, glob or URL read by
    the workers with :func:`dask.dataframe.read_parquet`, whose ``columns`` are
    ``(user, item, rating, weight)`` (``None`` entries: ``"user"``, ``"item"``,
    ``"rating"``, no weight).

    Returns
    -------
    ALS or ImplicitALS
        A plain local model, fitted.
    """
    _require_dask()
    from distributed import Client, LocalCluster

    classes = {ALS: DaskALS, ImplicitALS: DaskImplicitALS}
    if type(model) not in classes:
        raise ParameterError(f"only ALS and ImplicitALS fit on a Dask cluster, not "
                             f"{type(model).__name__}")
    if (scheduler is None) == (local_cluster is None):
        raise ParameterError("give exactly one of scheduler= and local_cluster=")
    dask_model = classes[type(model)](**model.get_params())
    cluster = None
    if local_cluster is not None:
        cluster = LocalCluster(n_workers=int(local_cluster), threads_per_worker=1,
                               processes=True, dashboard_address=None)
    try:
        try:
            client = Client(cluster if cluster is not None else scheduler, timeout=20)
        except OSError as err:
            raise OSError(f"cannot reach the Dask scheduler at {scheduler}: {err}") from None
        with client:
            if isinstance(data, str):
                user, item, rating, weight = columns or (None, None, None, None)
                dask_model.fit(_read_parquet(data), client=client, progress=progress,
                               user=user or "user", item=item or "item",
                               rating=rating or "rating", weight=weight)
            else:
                dask_model.fit(data, client=client, progress=progress)
    finally:
        if cluster is not None:
            cluster.close()
    return dask_model.to_local()


def _read_parquet(path: str) -> Any:
    import dask.dataframe as dd

    try:
        return dd.read_parquet(path)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read it as Parquet files with Dask: {err}") from None
