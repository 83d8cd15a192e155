"""``matfact serve`` and ``matfact retrain``, with the glue to the rating log.

``serve`` runs :func:`matfact.serving.app.create_app` under uvicorn;
``retrain`` refits (or ``--partial``: refines) a model file from ``--data``
plus the ratings logged by :class:`matfact.serving.store.RatingStore`, and
records the log position in the file so a reload replays only what is newer.
A logged row the new model could not take (checked by a model's
``apply_ratings(..., dry_run=True)``, as the server's replay does) is moved to
the log's quarantine table instead of failing the retrain.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from matfact.cli.data import read_data
from matfact.cli.models import build_model, fit_model, is_model_file
from matfact.cli.output import Output
from matfact.exceptions import UsageError

__all__ = ["cmd_retrain", "cmd_serve"]

#: Seconds in-flight requests get after SIGTERM before they are cancelled.
_GRACEFUL_SECONDS = 3


def cmd_serve(args: argparse.Namespace, out: Output) -> int:
    model_path = Path(args.model).expanduser()
    if not is_model_file(str(model_path)):
        raise UsageError(f"--model {model_path} is not a model file; write one with "
                         f"'matfact train ... --out {model_path}'")
    try:
        import uvicorn

        from matfact.serving.app import create_app
    except ImportError as exc:
        raise UsageError(f"serving needs the 'serve' extra: pip install 'matfact[serve]' "
                         f"({exc})") from None
    if args.precompute is not None and args.precompute < 0:
        raise UsageError(f"--precompute takes a number of users (0 or more), got "
                         f"{args.precompute}")
    from threadpoolctl import threadpool_limits

    # One request is scored at a time on the event loop: a BLAS pool would only spin
    # against the other threads (measured: 374 instead of ~2,000 scored requests/s).
    threadpool_limits(limits=1, user_api="blas")
    app = create_app(model_path, args.db, api_key_file=args.api_key_file,
                     require_key=args.require_key, index=args.index, max_kept=args.precompute)
    service = app.state.services["service"]
    index = service.index.describe()
    search = "exact search" if index["mode"] == "exact" else (
        f"approximate index: {index.get('lists')} lists, {index.get('probe')} read per query, "
        f"recall@10 {index.get('recall') or 0:.3f} when built")
    out.result(f"Serving {type(service.model).__name__} ({service.model.n_users_:,} users x "
               f"{service.model.n_items_:,} items, version {service.version}; {search}) on "
               f"http://{args.host}:{args.port} (API docs at /docs, page at /)")
    # SIGTERM: stop taking connections, give in-flight requests a few seconds, then
    # commit what the rating log has queued (acknowledged ratings already are).
    options: dict[str, Any] = {"log_level": "warning", "access_log": False,
                               "timeout_graceful_shutdown": _GRACEFUL_SECONDS}
    for option, module in (("loop", "uvloop"), ("http", "httptools")):
        try:
            __import__(module)
            options[option] = module
        except ImportError:  # pragma: no cover - the serve extra installs both
            pass
    uvicorn.run(app, host=args.host, port=args.port, **options)
    return 0


def _log_interactions(ratings: list, implicit: bool) -> Any:
    import numpy as np

    from matfact import Interactions

    users = np.array([r.user for r in ratings], dtype=object)
    items = np.array([r.item for r in ratings], dtype=object)
    values = np.array([r.rating for r in ratings], dtype=np.float64)
    if implicit:
        return Interactions.from_arrays(users, items, weights=values, duplicates="last")
    return Interactions.from_arrays(users, items, values, duplicates="last")


def cmd_retrain(args: argparse.Namespace, out: Output) -> int:
    import matfact
    from matfact.serving.store import RatingStore

    target = Path(args.model).expanduser()
    previous = matfact.load(target) if is_model_file(str(target)) else None
    if args.partial and (previous is None or not hasattr(previous, "partial_fit")):
        raise UsageError("--partial needs an existing model file of a model with "
                         "partial_fit (ALS, ImplicitALS, BiasedMF, SVDPlusPlus)")
    if not args.partial and args.data is None:
        raise UsageError("--data is needed for a full refit (or use --partial)")
    data = None if args.partial else read_data(args, args.data, out)
    with RatingStore(args.db) as store:
        # --partial refines with what the file has not seen yet; a refit takes the whole log.
        after = store.logged_through(previous) if args.partial else 0
        unreadable: list = []
        entries = list(store.entries(after, unreadable))
        # The rows the model cannot take go to the quarantine, as at a server's start.
        entries, refused = _screen(previous if args.partial else data, entries)
        refused = unreadable + refused
        if refused:
            store.quarantine(refused)
            out.info(f"{len(refused):,} logged ratings cannot be used with this model and "
                     f"were moved to the log's quarantine table (first: seq {refused[0][0]}, "
                     f"{refused[0][1]})")
        # The last rating the new file takes, as the log holds it (logged_through checks it).
        position = store.position(entries[-1][0], entries[-1][1][0]) if entries else \
            store.position(0, None)
    logged = [rating for _, (_, rating) in entries]
    if args.partial:
        if not logged:
            out.result("No ratings logged since the model file was made: nothing to add; "
                       "the model is unchanged")
            return 0
        start = time.perf_counter()
        previous.partial_fit(_log_interactions(logged, previous.is_implicit_))
        previous.rating_log_ = position
        _keep_indexes(previous, previous, out)
        previous.save(target)
        out.result(f"Refined {type(previous).__name__} with {len(logged):,} logged ratings "
                   f"(partial_fit) in {time.perf_counter() - start:.2f} s; saved {target}")
        return 0
    model = (matfact.clone(previous) if previous is not None and args.model_name is None
             else build_model(args.model_name or "biased_mf", {}))
    if logged:
        data = _with_log(data, logged)
    if data.item_titles() is None and previous is not None and previous.item_titles_ is not None:
        data = _with_titles(data, previous)
    seconds = fit_model(model, data, out)
    model.rating_log_ = position
    if previous is not None:
        _keep_indexes(model, previous, out)
    model.save(target)  # written beside, then renamed over the old file
    out.result(f"Refitted {type(model).__name__} on {data.nnz:,} interactions "
               f"({len(logged):,} from the log) in {seconds:.2f} s; saved {target}")
    return 0


def _keep_indexes(model: Any, previous: Any, out: Output) -> None:
    """Rebuild the approximate indexes the previous file held (a refit drops them), so
    the served file keeps them and a reload need not build one."""
    if not any(name.startswith("ann_") for name in vars(previous)):
        return
    from matfact.models.ann import rebuild_indexes

    start = time.perf_counter()
    built = rebuild_indexes(model, previous)
    if built:
        out.info(f"Rebuilt the approximate index ({', '.join(built)}) in "
                 f"{time.perf_counter() - start:.1f} s")


def cmd_index(args: argparse.Namespace, out: Output) -> int:
    """``matfact index``: build a model file's approximate index and save it in the file."""
    import matfact
    from matfact.exceptions import ModelFormatError

    path = Path(args.model).expanduser()
    if not is_model_file(str(path)):
        raise UsageError(f"--model {path} is not a model file")
    try:
        model = matfact.load(path)
    except ModelFormatError as exc:
        raise UsageError(str(exc)) from None
    start = time.perf_counter()
    for kind in ("recommend", "similar") if args.similar else ("recommend",):
        model.build_index(kind, n_lists=args.lists, n_probe=args.probe, recall=args.recall)
        settings = model.ann_settings_ if kind == "recommend" else model.ann_similar_settings_
        measured = settings["measured_recall"]
        out.info(f"{kind}: {settings['n_lists']:,} lists, {settings['n_probe']} read per "
                 f"query" + ("" if measured is None else
                             f" (recall@{settings['n']} {measured:.3f} on trained "
                             f"{'users' if kind == 'recommend' else 'items'})"))
    model.save(path)  # written beside, then renamed over the old file
    out.result(f"Built the approximate index of {path} ({model.n_items_:,} items) in "
               f"{time.perf_counter() - start:.1f} s; saved it in the file")
    return 0


