"""Regenerate ``docs/benchmarks.md`` from the JSON results of the suites.

The page keeps its hand-written introduction (everything above :data:`MARKER`; a default
one is written the first time) and regenerates the rest from the ``<suite>.json`` of every
suite in the results directory (it refuses while one is missing): a "how to regenerate"
note, the environment, one section of tables per suite, and each suite's protocol. Quick runs (``<suite>-quick.json``) are never rendered.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from benchmarks.common import DOCS_FILE, RESULTS_DIR, SUITES, markdown_table

__all__ = ["MARKER", "INTRO", "MissingResults", "load_results", "render", "write_docs"]

#: Separates the hand-written introduction from the generated part.
MARKER = ("<!-- Generated below this line by `python -m benchmarks report` from "
          "benchmarks/results/*.json: edit only the text above it. -->")

#: The introduction written when the page does not exist yet (edit it in the page afterwards).
INTRO = """\
# Benchmarks

matfact measured side by side with the libraries it is meant to match or beat, on the same
data, the same training and test rows, and the same metric code for both sides.

These are **single runs on a shared 2-core machine**, not a controlled lab: other jobs may
run at the same time, so timings carry noise of tens of percent. To damp it, every time is
a **median** of repeated runs (the table headers say of how many), and comparisons are given
as **ratios** (peer time / matfact time, so > 1 means matfact is faster), which travel
between machines better than absolute seconds. Accuracy figures are deterministic: they do
not depend on the machine. The exact protocol of each suite is at the end of the page.
## Reading the SGD tables

