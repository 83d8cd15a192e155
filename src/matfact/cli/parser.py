"""The ``matfact`` argument parser: every command, its options and examples.

Building it imports nothing heavy (the command modules import pandas, numba,
... inside their functions), so ``matfact --help`` stays fast. A bad command
line raises :class:`~matfact.exceptions.UsageError` instead of exiting.
"""

from __future__ import annotations

import argparse
import textwrap

from matfact._version import __version__
from matfact.cli import images as images_command
from matfact.cli import topics as topics_command
from matfact.cli.data import parse_rating_scale
from matfact.cli.demo import cmd_demo
from matfact.cli.models import cmd_evaluate, cmd_recommend, cmd_train
from matfact.cli.names import MODEL_NAMES
from matfact.cli.output import PROG
from matfact.cli.serving import cmd_index, cmd_retrain, cmd_serve
from matfact.exceptions import UsageError

__all__ = ["build_parser"]


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises :class:`UsageError` instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _add_data_options(parser: argparse.ArgumentParser, *, required: bool = True,
                      test: bool = False) -> None:
    group = parser.add_argument_group("data", textwrap.fill(
        "--data is a dataset name (ml-100k, ml-latest-small, book-crossing, steam, "
        "retailrocket; name:kind for a variant, e.g. steam:purchase) or a CSV/TSV/Parquet "
        "file. Columns are found by header name (e.g. user/userid/user_id/visitorid, item/"
        "itemid/movieid, rating/score/stars, timestamp/time/ts, weight/count/plays/hours) or, "
        "without a header, by position (user, item, rating, timestamp).", 78,
        break_on_hyphens=False))
    group.add_argument("--data", required=required, metavar="NAME_OR_FILE",
                       help="the interactions to use")
    if test:
        group.add_argument("--test", metavar="NAME_OR_FILE",
                           help="held-out interactions to evaluate on (instead of a split)")
    group.add_argument("--sep", help="field separator (default: sniffed from the first line; "
                                     "'\\t' or 'tab' for tabs)")
    group.add_argument("--no-header", action="store_true",
                       help="the file has no header line (default: detected)")
    for role in ("user", "item", "rating", "timestamp", "weight"):
        group.add_argument(f"--{role}-col", metavar="COL",
                           help=f"{role} column: header name or 0-based number")
    group.add_argument("--implicit", action="store_true",
                       help="treat the data as implicit feedback (ignore ratings)")
    group.add_argument("--rating-scale", type=parse_rating_scale, metavar="MIN,MAX[,STEP]",
                       help="the scale of the ratings, e.g. 1,5 or 0.5,5,0.5: a rating off it "
                            "is an error naming its line, and predicted ratings are clipped "
                            "to it (default: the ratings' min and max; a note if they look "
                            "implausible)")
    group.add_argument("--encoding", default="utf-8", help="text encoding (default: utf-8)")
    group.add_argument("--duplicates", default="error", choices=("error", "last", "sum", "mean"),
                       help="what to do with repeated (user, item) pairs (default: error)")
    group.add_argument("--extra-fields", default="error", choices=("error", "drop"),
                       help="what a line with more fields than the header is: an error "
                            "naming the line (default), or read with them dropped")
    group.add_argument("--data-home", metavar="DIR",
                       help="directory searched first for datasets (then $MATFACT_DATA, then "
                            "the cache)")
    for role in ("user", "item"):
        group.add_argument(f"--{role}-features", metavar="FILE",
                           help=f"a CSV/TSV/Parquet file of {role} side information: one row "
                                f"per {role} id (its column named like {role}, else the "
                                f"first), other columns features" + (
                                    "; a title column names the items in recommendations "
                                    "(stored in the model)" if role == "item" else ""))


def _model_help() -> str:
    return ", ".join(MODEL_NAMES)


