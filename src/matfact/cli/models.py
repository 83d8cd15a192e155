"""``matfact train``, ``evaluate`` (one model, or ``--models`` to compare) and ``recommend``.

Also the model helpers the other commands share: :func:`parse_params` for
``--param``, :func:`model_class` / :func:`build_model` from a ``--model`` name,
:func:`fit_model`.
"""

from __future__ import annotations

import argparse
import json
import os
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

from matfact._text import format_table
from matfact.cli.data import read_data
from matfact.cli.names import cli_name
from matfact.cli.output import (
    Output,
    because_text,
    item_titles_file,
    number,
    print_recommendations,
    recommendation_rows,
)
from matfact.exceptions import LeakageWarning, UsageError

__all__ = ["build_model", "cmd_evaluate", "cmd_recommend", "cmd_train", "fit_model",
           "is_model_file", "learns_from", "model_class", "model_registry", "parse_params",
           "predicts_ratings"]


def parse_params(pairs: list[str] | None) -> dict[str, Any]:
    """Parse ``key=value`` strings; values are JSON (numbers, true/false/null, lists) or text.

    ``True``/``False``/``None`` are accepted as Python spells them. Nothing is
    evaluated as code.

    Parameters
    ----------
    pairs : list of str or None

    Returns
    -------
    dict

    Raises
    ------
    UsageError
        For a pair without ``=``, an empty or invalid key, or a key given twice.

    Examples
    --------
    >>> parse_params(["reg=0.05", "max_iter=20", "verbose=true", "init=svd", "a=null"])
    {'reg': 0.05, 'max_iter': 20, 'verbose': True, 'init': 'svd', 'a': None}
    """
    params: dict[str, Any] = {}
    for pair in pairs or []:
        key, eq, text = pair.partition("=")
        key = key.strip()
        if not eq or not key:
            raise UsageError(f"--param expects key=value, got {pair!r}")
        if not key.isidentifier():
            raise UsageError(f"--param: {key!r} is not a valid parameter name")
        if key in params:
            raise UsageError(f"--param {key} given twice")
        text = text.strip()
        python_words = {"True": True, "False": False, "None": None}
        if text in python_words:
            params[key] = python_words[text]
            continue
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        if isinstance(value, float) and value != value:  # JSON "NaN" → keep the text
            value = text
        params[key] = value
    return params


def model_registry() -> dict[str, type]:
    from matfact.models import MODEL_REGISTRY  # imports every model module

    return MODEL_REGISTRY


def _model_key(name: str) -> str:
    """``BiasedMF``, ``biased_mf`` and ``biased-mf`` → ``biasedmf``."""
    return "".join(ch for ch in name.lower() if ch not in "_- ")


def model_class(name: str) -> type:
    """The model class for a ``--model`` name (case-insensitive; ``_``/``-`` ignored)."""
    registry = model_registry()
    by_key = {_model_key(cls_name): cls for cls_name, cls in registry.items()}
    cls = by_key.get(_model_key(name))
    if cls is None:
        known = ", ".join(sorted(cli_name(n) for n in registry))
        raise UsageError(f"unknown model {name!r}; choose one of: {known}")
    return cls


def build_model(name: str, params: dict[str, Any], seed: int | None = None) -> Any:
    """The model ``name`` with ``params``; ``seed`` becomes its ``random_state`` unless given.

    A command's ``--seed`` seeds the model as well as the split, so the same command
    gives the same figures (an explicit ``--param random_state=...`` wins).
    """
    from matfact._params import validate_params

    cls = model_class(name)
    valid = cls._get_param_names()
    unknown = [key for key in params if key not in valid]
    if unknown:
        raise UsageError(
            f"{cls.__name__} has no parameter {unknown[0]!r}; its parameters are "
            f"{', '.join(valid) or '(none)'}"
        )
    if seed is not None and "random_state" in valid and "random_state" not in params:
        params = {**params, "random_state": seed}
    model = cls(**params)
    validate_params(model)  # fail before loading any data
    return model


