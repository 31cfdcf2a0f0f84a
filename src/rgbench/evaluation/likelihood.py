"""Test log-likelihoods of the 4-level generators, beside a baseline of the same kind.

- Baselines, exact: the independent-pixel model for unconditional models, and for
  class-conditional ones the class mixture sum_y p(y) p(x | y) of per-class independent
  models (``baseline_log_prob``).
- Lattice Potts models: log Z by annealed importance sampling (AIS) from the matching
  independent model, per class for a conditional model, with a doubling check (a run with
  half the chains and steps; ``converged`` when no log Z moved by more than 0.1 nats), and
  reverse annealing (RAISE) lower bounds on the first test images.
- RBMs: the same pair, AIS for log Z and RAISE for the bound that cannot flatter.

AIS is unbiased in Z, so its log Z is low on average and its NLL optimistic;
``conservative_gain_nats`` (RAISE minus the baseline on the same images) cannot flatter,
and ``conservative_margin_nats`` is that gain minus two standard errors.

Under the paper preset's probe (a :class:`rgbench.probe.Probe`), AIS, its check and RAISE
run their full chains (and every RAISE image) for the probe's few annealing steps, each in
its own measured block, so that the cost table scales each by its own cut.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
import torch.nn as nn

from rgbench.data.preprocess import CLASSES, LevelData
from rgbench.evaluation.stats import mean_se
from rgbench.models.potts import IndependentModel, PottsModel, ais_potts, raise_potts
from rgbench.models.rbm import CategoricalRBM, ais_rbm, power_schedule, raise_log_prob
from rgbench.probe import Probe, capped, measured

AIS_CONVERGED_NATS = 0.1  # the doubling check's tolerance on log Z


class AnnealingSettings(Protocol):
    """The annealing budgets :func:`likelihood_metrics` reads (an experiment's analysis config)."""

    ais_chains: int  # RBMs
    ais_steps: int
    ais_power: float  # beta_k = (k / steps) ** power
    raise_images: int
    raise_steps: int
    lattice_ais_chains: int  # lattice models, per log Z
    lattice_ais_steps: int


def class_prior(labels: np.ndarray) -> np.ndarray:
    """The share of each class among ``labels``."""
    return np.bincount(labels, minlength=CLASSES) / len(labels)


def mixture_log_prob(per_class: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """log sum_y p(y) p(x | y) from (N, K) log p(x | y)."""
    joint = per_class + np.log(prior)[None]
    top = joint.max(1, keepdims=True)
    return (top + np.log(np.exp(joint - top).sum(1, keepdims=True)))[:, 0]


def baseline_log_prob(conditional: bool, x: np.ndarray, independent: IndependentModel,
                      class_independent: IndependentModel, prior: np.ndarray) -> np.ndarray:
    """The matching baseline's exact log p(x): the class mixture for conditional models."""
    if conditional:
        per_class = np.stack([class_independent.log_likelihood(x, np.full(len(x), k)) for k in range(CLASSES)], 1)
        return mixture_log_prob(per_class, prior)
    return independent.log_likelihood(x)


def annealing_steps(probe: Probe | None, steps: int) -> int:
    """The annealing steps a loop runs: all of them, or under a probe its ``eval_batches``
    (each step moves every chain at once: a step is the loop's batch)."""
    return capped(probe, steps, 1)


@torch.no_grad()
def lattice_log_z(model: PottsModel, base: IndependentModel, chains: int, steps: int, power: float,
                  generator: torch.Generator, probe: Probe | None = None) -> dict[str, Any]:
    """log Z of a lattice model (per class for potts_cond) by AIS, and the doubling check: a
    run with half the chains and half the steps (a ``probe`` cuts the steps of both)."""
    labels = list(range(model.config.classes)) if model.conditional else [None]
    full, half, ess = [], [], []
    for label in labels:
        # numba sweeps that torch does not see: timed, not counted
        with measured(probe, "ais", count=False):
            betas = power_schedule(annealing_steps(probe, steps), power)
            result = ais_potts(model, base, chains, betas, generator, label=label)
        with measured(probe, "ais_check", count=False):
            betas = power_schedule(annealing_steps(probe, max(steps // 2, 1)), power)
            half.append(ais_potts(model, base, max(chains // 2, 2), betas, generator, label=label).log_z)
        full.append(result.log_z)
        ess.append(result.ess)
    shift = float(np.max(np.abs(np.asarray(full) - np.asarray(half))))
    return {"log_z": np.asarray(full), "log_z_half": np.asarray(half), "doubling_shift": shift,
            "converged": bool(shift <= AIS_CONVERGED_NATS), "ess": float(min(ess))}


@torch.no_grad()
def lattice_log_prob(model: PottsModel, x: np.ndarray, log_z: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """log p(x) of a lattice model given its log Z (per class: the class mixture)."""
    images = torch.from_numpy(x)
    if not model.conditional:
        return -model.energy(images).double().numpy() - log_z[0]
    per_class = np.stack([-model.energy(images, torch.full((len(x),), k)).double().numpy() - log_z[k]
                          for k in range(CLASSES)], axis=1)
    return mixture_log_prob(per_class, prior)


def _lattice_estimates(model: PottsModel, data: LevelData, base: IndependentModel, class_independent: IndependentModel,
                       prior: np.ndarray, cfg: AnnealingSettings, generator: torch.Generator,
                       out: dict[str, Any], extra: dict[str, Any],
                       probe: Probe | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AIS log p of the test and validation images and RAISE bounds on the first test
    images of a lattice model; its AIS diagnostics go into ``out`` / ``extra``."""
    n_raise = min(cfg.raise_images, len(data.test_x))
    raise_x = torch.from_numpy(data.test_x[:n_raise])
    z = lattice_log_z(model, base, cfg.lattice_ais_chains, cfg.lattice_ais_steps, cfg.ais_power, generator, probe)
    logp_test = lattice_log_prob(model, data.test_x, z["log_z"], prior)
    logp_val = lattice_log_prob(model, data.val_x, z["log_z"], prior)
    out.update(ais_log_z=float(np.mean(z["log_z"])), ais_doubling_shift=z["doubling_shift"],
               ais_converged=z["converged"], ais_ess=z["ess"], likelihood_method="ais+raise")
    extra.update(ais_log_z=z["log_z"].tolist(), ais_log_z_half=z["log_z_half"].tolist())
    with measured(probe, "raise", count=False):
        betas = power_schedule(annealing_steps(probe, cfg.raise_steps), cfg.ais_power)
        if not model.conditional:
            return logp_test, logp_val, raise_potts(model, base, raise_x, betas, generator)
        # log p(x) >= log p(y) + log p(x | y) at the true label: conservative twice over
        y = data.test_y[:n_raise]
        lower = np.empty(n_raise)
        for k in range(CLASSES):
            rows = np.flatnonzero(y == k)
            if len(rows):
                lower[rows] = np.log(prior[k]) + raise_potts(model, base, raise_x[rows], betas, generator, label=k)
    labels = torch.from_numpy(data.test_y)
    cond = -model.energy(torch.from_numpy(data.test_x), labels).double().numpy() - z["log_z"][data.test_y]
    out["test_conditional_nll_nats"] = float(-cond.mean())
    out["independent_conditional_nll_nats"] = class_independent.nll(data.test_x, data.test_y)
    return logp_test, logp_val, lower


def _rbm_estimates(model: CategoricalRBM, data: LevelData, independent: IndependentModel, cfg: AnnealingSettings,
                   generator: torch.Generator, out: dict[str, Any], extra: dict[str, Any],
                   probe: Probe | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same three estimates for an RBM (AIS from the independent model, labels and
    hidden units summed out)."""
    n_raise = min(cfg.raise_images, len(data.test_x))
    raise_x = torch.from_numpy(data.test_x[:n_raise])
    base_probs = independent.log_probs[0]
    # CPU tensor loops whatever the job's device: timed, not counted (the count would slow them)
    with measured(probe, "ais", count=False):
        full = ais_rbm(model, base_probs, cfg.ais_chains,
                       power_schedule(annealing_steps(probe, cfg.ais_steps), cfg.ais_power), generator)
    with measured(probe, "ais_check", count=False):
        half = ais_rbm(model, base_probs, max(cfg.ais_chains // 2, 2),
                       power_schedule(annealing_steps(probe, max(cfg.ais_steps // 2, 1)), cfg.ais_power), generator)
    log_z = full.log_z
    logp_test = model.unnormalised_log_prob(torch.from_numpy(data.test_x)).double().numpy() - log_z
    logp_val = model.unnormalised_log_prob(torch.from_numpy(data.val_x)).double().numpy() - log_z
    shift = abs(full.log_z - half.log_z)
    out.update(ais_log_z=log_z, ais_doubling_shift=shift, ais_converged=bool(shift <= AIS_CONVERGED_NATS),
               ais_ess=full.ess, likelihood_method="ais+raise")
    with measured(probe, "raise", count=False):
        lower = raise_log_prob(model, base_probs, raise_x,
                               power_schedule(annealing_steps(probe, cfg.raise_steps), cfg.ais_power), generator)
    extra["ais_log_weights"] = full.log_weights.tolist()
    return logp_test, logp_val, lower


@torch.no_grad()
def likelihood_metrics(model: nn.Module | None, data: LevelData, independent: IndependentModel,
                       class_independent: IndependentModel, cfg: AnnealingSettings,
                       generator: torch.Generator, probe: Probe | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Test (and validation) NLLs of one model beside its baseline, with the estimate that
    cannot flatter and its margin; ``model`` None: the independent model itself (exact).
    A ``probe`` cuts the annealing steps (see the module's docstring). Returns (metrics, extra)."""
    conditional = model is not None and model.conditional
    prior = class_prior(data.train_y)
    base_test = baseline_log_prob(conditional, data.test_x, independent, class_independent, prior)
    base_val = baseline_log_prob(conditional, data.val_x, independent, class_independent, prior)
    out: dict[str, Any] = {"independent_nll_nats": float(-independent.log_likelihood(data.test_x).mean()),
                           "baseline_nll_nats": float(-base_test.mean()),
                           "baseline": "class_mixture" if conditional else "independent"}
    extra: dict[str, Any] = {}
    if model is None:
        nll, se = mean_se(-independent.log_likelihood(data.test_x))
        out.update(test_nll_nats=nll, test_nll_se=se,
                   val_nll_nats=float(-independent.log_likelihood(data.val_x).mean()), nll_gain_nats=0.0,
                   likelihood_method="exact")
        return out, extra
    if isinstance(model, PottsModel):
        base = class_independent if model.conditional else independent
        logp_test, logp_val, lower = _lattice_estimates(model, data, base, class_independent, prior, cfg, generator,
                                                        out, extra, probe)
    elif isinstance(model, CategoricalRBM):
        logp_test, logp_val, lower = _rbm_estimates(model, data, independent, cfg, generator, out, extra, probe)
    else:
        raise TypeError(f"no likelihood estimator for {type(model).__name__}")
    n_raise = len(lower)
    gain, gain_se = mean_se(logp_test - base_test)
    # RAISE: the gain that cannot flatter, on the first test images, paired with the baseline there
    conservative, conservative_se = mean_se(lower - base_test[:n_raise])
    out.update(test_nll_raise_nats=float(-lower.mean()), raise_images=n_raise,
               baseline_nll_raise_images_nats=float(-base_test[:n_raise].mean()),
               test_nll_ais_raise_images_nats=float(-logp_test[:n_raise].mean()))
    extra["raise_log_prob"] = lower.tolist()
    out.update(test_nll_nats=float(-logp_test.mean()), test_nll_se=mean_se(logp_test)[1],
               val_nll_nats=float(-logp_val.mean()), val_baseline_nll_nats=float(-base_val.mean()),
               nll_gain_nats=gain, nll_gain_nats_se=gain_se, conservative_gain_nats=conservative,
               conservative_gain_nats_se=conservative_se,
               conservative_margin_nats=conservative - 2 * conservative_se)
    return out, extra
