"""Choose a glonet grid's learning rate on validation (not a Snakemake rule).

Trains the grid's recipe from config.yaml (or a preset merged over it) at each learning
rate and prints the final validation accuracy of every run and the mean per lr; the test
set is never evaluated. The config comment of the grid's lr cites this output.

    PYTHONPATH=src python scripts/glonet_lr_sweep.py --mnist28 results/data/mnist/mnist28.npz \\
        --grid seed --lrs 0.01 0.003 0.001 0.0003 --models GloNet MLP --depths 6 50 200
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from rgbench.config import default_config  # noqa: E402
from rgbench.experiments.glonet import lr_sweep  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist28", required=True, help="the MNIST cache (results/data/mnist/mnist28.npz)")
    parser.add_argument("--preset", default=None, help="a preset file merged over config.yaml's glonet section")
    parser.add_argument("--grid", default="seed")
    parser.add_argument("--lrs", type=float, nargs="+", required=True)
    parser.add_argument("--models", nargs="+", default=["GloNet", "MLP"])
    parser.add_argument("--depths", type=int, nargs="+", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=None, help="also write the rows as JSON lines here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    config = default_config()["glonet"]
    if args.preset:
        grids = (yaml.safe_load(Path(args.preset).read_text()).get("glonet") or {}).get("grids", {})
        for name, values in grids.items():
            config["grids"].setdefault(name, {}).update(values)
    rows = lr_sweep(config, args.grid, args.mnist28, args.lrs, args.models, args.depths, args.seeds,
                    device=args.device)
    if args.out:
        Path(args.out).write_text("".join(json.dumps(row) + "\n" for row in rows))
    table = pd.DataFrame(rows).drop(columns="val_curve")
    pd.set_option("display.width", 200)
    print(table.pivot_table(index=["model", "depth"], columns="lr", values="val_accuracy").round(4))
    print("mean validation accuracy per lr:")
    print(table.groupby("lr")["val_accuracy"].mean().round(4))


if __name__ == "__main__":
    main()