def learns_from(model: Any, kind: str) -> bool:
    """Whether ``model`` learns from ``kind`` ("explicit" or "implicit") feedback."""
    return model.learns_from(kind)


def fit_data(model: Any, data: Any, out: Output) -> Any:
    """``data``, converted to implicit feedback if the model learns only from that."""
    from matfact.exceptions import DataError

    if data.is_implicit and not learns_from(model, "implicit"):
        raise DataError(f"{type(model).__name__} learns from explicit ratings, but the data is "
                        f"implicit: give the rating column with --rating-col (and no "
                        f"--implicit)")
    if not data.is_implicit and not learns_from(model, "explicit"):
        out.info(f"{type(model).__name__} learns from implicit feedback: using every rating "
                 f"as an interaction")
        return data.to_implicit()
    return data


def fit_model(model: Any, data: Any, out: Output) -> float:
    data = fit_data(model, data, out)
    start = time.perf_counter()
    model.fit(data, progress=out.progress)
    seconds = time.perf_counter() - start
    if getattr(model, "confidence", None) == "auto" and model.confidence_ == "log":
        # Say what "auto" chose on long-tailed weights (issue 20): the user never set it.
        out.info(f"{type(model).__name__}: the weights span orders of magnitude, so the "
                 f"confidence is 1 + {model.alpha_:.3g}·log(1 + w/{model.epsilon_:.3g}) "
                 f"(confidence='auto'; --param confidence=linear to override)")
    return seconds


def is_model_file(spec: str) -> bool:
    path = Path(spec).expanduser()
    if path.is_dir():
        return (path / "meta.json").is_file()
    return path.is_file()


def predicts_ratings(model: Any) -> bool:
    """Whether a fitted model's ``predict`` gives ratings (it learned a rating scale)."""
    return getattr(model, "rating_scale_", None) is not None


def cmd_train(args: argparse.Namespace, out: Output) -> int:
    model = build_model(args.model, parse_params(args.param))
    on_cluster = args.scheduler is not None or args.local_cluster is not None
    if on_cluster and type(model).__name__ not in ("ALS", "ImplicitALS"):
        raise UsageError(f"--scheduler and --local-cluster fit als and implicit_als only, not "
                         f"{type(model).__name__}; drop them to fit locally")
    if args.local_cluster is not None and args.local_cluster < 1:
        raise UsageError(f"--local-cluster needs N >= 1 worker processes, got {args.local_cluster}")
    # A URL or a glob (s3://bucket/ratings/*.parquet) is read by the workers, not here.
    remote = on_cluster and ("://" in args.data or any(ch in args.data for ch in "*?"))
    data = None if remote else read_data(args, args.data, out)
    if on_cluster:
        from matfact.distributed.dask_als import fit_on_cluster

        source = args.data if remote else fit_data(model, data, out)
        start = time.perf_counter()
        model = fit_on_cluster(model, source, scheduler=args.scheduler,
                               local_cluster=args.local_cluster, progress=out.progress,
                               columns=(args.user_col, args.item_col, args.rating_col,
                                        args.weight_col))
        seconds = time.perf_counter() - start
    else:
        seconds = fit_model(model, data, out)
    target = Path(args.out).expanduser()
    model.save(target)
    counts = ((data.nnz, data.n_users, data.n_items) if data is not None
              else (model.seen_.nnz, model.n_users_, model.n_items_))
    out.result(f"Trained {type(model).__name__} on {counts[0]:,} interactions "
               f"({counts[1]:,} users x {counts[2]:,} items) in {seconds:.2f} s")
    out.result(f"Saved the model to {target}")
    return 0