def _screen(against: Any, entries: list) -> tuple[list, list]:
    """``([(seq, (stored rating, rating as read)), ...], [(seq, reason), ...])``.

    ``against`` is the model being refined, or the data of a refit: its ids and
    rating scale are what the refitted model will have, so a stand-in fitted on
    it in one cheap pass (``Baseline(max_iter=1)``) checks the rows by the same
    rule (``apply_ratings(..., dry_run=True)``) the server replays them with.
    """
    import matfact
    from matfact.serving.service import screen

    if not entries:
        return [], []
    if isinstance(against, matfact.Interactions):
        against = matfact.Baseline(max_iter=1).fit(against, progress=False)
    stored = dict(entries)
    accepted, refused = screen(against, entries)
    return [(seq, (stored[seq], rating)) for seq, rating in accepted], refused


def _declared_scale(data: Any) -> tuple[float, ...] | None:
    """``data``'s rating scale with its step (``--rating-scale``), to rebuild it alike."""
    if data.rating_scale is None or data.rating_step is None:
        return data.rating_scale
    return (*data.rating_scale, data.rating_step)


def _with_titles(data: Any, previous: Any) -> Any:
    """``data`` with the previous model's item titles (a ratings file carries none)."""
    import pandas as pd

    from matfact import Interactions

    titles = pd.DataFrame({"title": previous.item_titles_}, index=previous.item_index_.ids)
    kind = {"weights": data.values} if data.is_implicit else {"ratings": data.values}
    return Interactions.from_arrays(data.users, data.items, timestamps=data.timestamps,
                                    user_features=data.user_features, item_features=titles,
                                    rating_scale=_declared_scale(data), **kind)


def _with_log(data: Any, logged: list) -> Any:
    """``data`` plus the logged ratings (a logged rating replaces the data's for that pair)."""
    import numpy as np

    from matfact import Interactions

    # Every logged rating in log order, repeats included, so the timestamps below line up;
    # from_arrays(duplicates="last") keeps the latest of each pair (a repeated pair in the
    # log once made the lengths differ: found by benchmarks/soak.py).
    users = np.concatenate([data.users.astype(object),
                            np.array([r.user for r in logged], dtype=object)])
    items = np.concatenate([data.items.astype(object),
                            np.array([r.item for r in logged], dtype=object)])
    values = np.concatenate([data.values, np.array([r.rating for r in logged], np.float64)])
    stamps = None
    if data.timestamps is not None:
        latest = float(np.max(data.timestamps))
        stamps = np.concatenate([data.timestamps,
                                 [r.timestamp if r.timestamp is not None else latest
                                  for r in logged]])
    kind = {"weights": values} if data.is_implicit else {"ratings": values}
    return Interactions.from_arrays(users, items, timestamps=stamps, duplicates="last",
                                    user_features=data.user_features,
                                    item_features=data.item_features,
                                    rating_scale=_declared_scale(data), **kind)
