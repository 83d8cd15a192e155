"""``matfact images``: SVD eigenfaces and NMF parts on images (see :mod:`matfact.apps.images`).

The argparse options (:func:`configure_parser`), the command (:func:`run`) and
the text tables it prints; the factorizations, measures and figures are the
library's, in :mod:`matfact.apps.images`, imported when the command runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matfact._text import format_table
from matfact.exceptions import ParameterError

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    import numpy as np

__all__ = ["DEFAULT_RANKS", "configure_parser", "format_compression_table",
           "format_recognition_table", "run"]

#: Ranks of ``matfact images`` when ``--ranks`` is not given (those below the data's limit).
DEFAULT_RANKS = (5, 10, 20, 40, 80)
#: Patch side when --data is one image and --patch is not given.
_DEFAULT_PATCH = 16
#: The largest NMF rank shown in basis.png: the 7 × 7 basis of Lee & Seung's figure.
_LEE_SEUNG_RANK = 49


def _ranks_argument(text: str) -> list[int]:
    """``--ranks 5,10,20`` → [5, 10, 20] (argparse turns the error into a usage error)."""
    try:
        ranks = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 5,10,20,40,80, got {text!r}") from None
    if not ranks or min(ranks) < 1:
        raise argparse.ArgumentTypeError(f"ranks must be positive integers, got {text!r}")
    return ranks


def _size_argument(text: str) -> int:
    try:
        size = int(text)
    except ValueError:
        size = 0
    if size < 2:
        raise argparse.ArgumentTypeError(f"expected an integer >= 2, got {text!r}")
    return size


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``matfact images`` to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The subcommand's parser; its description and epilog are set if empty.
    """

    if parser.description is None:
        parser.description = (
            "Factorize images with a mean-centred SVD (eigenfaces) and NMF (parts), print "
            "rank, compression ratio, PSNR and relative error of each, measure 1-nearest-"
            "neighbour recognition against rank (when the images have classes), and write "
            "the figures basis.png, reconstructions.png, compression.png and recognition.png "
            "with compression.csv and recognition.csv."
        )
    if parser.epilog is None:
        parser.epilog = (
            "examples:\n"
            "  matfact images --data orl-faces --out images/\n"
            "  matfact images --data photos/ --ranks 5,10,20 --out photos-out/\n"
            "  matfact images --data picture.png --patch 16 --out picture-out/"
        )
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--data", default="orl-faces", metavar="NAME_OR_PATH",
        help="orl-faces (default), a folder of same-size images (one subfolder per person "
             "for recognition), or one image file to cut into patches")
    parser.add_argument("--data-home", metavar="DIR",
                        help="directory searched first for orl-faces (then $MATFACT_DATA, then "
                             "the cache)")
    parser.add_argument("--out", default="matfact-images", metavar="DIR",
                        help="directory for the figures and tables (default: ./matfact-images)")
    parser.add_argument("--ranks", type=_ranks_argument, metavar="LIST",
                        help="comma-separated ranks (default: those of "
                             f"{','.join(map(str, DEFAULT_RANKS))} the data allows)")
    parser.add_argument("--patch", type=_size_argument, metavar="SIZE",
                        help=f"patch side for a single image (default: {_DEFAULT_PATCH})")
    parser.add_argument("--n-train", type=int, default=5, metavar="N",
                        help="training images per person for recognition (default: 5; the "
                             "others are held out)")
    parser.add_argument("--split", choices=("first", "random"), default="first",
                        help="which images of each person train: the first N (default) or a "
                             "random N drawn with --seed")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the models and of --split random (default: 0)")
    # The default is the library's (factorize's max_iter), read when the command runs: the
    # parser must not import matfact.apps.images, so that `matfact --help` stays light.
    parser.add_argument("--max-iter", type=int, metavar="N",
                        help="NMF iterations (default: that of matfact.apps.images.factorize)")