def _metric_plan(metrics: str | None, k: int, test: Any, model: Any
                 ) -> tuple[list[str], list[str]]:
    """(rating metrics, ranking metrics) to compute."""
    from matfact.evaluation.metrics import RATING_METRICS, parse_metric
    from matfact.exceptions import ParameterError

    if metrics is None:
        rating = ["rmse", "mae"] if (not test.is_implicit and predicts_ratings(model)) else []
        return rating, [f"ndcg@{k}", f"precision@{k}"]
    rating, ranking = [], []
    for name in (part.strip() for part in metrics.split(",")):
        if not name:
            continue
        base, _ = parse_metric(name)
        if base in RATING_METRICS:
            if not predicts_ratings(model):
                raise ParameterError(f"{type(model).__name__} does not predict ratings, so "
                                     f"{base} means nothing; ask for ranking metrics such as "
                                     f"ndcg@{k}")
            rating.append(base)
        else:
            ranking.append(name.lower())
    if not rating and not ranking:
        raise UsageError("--metrics is empty")
    return rating, ranking


def _evaluate(model: Any, test: Any, metrics: str | None, k: int) -> tuple[dict, dict]:
    """(metric → value, counts) of a fitted model on ``test``."""
    import matfact

    rating, ranking = _metric_plan(metrics, k, test, model)
    values: dict[str, float] = {}
    counts: dict[str, int] = {}
    if rating:
        result = matfact.evaluate(model, test, metrics=rating)
        values.update({name: float(result[name]) for name in rating})
        counts.update(n_ratings=int(result["n"]), n_unknown_ratings=int(result["n_unknown"]))
    if ranking:
        result = matfact.evaluate_ranking(model, test, k=k, metrics=ranking)
        values.update({key: float(value) for key, value in result.items()
                       if key not in ("n_users", "n_unknown_users", "n_overlap")})
        counts.update(n_users=int(result["n_users"]),
                      n_unknown_users=int(result["n_unknown_users"]))
    return values, counts


def _check_evaluate_options(args: argparse.Namespace) -> None:
    """Reject bad metric names, k and split strategies before any data is read."""
    from matfact.evaluation.metrics import parse_metric
    from matfact.evaluation.split import STRATEGIES

    if args.k < 1:
        raise UsageError(f"-k must be at least 1, got {args.k}")
    if args.test is None and args.split not in STRATEGIES:
        raise UsageError(f"unknown --split {args.split!r}; choose one of {', '.join(STRATEGIES)}")
    for name in (args.metrics or "").split(","):
        if name.strip():
            parse_metric(name.strip())


def _cmd_compare(args: argparse.Namespace, out: Output) -> int:
    """``evaluate --models``: cross-validate several models and write a report."""
    import pandas as pd

    from matfact.evaluation.report import build_report, summary_rows

    if args.model is not None:
        raise UsageError("give --model (one model) or --models (a comparison), not both")
    if args.param:
        raise UsageError("--param is not supported with --models (it would not say which "
                         "model it is for); compare models with their default parameters, "
                         "or evaluate one with --model NAME --param KEY=VALUE")
    if args.test is not None:
        raise UsageError("--test does not apply to --models, which cross-validates --data")
    if args.allow_overlap:
        raise UsageError("--allow-overlap applies to --model; --models cross-validates, and a "
                         "fold's test part is never in its training part")
    if args.data is None:
        raise UsageError("--models needs --data")
    cv = 5 if args.cv is None else args.cv
    if cv < 2:
        raise UsageError(f"--cv must be at least 2, got {cv}")
    _check_evaluate_options(args)
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    if not names:
        raise UsageError("--models is empty; give comma-separated model names")
    models: dict[str, Any] = {}
    for name in names:
        model = build_model(name, {}, args.seed)  # an unknown name fails before reading
        label = type(model).__name__
        if label in models:
            raise UsageError(f"--models names {label} twice")
        models[label] = model
    metrics = [part.strip().lower() for part in (args.metrics or "").split(",") if part.strip()]
    data = read_data(args, args.data, out)
    if args.tune < 0:
        raise UsageError(f"--tune must be 0 (no tuning) or a number of trials, got {args.tune}")
    target = build_report(models, data, cv=cv, metrics=metrics or None, k=args.k,
                          out=Path(args.out or "report").expanduser(), random_state=args.seed,
                          tune=args.tune > 0, tune_trials=max(args.tune, 1),
                          progress=out.progress)
    summary = pd.read_csv(target / "summary.csv")
    columns = [c for c in summary.columns
               if c not in ("model", "fit_time") and not c.endswith("_std")]
    if args.json:
        records = summary.astype(object).where(summary.notna(), None).to_dict("records")
        out.result(json.dumps({"models": records, "cv": cv, "seed": args.seed,
                               "report": str(target)}, indent=2))
        return 0
    out.result(f"{len(models)} models, {cv}-fold cross-validation of {args.data} "
               f"(seed {args.seed}); mean ± std over the folds")
    headers, rows = summary_rows(summary, columns)
    out.result(format_table(headers, rows, right=set(range(1, len(headers)))))
    out.result()
    out.result(f"Wrote the report to {target / 'index.html'} (and index.md)")
    return 0


