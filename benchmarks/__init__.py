"""Side-by-side benchmarks of matfact against peer libraries.

Run ``python -m benchmarks {rating,topn,speed,als,nmf,svd,selection,all,report} [--quick]
[--out DIR] [--no-docs]`` (or ``make bench``). Each suite module exposes ``run(quick: bool) -> dict``; the results
are written as JSON to ``benchmarks/results/`` (not committed) and rendered into
``docs/benchmarks.md``, which is the project's record of the measured figures.
"""
