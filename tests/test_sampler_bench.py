"""sampler_bench's energy checks: the naive energy agrees with the vectorised one, the speed
row times both, the THRML check records the all-ones state the seed compared, and a job
writes one metrics.json per row with the lattice side (never "grid") as its parameter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rgbench.experiments.sampler_bench import SEED_INIT, energy_check, energy_speed, naive_energy, random_model, run_job


@pytest.fixture
def one_thread():
    """THRML's checks pin XLA to torch's thread count when they first import jax; one thread
    is what the pipeline's rule gives them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("side", [2, 3, 5])
def test_naive_energy_is_the_vectorised_energy(side: int) -> None:
    model = random_model(side, bias_sd=1.0, coupling=0.7, seed=side)
    x = torch.randint(0, 4, (6, side, side), generator=torch.Generator().manual_seed(side), dtype=torch.uint8)
    with torch.no_grad():
        expected = model.energy(x)
        got = naive_energy(model.bias[0], *model.coupling.tolist(), x)
    assert torch.allclose(got, expected, atol=1e-5)


def test_naive_energy_by_hand() -> None:
    """2x2 lattice, all sites level 1: -(sum of the level-1 biases) - 2 w_h - 2 w_v."""
    bias = torch.zeros(2, 2, 4)
    bias[..., 1] = torch.tensor([[0.5, -1.0], [2.0, 0.25]])
    x = torch.ones(1, 2, 2, dtype=torch.uint8)
    assert naive_energy(bias, 0.3, 0.7, x).item() == pytest.approx(-(1.75 + 2 * 0.3 + 2 * 0.7))


def test_energy_speed_row_times_both_on_the_seeds_model() -> None:
    row = energy_speed(side=6, states=4, repeats=2, seed=0)
    assert row["naive_vs_vectorised_max_abs_diff"] < 1e-5
    assert row["naive_seconds"] > 0 and row["vectorised_seconds"] > 0 and row["vectorised_calls"] >= 1
    assert row["energy_speedup"] == pytest.approx(row["naive_seconds"] / row["vectorised_seconds"])
    assert row["energy_states"] == 4 and row["repeats"] == 2


def test_energy_check_records_the_all_ones_state(one_thread) -> None:
    row = energy_check(side=4, states=8, init=SEED_INIT, seed=0)
    assert 0 <= row["energy_ones_abs_diff"] <= row["energy_max_abs_diff"] < 1e-4
    assert row["energy_states"] == 8


def test_job_writes_one_row_per_check_with_the_side(tmp_path: Path, one_thread) -> None:
    runs = {"energy_side-3_init-seed_seed-0": {"check": "energy", "implementation": "thrml", "side": 3, "init": "seed",
                                               "seed": 0},
            "energy_speed_side-3_seed-0": {"check": "energy_speed", "implementation": "torch", "side": 3, "seed": 0}}
    outputs = {key: str(tmp_path / key / "metrics.json") for key in runs}
    config = {"seconds_per_run": 0.01, "repeats": 1, "seed": 0, "energy_states": 4, "runs": runs}
    rows = run_job(config, outputs, device="cpu")
    assert [row["check"] for row in rows] == ["energy", "energy_speed"]
    for key, spec in runs.items():
        record = json.loads(Path(outputs[key]).read_text())
        assert record["params"]["side"] == 3 and "grid" not in record["params"]
        assert record["seed"] == 0 and record["provenance"]["n_params"] == 3 * 3 * 4 + 2
    speed = json.loads(Path(outputs["energy_speed_side-3_seed-0"]).read_text())["metrics"]
    assert speed["energy_speedup"] > 0
    with pytest.raises(ValueError, match="unknown check"):
        run_job({**config, "runs": {"x": {"check": "colour", "side": 3, "seed": 0}}}, {"x": str(tmp_path / "x.json")})