def cmd_evaluate(args: argparse.Namespace, out: Output) -> int:
    import matfact

    if args.models is not None:
        return _cmd_compare(args, out)
    if args.model is None:
        raise UsageError("give --model NAME_OR_FILE (or --models NAME,NAME,... to compare "
                         "models)")
    if args.cv is not None or args.out is not None:
        raise UsageError("--cv and --out apply to --models, not to --model")
    from_file = is_model_file(args.model)
    if not from_file and (args.model.lower().endswith(".zip") or os.sep in args.model
                          or "/" in args.model):
        raise FileNotFoundError(f"no model file at {args.model}")
    if from_file and args.param:
        raise UsageError("--param applies to a model name, not to a saved model")
    if args.data is None and (not from_file or args.test is None):
        raise UsageError("give --data (or, with a saved model, --test)")
    _check_evaluate_options(args)
    info: dict[str, Any] = {}
    fit_seconds = None
    if from_file:
        model = matfact.load(Path(args.model).expanduser())
        info["model_file"] = str(args.model)
    else:
        model = build_model(args.model, parse_params(args.param), args.seed)
    if args.test is not None:
        test = read_data(args, args.test, out)
        info["test"] = args.test
        train = None if from_file else read_data(args, args.data, out)
    else:
        data = read_data(args, args.data, out)
        train, test = matfact.train_test_split(data, test_size=args.test_size,
                                               strategy=args.split, random_state=args.seed)
        info["split"] = {"strategy": args.split, "test_size": args.test_size,
                         "seed": args.seed}
        out.info(f"Split {args.split} (test size {args.test_size:g}, seed {args.seed}): "
                 f"{train.nnz:,} train, {test.nnz:,} test interactions")
    if not from_file:
        fit_seconds = fit_model(model, train, out)
    overlap = _check_overlap(model, test, args, info, out)
    with warnings.catch_warnings():
        # _check_overlap said it once; evaluate and evaluate_ranking would say it again.
        warnings.simplefilter("ignore", LeakageWarning)
        values, counts = _evaluate(model, test, args.metrics, args.k)
    counts["n_overlap"] = overlap
    name = type(model).__name__
    if args.json:
        report = {"model": name, **info, "fit_time_s": fit_seconds,
                  "metrics": {key: (None if value != value else value)
                              for key, value in values.items()},
                  "counts": counts}
        out.result(json.dumps(report, indent=2))
        return 0
    where = (f"{args.split} split of {args.data}" if "split" in info else args.test)
    fitted = f", fit in {fit_seconds:.2f} s" if fit_seconds is not None else ""
    out.result(f"{name} on {where}{fitted}")
    rows = [[key, number(value)] for key, value in values.items()]
    out.result(format_table(["metric", "value"], rows, right={1}))
    if counts.get("n_unknown_ratings"):
        out.info(f"{counts['n_unknown_ratings']:,} of {counts['n_ratings']:,} test ratings have "
                 f"a user or item the model never saw; its fallback scored them")
    if counts.get("n_unknown_users"):
        out.info(f"{counts['n_unknown_users']:,} of {counts['n_users']:,} test users are new to "
                 f"the model; they got its fallback ranking")
    if overlap:
        out.result(f"{overlap:,} of {test.nnz:,} test pairs ({overlap / test.nnz:.1%}) were in "
                   f"the model's training data (--allow-overlap)")
    return 0


