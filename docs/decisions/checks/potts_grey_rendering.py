"""Validation check behind `levels_to_grey` (docs/decisions/potts_ebm.md): how the 4 levels
are drawn as grey, judged on the validation split only (never the test set).

Renders the 5,000 validation images' levels three ways and scores each with the seed-0
reference classifier of a finished default run (recognisable fraction and FID against its
reference statistics):

    python docs/decisions/checks/potts_grey_rendering.py [--results results]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from rgbench.data.mnist import train_mask
from rgbench.data.preprocess import LEVELS, discretise, levels_to_grey
from rgbench.evaluation.quality import sample_quality
from rgbench.evaluation.reference import load_reference_classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default="results", help="results directory of a finished default run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = Path(args.results)
    data = np.load(results / "data/mnist/mnist28.npz")
    images, val = data["train_images"], np.asarray(data["val_index"])
    train = train_mask(len(images), val)
    train_levels, train_grey = discretise(images[train]), images[train].astype(np.float32) / 255.0
    renderings = {
        "bin centres": (np.arange(LEVELS, dtype=np.float32) + 0.5) / LEVELS,
        "level / 3 (levels_to_grey)": levels_to_grey(np.arange(LEVELS)),
        "training mean grey per bin": np.array([train_grey[train_levels == k].mean() for k in range(LEVELS)],
                                               dtype=np.float32),
    }
    classifier = load_reference_classifier(results / "runs/reference_classifier/seed-0/model.pt")
    stats = results / "runs/reference_classifier/seed-0/reference_stats.npz"
    val_levels = discretise(images[val])
    for name, grey in renderings.items():
        quality = sample_quality(classifier, grey[val_levels], stats)
        print(f"{name:28s} grey {np.round(grey, 3)}  recognisable {quality['recognisable_fraction']:.3f}  "
              f"FID {quality['fid']:.1f}")


if __name__ == "__main__":
    main()
