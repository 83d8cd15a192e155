"""``matfact topics`` and ``matfact images`` (cli/topics.py, cli/images.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from matfact import cli


# ---------------------------------------------------------------------- app commands
@pytest.mark.filterwarnings("ignore::matfact.exceptions.ConvergenceWarning")
def test_topics_command_is_wired(tmp_path, capsys):
    # Two disjoint vocabularies: the factorization is exact and the cd stopping rule may
    # not trigger before max_iter, which is beside the point here.

    rng = np.random.default_rng(0)
    words = {"sport": ["match", "goal", "team", "coach", "league"],
             "money": ["bank", "shares", "profit", "market", "rates"]}
    rows = [{"text": " ".join(rng.choice(vocab, size=20)), "label": label}
            for label, vocab in words.items() for _ in range(10)]
    pd.DataFrame(rows).to_csv(tmp_path / "docs.csv", index=False)
    out = tmp_path / "topics"
    code = cli.main(["topics", "--data", str(tmp_path / "docs.csv"), "-k", "2", "--min-df",
                     "1", "--max-df", "1.0", "--out", str(out)])
    assert code == 0
    assert "purity" in capsys.readouterr().out.lower()
    assert (out / "topics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(pd.read_csv(out / "document_topics.csv")) == 20


def test_images_command_is_wired(tmp_path, capsys):
    from PIL import Image

    rows, cols = np.mgrid[:32, :32]
    picture = 120 + 100 * np.sin(rows / 5.0) * np.cos(cols / 7.0)
    Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8)).save(tmp_path / "p.png")
    out = tmp_path / "images"
    code = cli.main(["images", "--data", str(tmp_path / "p.png"), "--patch", "8", "--ranks",
                     "2,4", "--out", str(out)])
    assert code == 0
    assert "PSNR" in capsys.readouterr().out
    assert (out / "compression.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_loss_choices_are_the_librarys():
    from matfact.apps.topics import LOSSES
    from matfact.cli.topics import LOSS_CHOICES

    assert set(LOSS_CHOICES) == set(LOSSES)


def test_images_max_iter_defaults_to_the_librarys(tmp_path, capsys):
    from matfact.cli import images

    parser = cli.build_parser()
    args = parser.parse_args(["images", "--data", str(tmp_path / "p.png")])
    assert args.max_iter is None  # run() uses factorize's default
    assert images.DEFAULT_RANKS == (5, 10, 20, 40, 80)