def _check_overlap(model: Any, test: Any, args: argparse.Namespace, info: dict,
                   out: Output) -> int | None:
    """Test pairs the model saw in training: refused unless ``--allow-overlap``, then a warning.

    Returns the count (None when the model keeps no training pairs, which is said).
    """
    from matfact.evaluation.validate import count_overlap, warn_overlap

    overlap = count_overlap(model, test)
    if overlap is None:
        out.info(f"{type(model).__name__} keeps no training pairs, so whether the test pairs "
                 f"were held out from its training cannot be checked")
        return None
    if overlap and not args.allow_overlap:
        if info.get("model_file") and "split" in info:
            fix = ("the saved model was trained on pairs of --data, so a split of --data "
                   "does not hold them out: evaluate it on held-out data with --test")
        else:
            fix = "give --test data held out from the model's training data"
        raise UsageError(f"{overlap:,} of {test.nnz:,} test pairs ({overlap / test.nnz:.1%}) "
                         f"were in the model's training data, so the figures would measure "
                         f"memory, not prediction; {fix}, or pass --allow-overlap to measure "
                         f"anyway")
    warn_overlap(model, overlap, test.nnz, "the figures measure memory, not prediction",
                 fix="evaluated anyway, as --allow-overlap asks")
    return overlap


def _check_recommend_target(args: argparse.Namespace) -> None:
    """``recommend``: one of --user and --all; --out's name and what goes with it."""
    if args.all and args.user:
        raise UsageError("give --user ID (repeatable) or --all, not both")
    if not args.all and not args.user:
        raise UsageError("give --user ID (repeatable), or --all --out FILE for every user")
    if args.out is None:
        if args.all:
            raise UsageError("--all writes every user's list to a file: add --out "
                             "recs.parquet (or recs.csv)")
        if args.block_size is not None:
            raise UsageError("--block-size applies to --out")
        return
    from matfact.models.batch import output_format

    for flag, given in (("--json", args.json), ("--explain", args.explain is not None),
                        ("--item-titles", args.item_titles is not None)):
        if given:
            raise UsageError(f"{flag} applies to printed lists, not to --out (a file of "
                             f"user, rank, item, score, fallback)")
    if args.block_size is not None and args.block_size < 1:
        raise UsageError(f"--block-size must be at least 1, got {args.block_size}")
    try:
        output_format(Path(args.out).expanduser())
    except ValueError as err:
        raise UsageError(f"--out: {err}") from None
    parent = Path(args.out).expanduser().parent
    if not parent.is_dir():
        raise UsageError(f"--out: no directory {parent} to write {Path(args.out).name} in")


def _write_recommendations(args: argparse.Namespace, model: Any, out: Output) -> int:
    """``recommend --out FILE`` (every user with --all): the lists streamed to a file."""
    from matfact.io import write_recommendations

    start = time.perf_counter()
    users = None if args.all else model.user_index_.coerce(args.user)
    written = write_recommendations(
        model, Path(args.out).expanduser(), args.n, exclude_seen=not args.include_seen,
        users=users, unknown="raise" if args.strict else "fallback",
        block_size=args.block_size, progress=out.progress,
        approximate=getattr(args, "approximate", False))
    seconds = time.perf_counter() - start
    seen = "seen items included" if args.include_seen else "seen items excluded"
    out.result(f"Wrote {written.n_rows:,} recommendations for {written.n_users:,} users "
               f"(top {args.n}, {seen}) to {written.path} in {seconds:.1f} s")
    if written.n_fallback:
        out.info(f"{written.n_fallback:,} of {written.n_users:,} users got the popularity "
                 f"fallback (fallback column true; their scores are counts of users)")
    return 0