- **Different implementations, same model.** matfact's `BiasedMF` / `SVDPlusPlus` and
  Surprise's `SVD` / `SVDpp` minimise the same kind of objective but differ in
  initialisation, update order and, in the default rows, parameters (Surprise's `SVDpp()` has
  20 factors, matfact's 100). So their RMSEs differ and the per-fold "prediction difference"
  is large; it is only a consistency check for `Baseline`, where both fit the same model.
- **Goals** from the issue are stated in a `goal` column and judged on the figures of the same
  table: ✓ met, ✗ not met. The cross-validation and fixed-split tables judge separately.
- **Fit time vs epoch time.** The MovieLens tables time whole fits (all epochs; matfact's
  include its data preparation, the peer's exclude its trainset build, shown apart). Surprise
  `SVDpp()` is timed once per split (≈ 10 s a fit); every other fit is a median of 3. The
  speed suite times single epochs: matfact's kernel call from the `fit` callback, Surprise's
  as (4-epoch fit − 1-epoch fit) / 3; data preparation is listed separately.
- **Two threads on a shared 2-core machine.** matfact's parallel epoch runs 16 strata, each
  ending in a barrier, so a second job on the machine stalls both threads: a `BiasedMF` fit
  can then take many times longer, and the 2-thread figure can fall below the 1-thread one.
  So each measurement first waits (up to 60 s) for other processes to leave the CPUs, and
  the tables show how many cores they used during it ("other processes' CPU"): read a
  timing next to that figure. The 1- vs 2-thread factors are compared byte for byte.
- **The memory-traffic bound** is a model, not a measurement: the bytes an epoch touches
  (counted as in the protocol) divided by 45 GB/s. It gives the scale of the fastest
  plausible epoch; cached item rows can make the true traffic smaller.

## Reading the ALS tables

- **Same objective, same start.** In the implicit-ALS speed tables both libraries minimise
  the same objective (implicit is given the confidences `1 + α·w` as its matrix, matfact uses
  `reg_exponent=0`) from the same initial factors, and the loss table checks it: the
  training losses after 3 iterations agree to about 1e-8. The time ratio therefore compares
  the same work, iteration for iteration, each library timing its own iterations.
- **Peers scored by matfact's metric code.** The top-N tables map implicit's recommendations
  to matfact's item indices and score them with `matfact.evaluation.metrics` against the
  relevant sets `evaluate_ranking` builds; the table notes how far that scorer is from
  `evaluate_ranking` on matfact's own lists (0).
- **Thread counts.** The speed and memory tables run both libraries on 2 threads; the top-N
  and rating tables run each library at its natural thread count (matfact's default picks
  it from the work per step, implicit uses every core, myFM one); the rating tables show how
  many cores each fit kept busy. Timed speed and rating measurements disturbed by another
  process are redone.

## Reading the NMF and SVD tables

- **Time to the peer's loss.** Whole-matrix NMF is judged as the issue asks: scikit-learn
  runs to its own stopping rule and its final loss is the target; matfact starts from the
  same factors and is stopped by a callback at the first iteration whose loss is at or below
  it. Both losses are recomputed in float64 by one function, so no float32 rounding decides
  the crossing. matfact's default `cd` makes scikit-learn's own updates (one sweep per
  update), so it reaches the target at the same iteration; the ratio is per-iteration speed
  (parallel sparse products, rows solved in SIMD lanes).
- **Randomized SVD at equal error**: both libraries run the same range finder settings;
  the table shows both reconstruction errors next to the times.

## Reading the cold-start, time and serving tables

- **Peers in the same process, same rows.** LightFM (hybrid) and myFM (Bayesian with
  features) are fitted on exactly the training rows matfact gets and scored by the same
  metric code; the feature encodings are the same for both sides (myFM is given the
  `FeatureEncoder` matrices, with the genre flags in one group as ours).
- **Extra groups are labelled.** The Bayesian table has two matfact rows: the issue's feature
  set, and that set plus the item-side implicit group ("users who rated this item"); myFM is
  run on both.
- **Onboarding** reports the share of the RMSE gap (0 answers → trained fully) closed; the
  first table folds answers in by the posterior mean (`fold_in="posterior"`), the second by
  the model's own ridge `fold_in`.
- **Serving figures include the client**: a raw-socket asyncio client on the same 2-core
  machine as the server. "top-10" answers come from lists precomputed per user at start
  (exact: a list whose cut-off is tied is not kept); "scored per request" asks with
  `exclude_seen=false`, which those lists do not hold, so every request is scored.
"""

_REGENERATE = """\
## How to regenerate

From the repository root: `make bench` (installs the peer libraries into `.venv`, then runs
everything), or, in an environment that has them, `python -m benchmarks all`. A single
suite: `python -m benchmarks rating`, `topn`, `speed`, `als`, `nmf`, `svd`, `selection`,
`coldstart`, `hybrid`, `bayesian`, `onboarding`, `replay` or `serve_load` (`speed`, `als`
and `nmf` take several minutes: Surprise at 10M ratings; implicit's Cholesky solver at 30M;
scikit-learn's NMF at 10M); `--quick` is a smoke
test that leaves this page alone. Raw results go to `benchmarks/results/<suite>.json`, which
is not committed: this page is the record. `python -m benchmarks report` rebuilds the page
from those files, keeping the introduction above; it refuses while a suite has no file, so a
suite skipped for lack of data never erases its tables here.
"""


class MissingResults(Exception):
    """Some suite has no result file, so regenerating the page would drop its recorded tables."""


def load_results(results_dir: str | os.PathLike = RESULTS_DIR) -> list[dict[str, Any]]:
    """The full (non-quick) suite results in ``results_dir``, in page order.

    Parameters
    ----------
    results_dir : path-like, default=RESULTS_DIR

    Returns
    -------
    list of dict
        One parsed ``<suite>.json`` per suite; empty if there is none.
    """
    paths = [p for p in Path(results_dir).glob("*.json") if not p.stem.endswith("-quick")]
    results = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    results = [r for r in results if not r.get("quick")]

    def rank(result: dict[str, Any]) -> tuple[int, str]:
        suite = result["suite"]
        return (SUITES.index(suite) if suite in SUITES else len(SUITES), suite)

    return sorted(results, key=rank)


def _environment_rows(env: dict[str, Any]) -> list[tuple[str, str]]:
    load = env.get("load_average")
    rows = [
        ("date (UTC)", env["date"]),
        ("CPU", env["cpu"]),
        ("cores", env["cores"]),
        ("load average at start (1, 5, 15 min)",
         "—" if load is None else ", ".join(f"{x:g}" for x in load)),
        ("platform", env["platform"]),
        ("Python", env["python"]),
    ]
    rows += [(name, version) for name, version in env["versions"].items()]
    rows.append(("BLAS (threadpoolctl)", "; ".join(sorted(env["blas"]))))
    rows.append(("matfact revision", env["matfact_git"]))
    return rows


def _environment(results: list[dict[str, Any]]) -> str:
    per_suite = [dict(_environment_rows(r["environment"])) for r in results]
    fields = list(per_suite[0])
    for env in per_suite[1:]:
        fields += [f for f in env if f not in fields]
    per_run = ("date (UTC)", "load average at start (1, 5, 15 min)", "matfact revision")
    shared = all(len({env.get(f, "—") for env in per_suite}) == 1 for f in fields
                 if f not in per_run)
    if len(results) == 1 or shared:
        # one environment; the date, load and revision of each run differ: listed per suite
        rows = []
        for field in fields:
            values = [env.get(field, "—") for env in per_suite]
            if len(set(values)) == 1:
                rows.append([field, values[0]])
            else:
                rows.append([field, "; ".join(f"{r['suite']}: {v}"
                                              for r, v in zip(results, values, strict=True))])
        return markdown_table(["", "value"], rows)
    columns = ["", *(r["suite"] for r in results)]
    return markdown_table(columns, [[f, *(env.get(f, "—") for env in per_suite)]
                                    for f in fields])


_RATIO_COLUMNS = ("speed ratio", "speed vs", "speed-up")
_RATIO = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*×")
#: The figure written beside the page by :func:`write_docs`.
SPEED_FIGURE = "img/benchmarks-speed.png"


def speed_ratios(results: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """Every speed ratio in the tables, labelled ``suite: first cells`` (peer time / ours).

    Cells read like ``2.86×``; a column counts when its name says "speed ratio",
    "speed vs" or "speed-up". Cells that are not a ratio (—, n/a), a peer's own row
    (1.00×) and per-fold tables are skipped.
    """
    found = []
    for result in results:
        for table in result["tables"]:
            if "per fold" in table["title"].lower():
                continue  # the summary rows already hold these
            columns = [c.lower() for c in table["columns"]]
            wanted = [i for i, c in enumerate(columns) if any(w in c for w in _RATIO_COLUMNS)]
            for column in wanted:
                for row in table["rows"]:
                    match = _RATIO.match(str(row[column]))
                    if match is None or float(match.group(1)) == 1.0:
                        continue  # not a ratio, or a peer's own row (1.00× by definition)
                    label = " · ".join(str(cell) for cell in row[:2] if str(cell).strip())
                    found.append((f"{result['suite']}: {label}"[:70], float(match.group(1))))
    return found


def draw_speed_figure(results: list[dict[str, Any]], path: str | os.PathLike) -> Path | None:
    """A bar per speed ratio (log scale, 1× marked); ``None`` when the tables have none."""
    ratios = speed_ratios(results)
    if not ratios:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from matfact.plots import MODEL_COLORS, save_figure

    labels, values = zip(*ratios, strict=True)
    fig = Figure(figsize=(8.5, 0.28 * len(ratios) + 1.2), dpi=120, layout="constrained",
                 facecolor="white")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    rows = range(len(ratios))[::-1]
    colors = [MODEL_COLORS[0] if v >= 1 else MODEL_COLORS[1] for v in values]
    ax.barh(list(rows), values, color=colors, height=0.7)
    ax.set_yticks(list(rows), labels, fontsize=7)
    ax.set_xscale("log")
    ax.axvline(1.0, color="#444444", linewidth=1)
    for row, value in zip(rows, values, strict=True):
        ax.annotate(f"{value:.2f}×", (value, row), xytext=(3, 0), textcoords="offset points",
                    va="center", fontsize=7)
    ax.set_xlabel("speed ratio: the peer's time / matfact's time (> 1: matfact is faster)")
    ax.set_title("Speed against the peers, every measured case", loc="left", fontsize=10)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, path, dpi=120)


def render(results: list[dict[str, Any]], intro: str = INTRO,
           figures: list[tuple[str, str]] = ()) -> str:
    """The whole page: ``intro``, the marker, then the generated sections.

    Parameters
    ----------
    results : list of dict
        Suite results as from :func:`load_results`.
    intro : str, default=INTRO
        Hand-written markdown shown first, title included.

    Returns
    -------
    str
    """
    parts = [intro.rstrip() + "\n", MARKER + "\n", _REGENERATE]
    parts.append("## Environment\n\n" + _environment(results) + "\n")
    if figures:
        parts.append("## Figures\n")
        parts += [f"![{title}]({target})\n" for title, target in figures]
    parts.append("## Results\n")
    for result in results:
        elapsed = result.get("elapsed_s")
        when = f"Run on {result['environment']['date']}"
        if elapsed is not None:
            when += f", {elapsed:.0f} s in all"
        parts.append(f"### {result['title']}\n\n{when}.\n")
        for table in result["tables"]:
            block = f"#### {table['title']}\n\n" + markdown_table(table["columns"], table["rows"])
            if table.get("note"):
                block += f"\n\n{table['note']}"
            parts.append(block + "\n")
    parts.append("## Protocols\n")
    for result in results:
        parts.append(f"### {result['title']}\n\n{result['protocol'].rstrip()}\n")
    return "\n".join(parts)


def write_docs(results_dir: str | os.PathLike = RESULTS_DIR,
               docs_file: str | os.PathLike = DOCS_FILE) -> Path:
    """Rewrite ``docs_file`` from the results in ``results_dir``, keeping its introduction.

    Parameters
    ----------
    results_dir : path-like, default=RESULTS_DIR
    docs_file : path-like, default=DOCS_FILE

    Returns
    -------
    Path
        ``docs_file``.

    Raises
    ------
    MissingResults
        If a suite of :data:`~benchmarks.common.SUITES` has no result in ``results_dir``:
        the page is the only record (the JSON files are not committed), so it is left as is
        rather than lose that suite's tables.
    """
    results = load_results(results_dir)
    missing = [name for name in SUITES if name not in {r["suite"] for r in results}]
    if missing:
        raise MissingResults(
            f"no results for {', '.join(missing)} in {results_dir}; "
            f"run `python -m benchmarks all` first"
        )
    path = Path(docs_file)
    intro = INTRO
    if path.exists():
        text = path.read_text(encoding="utf-8")
        if MARKER in text:
            intro = text.split(MARKER, 1)[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    figures = []
    if draw_speed_figure(results, path.parent / SPEED_FIGURE) is not None:
        figures.append(("Speed ratios against the peers", SPEED_FIGURE))
    path.write_text(render(results, intro, figures), encoding="utf-8")
    return path