def format_compression_table(table: Any) -> str:
    """The compression table as text: one line per rank, columns per method."""
    from matfact.apps.images import METHODS

    methods = [m for m in METHODS if m in set(table["method"])]
    headers = ["rank"]
    for method in methods:
        name = method.upper()
        headers += [f"{name} ratio", f"{name} PSNR (dB)", f"{name} rel. error"]
    rows = []
    for rank in sorted(table["rank"].unique()):
        cells = [str(rank)]
        for method in methods:
            found = table[(table["method"] == method) & (table["rank"] == rank)]
            if len(found):
                entry = found.iloc[0]
                cells += [f"{entry['compression_ratio']:.1f}", f"{entry['psnr']:.2f}",
                          f"{entry['relative_error']:.4f}"]
            else:
                cells += ["-", "-", "-"]
        rows.append(cells)
    return format_table(headers, rows, right=set(range(1, len(headers))))


def format_recognition_table(table: Any) -> str:
    """The recognition accuracies as text: one line per rank, a column per method."""
    from matfact.apps.images import METHODS

    methods = [m for m in METHODS if m in set(table["method"])]
    curves = table[table["method"] != "pixels"]
    rows = []
    for rank in sorted(curves["rank"].unique()):
        cells = [str(rank)]
        for method in methods:
            found = curves[(curves["method"] == method) & (curves["rank"] == rank)]
            cells.append(f"{found['accuracy'].iloc[0]:.1%}" if len(found) else "-")
        rows.append(cells)
    headers = ["rank", *(f"{m.upper()} accuracy" for m in methods)]
    return format_table(headers, rows, right=set(range(1, len(headers))))


def _describe(source: str, dataset: Any, patch: int | None, grid: tuple[int, int] | None) -> str:
    import numpy as np

    n, height, width = dataset.images.shape
    if grid is not None:
        return (f"{source}: {n} patches of {patch}x{patch} pixels ({grid[0]} x {grid[1]}) cut "
                f"from one image")
    classes = len(np.unique(dataset.labels))
    people = f", {classes} classes" if classes > 1 else ""
    return f"{source}: {n} images of {height}x{width} pixels{people}"