_EXAMPLES = {
    "serve": """examples:
  MATFACT_API_KEY=... matfact serve --model model.zip --db ratings.sqlite --port 8000
  curl localhost:8000/users/196/recommendations?n=5""",
    "retrain": """examples:
  matfact retrain --data ml-100k --db ratings.sqlite --model model.zip
  matfact retrain --db ratings.sqlite --model model.zip --partial""",
    "train": """examples:
  matfact train --data ratings.csv --model baseline --out model.zip
  matfact train --data u.data --no-header --model baseline --param reg_user=5 --out m.zip""",
    "evaluate": """examples:
  matfact evaluate --data ml-100k --model baseline --split random --seed 42
  matfact evaluate --data ml-100k --model popularity --split per_user --metrics ndcg@10,map@10
  matfact evaluate --model model.zip --test test.csv --json
  matfact evaluate --data ml-100k --models baseline,biased_mf,als,nmf,pure_svd,popularity \\
      --cv 5 --out report/""",
    "recommend": """examples:
  matfact recommend --model model.zip --user 42 -n 10
  matfact recommend --model model.zip --user 7 --user 42 --include-seen --json
  matfact recommend --model model.zip --user 42 -n 5 --explain
  matfact recommend --model model.zip --all -n 10 --out recs.parquet""",
    "demo": """examples:
  matfact demo
  matfact demo --out /tmp/demo --data-home ~/datasets""",
}