def cmd_recommend(args: argparse.Namespace, out: Output) -> int:
    import matfact

    if args.n < 1:
        raise UsageError(f"-n must be at least 1, got {args.n}")
    explain = getattr(args, "explain", None)
    if explain is not None and explain < 1:
        raise UsageError(f"--explain must be at least 1, got {explain}")
    _check_recommend_target(args)
    model = matfact.load(Path(args.model).expanduser())
    if args.out is not None:
        return _write_recommendations(args, model, out)
    from matfact.models.base import FALLBACK

    users = model.user_index_.coerce(args.user)
    # The library's one policy for unknown users (popularity), stated in every answer as
    # the service states it: "fallback" and what the scores are ("score_kind").
    ids, scores, fallback, *why = model.recommend(
        users, n=args.n, exclude_seen=not args.include_seen,
        unknown="raise" if args.strict else "fallback", return_fallback=True,
        explain=explain, approximate=getattr(args, "approximate", False))
    titles = None if args.item_titles is None else item_titles_file(args.item_titles)
    report = []
    under: list[list[list[str]] | None] = []
    for pos, user in enumerate(users.tolist()):
        rows = recommendation_rows(model, ids[pos], scores[pos], titles=titles)
        fell_back = bool(fallback[pos])
        entry = {"user": user, "known": not fell_back,
                 "fallback": FALLBACK if fell_back else None,
                 "score_kind": FALLBACK if fell_back else model.score_kind,
                 "items": rows}
        under.append(None if explain is None else
                     _explain_rows(model, entry, why[0][pos], titles))
        report.append(entry)
    if args.json:
        out.result(json.dumps(report, indent=2, default=str))
        return 0
    if model.score_kind == "rating":
        meaning = "predicted ratings on [{:g}, {:g}]".format(*model.rating_scale_)
    else:
        meaning = "ranking scores, not ratings"
    for pos, entry in enumerate(report):
        if pos:
            out.result()
        heading = f"Top {len(entry['items'])} for user {entry['user']}"
        if entry["fallback"]:
            heading += (f" (unknown to the model; fallback: {FALLBACK}, the items most users "
                        f"had; score: how many users had the item)")
        else:
            heading += f" (scores: {meaning})"
        print_recommendations(out, heading + ":", entry["items"], under=under[pos])
        if explain is not None:
            if entry["fallback"]:
                note = (f"no explanation: {FALLBACK} ranks by what most users had, not by "
                        f"this user's history")
            else:
                value = "weight if not 1" if model.is_implicit_ else "rating"
                # A HybridMF user placed by features: features have no rating to show.
                by_features = any(b.get("feature") for row in entry["items"]
                                  for b in row["because"] or ())
                shown = "" if by_features else f"{value}, "
                note = (f"in brackets: ({shown}contribution to the score); explained by "
                        f"{entry['explained_by']}")
            out.result(textwrap.fill(note, 94, initial_indent="  ", subsequent_indent="    ",
                                     break_on_hyphens=False))
    return 0


def _explain_rows(model: Any, entry: dict[str, Any], explanations: list | None,
                  titles: dict[Any, str] | None) -> list[list[str]] | None:
    """``recommend --explain``: add each item's ``because`` (and ``exact``, ``folded_in``)
    to ``entry`` for --json and return the lines to print under each row.

    A fallback user (``explanations`` None) gets ``because: null`` and no lines.
    """
    from matfact.models.explain import because_list

    if explanations is None:
        entry["explained_by"] = None
        for row in entry["items"]:
            row["because"] = None
        return None
    # --item-titles' mapping, else the model's own titles (in item-code order).
    names, index = ((titles, None) if titles is not None
                    else (getattr(model, "item_titles_", None), model.item_index_))
    lines = []
    # recommendation_rows dropped the padding slots, which have no explanation either.
    for row, why in zip(entry["items"], explanations, strict=True):
        row["because"] = because_list(why, names, index=index)
        row["exact"], row["folded_in"] = why.exact, why.folded_in
        lines.append(because_text(why, row["because"], bool(model.is_implicit_)))
    entry["explained_by"] = explanations[0].method if explanations else None
    return lines