def run(args: argparse.Namespace) -> int:
    """Run ``matfact images``: tables to stdout, figures and CSVs to ``--out``.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed by a parser set up with :func:`configure_parser` (``quiet``, if
        present, silences the progress lines on stderr).

    Returns
    -------
    int
        0 on success. Bad input raises :class:`~matfact.ParameterError` or
        :class:`~matfact.DataError`, which the CLI reports in one line.
    """
    import numpy as np

    from matfact.apps.images import (
        compression_table,
        load_images,
        plot_basis,
        plot_compression,
        plot_recognition,
        plot_reconstructions,
        read_image,
        recognition_curve,
    )
    from matfact.plots import save_table

    quiet = bool(getattr(args, "quiet", False))

    def info(text: str) -> None:
        if not quiet:
            print(f"matfact images: {text}", file=sys.stderr)

    source = os.fspath(args.data)
    is_file = Path(source).expanduser().is_file()
    patch = args.patch if args.patch is not None or not is_file else _DEFAULT_PATCH
    if args.n_train < 1:
        raise ParameterError(f"--n-train must be at least 1, got {args.n_train}")
    max_iter = (compression_table.__kwdefaults__["max_iter"] if args.max_iter is None
                else args.max_iter)
    if max_iter < 1:
        raise ParameterError(f"--max-iter must be at least 1, got {max_iter}")
    dataset = load_images(source, patch=patch, data_home=args.data_home)
    grid = None
    if is_file:
        height, width = read_image(Path(source).expanduser()).shape
        grid = (height // patch, width // patch)
    stack = dataset.images  # validated (and made float) by each function it goes to
    n_images, height, width = np.shape(stack)
    n_pixels = height * width
    limit = min(n_images, n_pixels) - 1
    if args.ranks is None:
        ranks = [rank for rank in DEFAULT_RANKS if rank <= limit] or [limit]
    else:
        ranks = sorted(set(args.ranks))  # their range is checked by compression_table
    label = _describe(source, dataset, patch, grid)
    info(f"{label}; ranks {', '.join(map(str, ranks))}")

    table, fits = compression_table(stack, ranks, random_state=args.seed,
                                    max_iter=max_iter, return_fits=True, progress=info)
    out_dir = Path(args.out).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"Compression of {label}.")
    print(f"Data matrix {n_images} x {n_pixels}; ratio = {n_images} * {n_pixels} / stored "
          f"numbers (n*k + k*d, + d for the SVD mean); PSNR on the 0-255 scale; seed "
          f"{args.seed}.")
    print(f"SVD: mean-centred, ARPACK. NMF: Frobenius loss, coordinate descent from NNDSVD, "
          f"{max_iter} iterations.")
    print()
    print(format_compression_table(table))
    written = []
    written.append(save_table(table, out_dir / "compression.csv"))

    top = max(ranks)
    nmf_rank = max([rank for rank in ranks if rank <= _LEE_SEUNG_RANK] or [min(ranks)])
    written.append(plot_basis([fits["svd", top], fits["nmf", nmf_rank]], out_dir / "basis.png",
                              title=f"Basis images: {label}"))
    shown = list(fits.values())
    if grid is None:
        classes = np.unique(dataset.labels)
        # Two people when there are classes (their first images), else the first images.
        indices = ([int(np.flatnonzero(dataset.labels == c)[0]) for c in classes[:2]]
                   if len(classes) > 1 else list(range(min(2, n_images))))
    else:
        indices = []
    written.append(plot_reconstructions(stack, shown, out_dir / "reconstructions.png",
                                        indices=indices, grid=grid,
                                        title=f"Reconstructions: {label}"))
    written.append(plot_compression(table, out_dir / "compression.png",
                                    title=f"Compression: {label}"))

    reason = _recognition_obstacle(dataset.labels, args.n_train, is_file)
    print()
    if reason:
        print(f"Recognition: skipped ({reason}).")
    else:
        classes = len(np.unique(dataset.labels))
        n_train_total = classes * args.n_train
        usable = [rank for rank in ranks if rank <= min(n_train_total, n_pixels) - 1]
        dropped = sorted(set(ranks) - set(usable))
        if dropped:
            info(f"recognition skips rank(s) {', '.join(map(str, dropped))}: with "
                 f"{n_train_total} training images ranks go up to {n_train_total - 1}")
        if usable:
            shuffle = args.split == "random"
            recognition = recognition_curve(stack, dataset.labels, usable,
                                            n_train=args.n_train, shuffle=shuffle,
                                            random_state=args.seed, max_iter=max_iter,
                                            progress=info)
            chance = 1.0 / classes
            n_test = int(recognition["n_test"].iloc[0])
            how = "a random" if shuffle else "the first"
            print(f"Recognition: 1-nearest neighbour on the codes; {how} {args.n_train} images "
                  f"of each of {classes} classes train ({n_train_total} images), {n_test} are "
                  f"held out; chance {chance:.1%}.")
            print()
            print(format_recognition_table(recognition))
            pixels = float(recognition.loc[recognition["method"] == "pixels",
                                           "accuracy"].iloc[0])
            print(f"raw pixels (1-NN on all {n_pixels} pixels): {pixels:.1%}")
            written.append(save_table(recognition, out_dir / "recognition.csv"))
            written.append(plot_recognition(recognition, out_dir / "recognition.png",
                                            chance=chance, title=f"Recognition: {label}"))
        else:
            print(f"Recognition: skipped (no requested rank is below the {n_train_total} "
                  f"training images).")
    print()
    print("Wrote " + ", ".join(str(path) for path in written))
    return 0


def _recognition_obstacle(labels: np.ndarray, n_train: int, is_file: bool) -> str | None:
    """Why recognition cannot run on these labels, or None if it can."""
    import numpy as np

    if is_file:
        return "patches of one image have no classes"
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        return "the images have no classes: put each person's images in a subfolder"
    if counts.min() <= n_train:
        return (f"class {int(classes[counts.argmin()])} has {counts.min()} image(s); "
                f"--n-train {n_train} needs at least {n_train + 1} per class")
    return None