def build_parser() -> argparse.ArgumentParser:
    """The ``matfact`` argument parser (imports nothing heavy)."""
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="no progress bars or chatter")
    parser = _Parser(
        prog=PROG,
        description="Matrix factorization for recommenders: train, evaluate and serve "
                    "recommendations from the command line.",
        epilog="Run 'matfact <command> --help' for the options of a command. "
               "Set MATFACT_DEBUG=1 to see tracebacks.",
    )
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bars or chatter")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    formatter = argparse.RawDescriptionHelpFormatter

    demo = commands.add_parser(
        "demo", parents=[quiet], formatter_class=formatter, epilog=_EXAMPLES["demo"],
        help="train the demo models on MovieLens 100K (or synthetic data), compare them",
        description="Train every demo model on MovieLens 100K (synthetic ratings if it is "
                    "absent; nothing is downloaded), print a comparison table and one user's "
                    "top 10, and write demo.png and demo.csv.",
    )
    demo.add_argument("--out", default="matfact-demo", metavar="DIR",
                      help="directory for demo.png and demo.csv (default: ./matfact-demo)")
    demo.add_argument("--data-home", metavar="DIR",
                      help="directory holding the ml-100k/ folder (then $MATFACT_DATA, then "
                           "the cache)")
    demo.set_defaults(handler=cmd_demo)

    train = commands.add_parser(
        "train", parents=[quiet], formatter_class=formatter, epilog=_EXAMPLES["train"],
        help="fit a model and save it", description="Fit a model on interactions and save it "
                                                    "(a .zip, or a directory).",
    )
    _add_data_options(train)
    train.add_argument("--model", default="baseline",
                       help=f"model name, case-insensitive: {_model_help()} (default: baseline)")
    train.add_argument("--out", required=True, metavar="PATH",
                       help="where to save the model (.zip, else a directory)")
    train.add_argument("--param", action="append", metavar="KEY=VALUE",
                       help="a model parameter; VALUE is read as JSON (1, 0.05, true, null) "
                            "or else as text; repeatable")
    cluster = train.add_mutually_exclusive_group()
    cluster.add_argument("--scheduler", metavar="ADDRESS",
                         help="fit als or implicit_als on this Dask scheduler, e.g. "
                              "tcp://host:8786 (needs the dist extra); a --data URL or glob "
                              "of Parquet files (s3://bucket/ratings/*.parquet) is read by "
                              "the workers")
    cluster.add_argument("--local-cluster", type=int, metavar="N",
                         help="fit als or implicit_als on a Dask cluster of N local worker "
                              "processes (1 thread each) started for this run")
    train.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser(
        "evaluate", parents=[quiet], formatter_class=formatter, epilog=_EXAMPLES["evaluate"],
        help="measure a model (by name: split, fit, evaluate; or a saved model)",
        description="With a model name: split --data, fit on the train part and evaluate on "
                    "the test part (or fit on --data and evaluate on --test). With a saved "
                    "model: evaluate it on --test, or on the test part of the split of --data.",
    )
    evaluate.add_argument("--model", metavar="NAME_OR_FILE",
                          help=f"a model name ({_model_help()}) or a saved model (.zip or a "
                               f"directory with meta.json); this or --models is required")
    evaluate.add_argument("--models", metavar="LIST",
                          help="compare models by cross-validation instead: comma-separated "
                               "model names, e.g. baseline,biased_mf,als,nmf,pure_svd,"
                               "popularity; writes a report (tables and figures) to --out")
    evaluate.add_argument("--cv", type=int, metavar="N",
                          help="with --models: number of k-fold splits (default: 5)")
    evaluate.add_argument("--out", metavar="DIR",
                          help="with --models: the report directory (default: ./report)")
    evaluate.add_argument("--tune", type=int, default=6, metavar="N",
                          help="with --models: tune each model with N trials on the first "
                               "fold's training part and plot them (default: 6; 0: no tuning)")
    _add_data_options(evaluate, required=False, test=True)
    evaluate.add_argument("--param", action="append", metavar="KEY=VALUE",
                          help="a model parameter (with a model name); repeatable")
    evaluate.add_argument("--split", default="random",
                          help="split strategy: random (default), per_user, temporal, last_n, "
                               "cold_users, cold_items")
    evaluate.add_argument("--test-size", type=float, default=0.2,
                          help="fraction held out (default: 0.2)")
    evaluate.add_argument("--seed", type=int, default=42,
                          help="seed of the split (and of the k-fold split with --models) and "
                               "of each model's random_state unless --param sets it; the same "
                               "command gives the same figures (default: 42)")
    evaluate.add_argument("--metrics", metavar="LIST",
                          help="comma-separated, e.g. rmse,mae,ndcg@10,precision@10,recall@20,"
                               "map,mrr,hit_rate,coverage,auc (default: rmse,mae if the model "
                               "predicts ratings, and ndcg@K,precision@K)")
    evaluate.add_argument("-k", type=int, default=10,
                          help="list length for ranking metrics without @k (default: 10)")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a table")
    evaluate.add_argument("--allow-overlap", action="store_true",
                          help="evaluate even when test pairs were in the model's training "
                               "data (a warning, and the count in the output); by default "
                               "that is refused, as the figures would measure memory")
    evaluate.set_defaults(handler=cmd_evaluate)

    recommend = commands.add_parser(
        "recommend", parents=[quiet], formatter_class=formatter, epilog=_EXAMPLES["recommend"],
        help="top-n items for users from a saved model",
        description="Print the top-n items for each user from a saved model: rank, item id, "
                    "title (if the model knows titles) and score. With --out, write the "
                    "lists to a Parquet or CSV file instead (one row per item: user, rank, "
                    "item, score, fallback); --all ranks every user the model knows, a "
                    "block of users at a time.",
    )
    recommend.add_argument("--model", required=True, metavar="FILE",
                           help="a saved model (.zip or directory)")
    recommend.add_argument("--user", action="append", metavar="ID",
                           help="a raw user id; repeatable (or --all)")
    recommend.add_argument("--all", action="store_true",
                           help="every user the model knows (needs --out)")
    recommend.add_argument("--out", metavar="FILE",
                           help="write the lists to FILE (.parquet, needs pyarrow, or .csv) "
                                "instead of printing them; written under a temporary name "
                                "and renamed when complete")
    recommend.add_argument("--block-size", type=int, metavar="USERS",
                           help="with --out: users scored per matrix product (default: "
                                "as many as keep the scores held at once bounded, see "
                                "matfact.models.batch.BLOCK_BYTES)")
    recommend.add_argument("-n", type=int, default=10, help="list length (default: 10)")
    recommend.add_argument("--approximate", action="store_true",
                           help="search the model's approximate index (faiss; built first "
                                "when the file has none: see 'matfact index') instead of "
                                "scoring every item: for catalogues of millions")
    recommend.add_argument("--include-seen", action="store_true",
                           help="also recommend items the user interacted with in training")
    recommend.add_argument("--strict", action="store_true",
                           help="an unknown user is an error (default: fallback ranking)")
    recommend.add_argument("--json", action="store_true", help="print JSON instead of tables")
    recommend.add_argument("--item-titles", metavar="FILE",
                           help="a CSV/TSV/Parquet file of item ids and titles (e.g. item,title) "
                                "to show, instead of the titles stored in the model")
    recommend.add_argument("--explain", type=int, nargs="?", const=3, default=None,
                           metavar="K",
                           help="under each item, the K items of the user's history that "
                                "add most to its score (\"because you rated X (5, +0.41), "
                                "...\") and the other terms; with --json a \"because\" "
                                "list per item (K defaults to 3)")
    recommend.set_defaults(handler=cmd_recommend)

    topics = commands.add_parser(
        "topics", parents=[quiet], formatter_class=formatter,
        help="NMF topics of a text collection (TF-IDF → NMF): top words, shares, PNG, CSV",
        description="Turn documents into NMF topics: print each topic's top words and share "
                    "of the documents (and agreement with labels, where there are some); "
                    "write a PNG of the top words and a CSV of document-topic weights.",
    )
    topics_command.configure_parser(topics)
    topics.set_defaults(handler=lambda args, out: topics_command.run(args))

    images = commands.add_parser(
        "images", parents=[quiet], formatter_class=formatter,
        help="SVD (eigenfaces) vs NMF (parts) on images: bases, compression, recognition",
        description="Factor a set of same-size grayscale images (or one image cut into "
                    "patches) by SVD and NMF: write basis images, reconstructions and "
                    "error/PSNR and recognition plots; print the compression table.",
    )
    images_command.configure_parser(images)
    images.set_defaults(handler=lambda args, out: images_command.run(args))

    serve = commands.add_parser(
        "serve", parents=[quiet], formatter_class=formatter, epilog=_EXAMPLES["serve"],
        help="serve recommendations over HTTP (FastAPI)",
        description="Serve a saved model over HTTP: recommendations, predictions, live "
                    "ratings logged to SQLite and folded in at once, hot reload, metrics.")
    serve.add_argument("--model", required=True, metavar="PATH", help="the model file")
    serve.add_argument("--db", required=True, metavar="PATH_OR_URL",
                       help="the rating log: an SQLite file (created if missing) or an "
                            "SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db")
    serve.add_argument("--host", default="127.0.0.1", help="address (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    serve.add_argument("--api-key-file", metavar="PATH",
                       help="file holding the write key (default: $MATFACT_API_KEY)")
    serve.add_argument("--require-key", action="store_true",
                       help="require the key for reads too")
    serve.add_argument("--index", choices=("exact", "approximate", "auto"), default="auto",
                       help="how lists are searched: score every item, or the approximate "
                            "index (faiss; built at start if the model file has none); auto: "
                            "approximate from 200,000 items on (default: auto)")
    serve.add_argument("--precompute", type=int, default=None, metavar="USERS",
                       help="precompute the lists of this many users, the most active first "
                            "(default: 100,000 with the exact index, none with the "
                            "approximate one; 0: none)")
    serve.set_defaults(handler=cmd_serve)

    index = commands.add_parser(
        "index", parents=[quiet], formatter_class=formatter,
        help="build a model file's approximate top-k index (faiss) into the file",
        description="Build the approximate index that recommend(..., approximate=True) and "
                    "'matfact serve --index approximate' search, calibrated to a recall "
                    "target, and save it in the model file (so a server need not build it "
                    "at start). Needs the ann extra: pip install 'matfact[ann]'.")
    index.add_argument("--model", required=True, metavar="PATH", help="the model file")
    index.add_argument("--recall", type=float, default=0.95,
                       help="recall@10 the calibration must reach (default: 0.95)")
    index.add_argument("--lists", type=int, default=None,
                       help="k-means lists (default: about sqrt(items))")
    index.add_argument("--probe", type=int, default=None,
                       help="lists read per query (default: calibrated to --recall)")
    index.add_argument("--similar", action="store_true",
                       help="also index the unit item vectors for similar items")
    index.set_defaults(handler=cmd_index)

    retrain = commands.add_parser(
        "retrain", parents=[quiet], formatter_class=formatter, epilog=_EXAMPLES["retrain"],
        help="refit a served model from the data plus the logged ratings",
        description="Refit the model from --data plus every rating in the log (or refine "
                    "it with partial_fit), and replace the model file atomically; then "
                    "POST /admin/reload swaps it into a running server.")
    _add_data_options(retrain, required=False)
    retrain.add_argument("--db", required=True, metavar="PATH_OR_URL",
                         help="the rating log (SQLite file or SQLAlchemy URL)")
    retrain.add_argument("--model", required=True, metavar="PATH",
                         help="the model file to replace")
    retrain.add_argument("--model-name", help="fit this model instead of the file's class "
                                              "(default: the file's class and parameters)")
    retrain.add_argument("--partial", action="store_true",
                         help="refine the existing model with partial_fit on the log only")
    retrain.set_defaults(handler=cmd_retrain)
    return parser
