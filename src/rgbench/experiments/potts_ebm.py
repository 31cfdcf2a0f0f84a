"""Energy-based models of 4-level MNIST sampled by block Gibbs (seed 003): the train and
evaluate jobs, and the settings every potts_ebm job shares.

Models: ``independent`` (pixels, fitted by counting: the baseline), the seed's lattice Potts
models ``potts`` and ``potts_cond`` (one bias field per digit), categorical RBMs
``rbm`` and ``rbm_cond`` (label units joined to the hidden layer), and a label-conditional
deep belief net sampled with its label clamped (``dbn_cond``) or free (``dbn``): its jobs
are in :mod:`rgbench.experiments.potts_ebm_dbn`; and a denoising chain of conditional RBMs
after Extropic's DTMs, unconditional (``dtm``) or label-clamped (``dtm_cond``), in
:mod:`rgbench.experiments.potts_ebm_dtm`.

Jobs:

1. ``train_job`` (model, seed): PCD training (:mod:`rgbench.models.pcd`) on the training
   split without its seeded validation rows; the model file, per-epoch chains and
   per-update (free) energy gaps.
2. ``evaluate_job`` (model, seed): likelihoods beside a baseline of the same kind
   (:mod:`rgbench.evaluation.likelihood`: exact for the independent model, AIS with a
   doubling check and reverse annealing (RAISE) for the others), samples from uniform
   noise by our block sampler with snapshots at the configured sweeps, and the reference
   classifier's scores of the samples and of real test images through the same 4-level
   rendering (the ceiling; :mod:`rgbench.evaluation.samples`); writes the run's
   metrics.json (``sampler: block``).
3. ``thrml_job`` (:mod:`rgbench.experiments.potts_ebm_thrml`): the same sampling protocol
   run by THRML, scored by the same functions (``sampler: thrml``).

Under the paper preset's probe (a ``probe`` block in the training hand-off, the
``analysis`` block or the ``thrml`` block) every job keeps its real model, data, batch and
chain counts: training takes the probe's PCD steps (checkpoint and resume half-way), and
each evaluation loop (annealing steps, sampling sweeps and the checkpoints scored along
them, the reference classifier's batches of the chains it scores, the comparison chains'
sweeps, pseudo-likelihood images, the autocorrelation series, the ceiling's images) keeps
the probe's few batches in its own measured block. Each job
leaves a probe record; its runs' provenance says ``probe``. These loops run on the CPU
whatever the job's device (numba kernels and CPU tensors; only the reference classifier
uses the device), and the record says so (``cpu_bound``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn

from rgbench.config import build
from rgbench.data.preprocess import CLASSES, LEVELS, LevelData, levels_to_grey, load_levels
from rgbench.evaluation.likelihood import baseline_log_prob, class_prior, likelihood_metrics
from rgbench.evaluation.quality import conditional_recognition
from rgbench.evaluation.energy import RaplMeter
from rgbench.evaluation.memorisation import memorisation
from rgbench.evaluation.samples import SampleRun, ceiling_scores, relative_to_ceiling, save_sample_run, score_samples
from rgbench.io import atomic_path, file_sha256, save_npz_atomic
from rgbench.models.pcd import (CONDITIONAL, LATTICE_MODELS, PLL_BATCH, RBM_MODELS, SHOWN_CHAINS, LatticeTrainConfig,
                                RBMTrainConfig, load_trained, pseudo_log_likelihood, train_lattice, train_rbm)
from rgbench.models.potts import IndependentModel, integrated_autocorrelation_time
from rgbench.models.potts_samplers import CheckerboardGibbs
from rgbench.probe import Probe, capped, measured, probe_record_path, split_probe
from rgbench.results import finite_or_none, provenance, write_metrics
from rgbench.runtime import describe_device, get_logger, pick_device, progress, seed_everything

log = get_logger("potts_ebm")

EXPERIMENT = "potts_ebm"
DBN_MODELS = ("dbn", "dbn_cond")  # rgbench.experiments.potts_ebm_dbn (kept in step there)
DTM_MODELS = ("dtm", "dtm_cond")  # rgbench.experiments.potts_ebm_dtm
MODELS = ("independent", *LATTICE_MODELS, *RBM_MODELS, *DBN_MODELS, *DTM_MODELS)
# Where sampling chains start. Unconditional models always from uniform noise; conditional
# ones either from uniform noise too or from the class-conditional independent-pixel model's
# samples of their clamped digit (noise with the digit's pixel marginals, no shape).
STARTS = ("uniform", "class_independent")
SIDE = 28
IAT_MIN_SWEEPS = 4  # the shortest energy series integrated_autocorrelation_time accepts


# ----------------------------------------------------------------------------- configs

@dataclass
class PottsRunConfig:
    """One run's training hand-off: the model, its seed, data limits and its training
    block (``pcd`` for the lattice models, ``rbm`` for the RBMs, ``dbn`` for the DBNs,
    ``dtm`` for the DTMs; empty for independent)."""

    model: str
    seed: int
    train_limit: int  # 0: the whole train split
    test_limit: int  # 0: the whole test set
    smoothing: float  # add-alpha counts of the independent models
    training: dict[str, Any]

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")

    def lattice(self) -> LatticeTrainConfig:
        return build(LatticeTrainConfig, self.training)

    def rbm(self) -> RBMTrainConfig:
        return build(RBMTrainConfig, self.training)


@dataclass
class AnalysisConfig:
    """The evaluate job's settings (config ``analysis``)."""

    seed: int
    ais_chains: int  # RBMs: AIS chains (the doubling check runs half the chains and steps)
    ais_steps: int
    ais_power: float  # beta_k = (k / steps) ** power
    raise_images: int  # test images given a reverse-annealing (RAISE) lower bound
    raise_steps: int
    lattice_ais_chains: int  # lattice models: AIS chains per log Z (halved for the check)
    lattice_ais_steps: int
    samples: int  # chains scored by the reference classifier
    conditional_start: str  # conditional models' chains: "uniform" noise or "class_independent" samples
    comparison_start_chains: int  # conditional models: chains also run from the other start
    sample_sweeps: int  # RBMs
    lattice_sample_sweeps: int  # lattice models (they mix in a few sweeps; THRML runs them slowly)
    checkpoints: list[int]  # sweeps at which the chains are scored (steps to a digit)
    ceiling_images: int  # real test images rendered through the 4 levels
    pll_images: int
    iat_chains: int
    iat_sweeps: int
    memorisation_images: int  # samples (and as many test images) compared with every training image

    def __post_init__(self) -> None:
        check_checkpoints(self.checkpoints)
        check_start(self.conditional_start)

    def sweeps(self, kind: str) -> int:
        return self.lattice_sample_sweeps if kind in LATTICE_MODELS else self.sample_sweeps


def check_start(start: str) -> None:
    if start not in STARTS:
        raise ValueError(f"conditional_start must be one of {STARTS}, got {start!r}")


def check_checkpoints(checkpoints: Sequence[int]) -> None:
    if not checkpoints or sorted(set(checkpoints)) != list(checkpoints) or checkpoints[0] < 1:
        raise ValueError(f"checkpoints must be an increasing list of sweeps >= 1, got {checkpoints}")


def checkpoints_for(checkpoints: Sequence[int], sweeps: int) -> list[int]:
    """The configured checkpoints below ``sweeps``, and ``sweeps`` itself."""
    return [c for c in checkpoints if c < sweeps] + [sweeps]


@dataclass
class ThrmlConfig:
    """The THRML job's settings: its chain count (config ``thrml``) and the sampling
    protocol it shares with ``analysis``. Which models and seeds THRML samples is the
    workflow's choice of jobs, not a setting of one."""

    samples: int
    conditional_start: str
    sample_sweeps: int
    lattice_sample_sweeps: int
    checkpoints: list[int]
    ceiling_images: int
    memorisation_images: int

    def __post_init__(self) -> None:
        check_checkpoints(self.checkpoints)
        check_start(self.conditional_start)

    def sweeps(self, kind: str) -> int:
        return self.lattice_sample_sweeps if kind in LATTICE_MODELS else self.sample_sweeps


def table_params(cfg: PottsRunConfig, sampler: str) -> dict[str, Any]:
    """The parameters a table row shows next to its metrics."""
    row: dict[str, Any] = {"model": cfg.model, "sampler": sampler, "train_limit": cfg.train_limit}
    if cfg.model in LATTICE_MODELS:
        lattice = cfg.lattice()
        row.update(epochs=lattice.epochs, pcd_chains=lattice.chains, pcd_sweeps=lattice.sweeps, lr=lattice.lr)
    elif cfg.model in RBM_MODELS:
        rbm = cfg.rbm()
        row.update(epochs=rbm.epochs, pcd_chains=rbm.chains, pcd_sweeps=rbm.sweeps, lr=rbm.lr, hidden=rbm.hidden)
    elif cfg.model in DBN_MODELS:
        dbn = cfg.training
        row.update(epochs="-".join(map(str, dbn["epochs"])), pcd_chains=dbn["chains"], pcd_sweeps=dbn["sweeps"],
                   lr=dbn["lr"], hidden="-".join(map(str, dbn["hidden"])))
    elif cfg.model in DTM_MODELS:
        dtm = cfg.training
        row.update(epochs=dtm["epochs"], pcd_sweeps=dtm["sweeps"], lr=dtm["lr"], hidden=dtm["hidden"])
    return row


# ----------------------------------------------------------------------------- baselines

def fit_independent(data: LevelData, smoothing: float) -> tuple[IndependentModel, IndependentModel]:
    """The independent-pixel model and the per-class ones (the class mixture's parts)."""
    return (IndependentModel.fit(data.train_x, alpha=smoothing),
            IndependentModel.fit(data.train_x, data.train_y, classes=CLASSES, alpha=smoothing))


# ----------------------------------------------------------------------------- sampling

def noise_start(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, LEVELS, (n, SIDE, SIDE), generator=generator, dtype=torch.uint8)


def chain_labels(kind: str, n: int) -> np.ndarray:
    """The clamped digits of n chains: 0..9 in turn for conditional models, else none."""
    return np.arange(n) % CLASSES if kind in CONDITIONAL else np.zeros(0, dtype=np.int64)


def chain_start(kind: str, labels: np.ndarray, n: int, conditional_start: str,
                class_independent: IndependentModel, generator: torch.Generator) -> torch.Tensor:
    """(n, 28, 28) starting levels: uniform noise, or for conditional models with
    ``conditional_start`` "class_independent" a draw of the class-conditional
    independent-pixel model for each chain's digit."""
    check_start(conditional_start)
    if kind in CONDITIONAL and conditional_start == "class_independent":
        return class_independent.sample(n, generator, labels=torch.from_numpy(labels)).view(n, SIDE, SIDE)
    return noise_start(n, generator)


@torch.no_grad()
def sample_block(kind: str, model: nn.Module | None, independent: IndependentModel,
                 class_independent: IndependentModel, n: int, sweeps: int, checkpoints: Sequence[int],
                 conditional_start: str, generator: torch.Generator) -> SampleRun:
    """n chains by our block sampler (numba checkerboard for the lattice models, torch block
    Gibbs for the RBMs) from ``chain_start``; conditional models get labels 0..9 in turn."""
    label_array = chain_labels(kind, n)
    labels = torch.from_numpy(label_array) if kind in CONDITIONAL else None
    if kind == "independent":
        images = independent.sample(n, generator).numpy()
        return SampleRun(images, {c: images for c in checkpoints}, label_array, 0.0, 0.0)
    snapshots: dict[int, np.ndarray] = {}
    walls, cpus = [], []
    x = chain_start(kind, label_array, n, conditional_start, class_independent, generator)
    start = x.numpy().copy()
    h = None
    if kind in LATTICE_MODELS:
        sampler = CheckerboardGibbs(SIDE, SIDE)
        sampler.set_parameters(*model.sampler_parameters())
        padded = sampler.pad(x)
    with RaplMeter() as meter:
        for t in progress(range(1, sweeps + 1), desc="sampling", leave=False):
            wall, cpu = time.perf_counter(), time.process_time()
            if kind in LATTICE_MODELS:
                sampler.sweep(padded, 1, generator, labels=labels)
            else:
                x, _, h = model.gibbs(x, labels, 1, generator)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            if t in checkpoints:
                snapshots[t] = (sampler.unpad(padded) if kind in LATTICE_MODELS else x).numpy().copy()
    mode = model.visible_mode(h).view(n, SIDE, SIDE).numpy() if h is not None else None
    return SampleRun(snapshots[sweeps], snapshots, label_array, float(np.median(walls)), float(np.median(cpus)), mode,
                     start, None if meter.joules is None else meter.joules / n)


def baseline_metrics(conditional: bool, data: LevelData, independent: IndependentModel,
                     class_independent: IndependentModel) -> dict[str, Any]:
    """The exact baselines a model's row shows beside its own numbers (the class mixture
    for a class-conditional model), for a model without a likelihood estimate."""
    base = baseline_log_prob(conditional, data.test_x, independent, class_independent, class_prior(data.train_y))
    return {"independent_nll_nats": float(-independent.log_likelihood(data.test_x).mean()),
            "baseline_nll_nats": float(-base.mean()), "baseline": "class_mixture" if conditional else "independent"}


def memorisation_scores(images: np.ndarray, data: LevelData, limit: int, probe: Probe | None) -> dict[str, float]:
    """The memorisation check of a sampler's final samples (the first ``limit`` of them,
    and as many test images), cut to the probe's batches under a probe."""
    with measured(probe, "memorisation"):
        n = capped(probe, min(limit, len(images), len(data.test_x)), PLL_BATCH)
        return memorisation(images[:n], data.test_x[:n], data.train_x)


def energy_iat(kind: str, model: nn.Module, start: np.ndarray, labels: np.ndarray, sweeps: int,
               generator: torch.Generator) -> float:
    """Integrated autocorrelation time (sweeps) of the energy of chains continued from
    ``start`` (free energy for the RBMs, labels clamped)."""
    x = torch.from_numpy(start)
    lab = torch.from_numpy(labels) if len(labels) else None
    series = np.empty((len(x), sweeps))
    with torch.no_grad():
        if kind in LATTICE_MODELS:
            sampler = CheckerboardGibbs(SIDE, SIDE)
            sampler.set_parameters(*model.sampler_parameters())
            padded = sampler.pad(x)
            for t in range(sweeps):
                sampler.sweep(padded, 1, generator, labels=lab)
                series[:, t] = model.energy(sampler.unpad(padded), lab).numpy()
        else:
            for t in range(sweeps):
                x, _, _ = model.gibbs(x, lab, 1, generator)
                series[:, t] = model.free_energy(x, lab).numpy()
    return integrated_autocorrelation_time(series)


def score_chains(clf: Any, run: SampleRun, checkpoints: Sequence[int], real_checkpoints: Sequence[int],
                 reference_stats: str, probe: Probe | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`score_samples` of a run's chains at ``checkpoints``. A probe's chains ran only
    to its few sweeps (``real_checkpoints``: where the real run's reach) and the classifier
    keeps its batches of them: the block is scaled by chains times checkpoints scored, the
    classifier passes that dominate it."""
    with measured(probe, "scoring"):
        kept = capped(probe, len(run.images), clf.batch_size)
        scored = run.first(kept)
        result = score_samples(clf, scored, scored.labels, checkpoints, reference_stats)
        if probe is not None:
            probe.cut(len(real_checkpoints) * len(run.images), len(checkpoints) * kept)
    return result


# ----------------------------------------------------------------------------- train and evaluate

def sampled_jobs(model: str) -> Any:
    """The module holding the train and evaluate jobs of a row that is sampled and scored
    but not annealed (the DBNs, the DTMs); None for the rows this module runs."""
    if model in DBN_MODELS:
        from rgbench.experiments import potts_ebm_dbn

        return potts_ebm_dbn
    if model in DTM_MODELS:
        from rgbench.experiments import potts_ebm_dtm

        return potts_ebm_dtm
    return None


def train_job(config: Mapping[str, Any], mnist4: str, model_path: str, epochs_path: str,
              device: str = "auto") -> dict[str, Any]:
    """Fit one model and save it to ``model_path``; per-epoch chains and per-update
    free-energy gaps go to ``epochs_path``. The per-epoch checkpoint lives beside the
    model (not an output, so a killed job resumes from it). Training runs on the CPU:
    the samplers are CPU kernels and the RBM's sparse statistics are small. A ``probe``
    block trains the probe's steps and leaves its record beside the model."""
    settings, probe = split_probe(config)
    cfg = build(PottsRunConfig, settings)
    if cfg.model == "independent":
        raise ValueError("the independent model is fitted by counting in the evaluate job; it has no training")
    checkpoint_path = Path(model_path).parent / "checkpoint.pt"
    seed_everything(cfg.seed)
    if pick_device(device).type != "cpu":
        log.info("PCD training runs on the CPU; device %s is not used", device)
    data = load_levels(mnist4, cfg.train_limit, cfg.test_limit)
    sampled = sampled_jobs(cfg.model)
    if sampled is not None:
        if probe is not None:
            raise ValueError(f"{cfg.model}'s training has no probe yet: leave it out of the paper preset's models")
        return sampled.train(cfg, data, model_path, epochs_path)
    independent, class_independent = fit_independent(data, cfg.smoothing)
    conditional = cfg.model in CONDITIONAL
    if cfg.model in RBM_MODELS:
        model, result, history, samples, gaps = train_rbm(cfg.rbm(), conditional, data, independent, cfg.seed,
                                                          checkpoint_path, cfg.model, probe)
    else:
        model, result, history, samples, gaps = train_lattice(cfg.lattice(), conditional, data, independent,
                                                              class_independent, cfg.seed, checkpoint_path, cfg.model,
                                                              probe)
    # "probe": a model trained by the probe marks every run evaluated from it
    payload = {"kind": cfg.model, "run": asdict(cfg), "config": asdict(model.config),
               "state_dict": model.state_dict(), "diverged": result.diverged, "history": history,
               "train_seconds": result.train_seconds, "train_cpu_seconds": result.train_cpu_seconds,
               "n_train": len(data.train_x), "n_val": len(data.val_x),
               "steps_run": len(gaps), "probe": probe is not None}
    with atomic_path(model_path) as tmp:
        torch.save(payload, tmp)
    save_npz_atomic(epochs_path, epoch_samples=samples, step_gap=gaps,
                    steps_per_epoch=np.array([len(gaps) // max(len(history), 1)] * len(history), dtype=np.int64))
    if probe is not None:
        probe.write(probe_record_path(Path(model_path).parent, probe), device=describe_device(torch.device("cpu")),
                    n_params=model.parameter_count(), cpu_bound=True)
    log.info("%s seed %d: %d epochs in %.1f s", cfg.model, cfg.seed, len(history), result.train_seconds)
    return payload


def run_provenance(payload: Mapping[str, Any] | None, data: LevelData, mnist4: str, n_params: int,
                   probe: bool = False) -> dict[str, Any]:
    """What a run used: the data splits (the training record's, for a trained model) and
    the model's size; ``probe`` when the run, or the training of its model, was the paper
    preset's probe."""
    if payload is None:
        return provenance(n_train=len(data.train_x), n_val=len(data.val_x), n_test=len(data.test_x),
                          data_sha256=file_sha256(mnist4), n_params=n_params, probe=probe)
    return provenance(n_train=payload["n_train"], n_val=payload["n_val"], n_test=len(data.test_x),
                      data_sha256=file_sha256(mnist4), n_params=n_params, epochs_run=len(payload["history"]),
                      steps_run=payload["steps_run"], probe=probe or bool(payload.get("probe")))


def evaluate_job(config: Mapping[str, Any], analysis: Mapping[str, Any], mnist4: str, model_path: str | None,
                 reference_model: str, reference_stats: str, metrics_path: str, samples_path: str, run_id: str,
                 device: str = "auto") -> dict[str, Any]:
    """Likelihoods, our sampler's samples and their scores; the run's metrics.json. A
    ``probe`` block in ``analysis`` cuts each loop to the probe's batches (module docstring)
    and leaves the probe record beside metrics.json."""
    from rgbench.evaluation.reference import load_reference_classifier

    cfg = build(PottsRunConfig, config)
    analysis, probe = split_probe(analysis)
    sampled = sampled_jobs(cfg.model)
    if sampled is not None:
        if probe is not None:
            raise ValueError(f"{cfg.model}'s evaluation has no probe yet: leave it out of the paper preset's models")
        if model_path is None:
            raise ValueError(f"{cfg.model} needs its trained model")
        return sampled.evaluate(cfg, analysis, mnist4, model_path, reference_model, reference_stats, metrics_path,
                                samples_path, run_id, device)
    acfg = build(AnalysisConfig, analysis)
    seed_everything(acfg.seed)
    generator = torch.Generator().manual_seed(10_000 + acfg.seed)
    started = time.perf_counter()
    data = load_levels(mnist4, cfg.train_limit, cfg.test_limit)
    independent, class_independent = fit_independent(data, cfg.smoothing)
    kind, model, payload = cfg.model, None, None
    if kind != "independent":
        if model_path is None:
            raise ValueError(f"{kind} needs its trained model")
        kind, model, payload = load_trained(model_path)
    metrics, extra = likelihood_metrics(model, data, independent, class_independent, acfg, generator, probe)
    sweeps = acfg.sweeps(kind)
    # every chain, for the probe's few sweeps; the scoring below then sees the checkpoints they reach
    sweeps_run = capped(probe, sweeps, 1)
    checkpoints = checkpoints_for(acfg.checkpoints, sweeps_run)
    with measured(probe, "sampling", count=False):
        run = sample_block(kind, model, independent, class_independent, acfg.samples, sweeps_run, checkpoints,
                           acfg.conditional_start, generator)
        if probe is not None and kind != "independent":  # the independent model draws at once: no sweeps to cut
            probe.cut(sweeps, sweeps_run)
    comparison = None
    if kind in CONDITIONAL and acfg.comparison_start_chains:
        # the same sampler from the other start: how much the conditional scores owe to the start
        other = next(start for start in STARTS if start != acfg.conditional_start)
        with measured(probe, "comparison", count=False):
            comparison = sample_block(kind, model, independent, class_independent, acfg.comparison_start_chains,
                                      capped(probe, sweeps, 1), [sweeps_run], other, generator)
    if model is not None:
        with measured(probe, "pll", count=False):
            n_pll = capped(probe, min(acfg.pll_images, len(data.test_x)), PLL_BATCH)
            labels = data.test_y[:n_pll] if kind in CONDITIONAL else None
            metrics["pseudo_log_likelihood"] = float(pseudo_log_likelihood(model, data.test_x[:n_pll], labels,
                                                                           PLL_BATCH).mean())
        k = min(acfg.iat_chains, acfg.samples)
        with measured(probe, "iat", count=False):
            iat_sweeps = capped(probe, acfg.iat_sweeps, 1, minimum=IAT_MIN_SWEEPS)
            metrics["energy_iat"] = energy_iat(kind, model, run.images[:k], run.labels[:k], iat_sweeps, generator)
        metrics["iat_reliable"] = bool(iat_sweeps >= 50 * metrics["energy_iat"])
        if kind in LATTICE_MODELS:
            metrics["w_h"], metrics["w_v"] = float(model.coupling[0]), float(model.coupling[1])
    metrics["analysis_seconds"] = time.perf_counter() - started
    torch_device = pick_device(device)
    clf = load_reference_classifier(reference_model, device=torch_device)
    scores, score_extra = score_chains(clf, run, checkpoints, checkpoints_for(acfg.checkpoints, sweeps),
                                       reference_stats, probe)
    if comparison is not None:
        scores[f"conditional_recognition_{other}_start"] = conditional_recognition(
            clf, levels_to_grey(comparison.images), comparison.labels)
    metrics.update(scores)
    with measured(probe, "ceiling"):
        n_ceiling = capped(probe, min(acfg.ceiling_images, len(data.test_x)), clf.batch_size)
        metrics.update(ceiling_scores(clf, data.test_x, data.test_y, n_ceiling, reference_stats))
    relative_to_ceiling(metrics)
    extra.update(score_extra)
    save_sample_run(samples_path, run, checkpoints, score_extra["digit_fraction_by_sweep"], SHOWN_CHAINS)
    metrics.update(memorisation_scores(run.images, data, acfg.memorisation_images, probe))
    if payload is not None:
        metrics["train_seconds"] = payload["train_seconds"]
        metrics["train_cpu_seconds"] = payload.get("train_cpu_seconds")  # None: a model file from before it was kept
        metrics["diverged"] = bool(payload["diverged"])
        extra["history"] = [{k: v for k, v in h.items() if isinstance(v, (int, float))} for h in payload["history"]]
    n_params = model.parameter_count() if model is not None else int(independent.log_probs[0].size)
    metrics = {k: (finite_or_none(v) if isinstance(v, float) else v) for k, v in metrics.items()}
    write_metrics(metrics_path, experiment=EXPERIMENT, run_id=run_id, params=table_params(cfg, "block"),
                  seed=cfg.seed, metrics=metrics, wall_seconds=time.perf_counter() - started,
                  device=describe_device(torch_device), extra=extra,
                  provenance=run_provenance(payload, data, mnist4, n_params, probe=probe is not None))
    if probe is not None:
        probe.write(probe_record_path(Path(metrics_path).parent, probe), device=describe_device(torch_device),
                    n_params=n_params, cpu_bound=True)
    log.info("%s seed %d: test NLL %s (baseline %.2f), recognisable %.3f", kind, cfg.seed,
             metrics.get("test_nll_nats"), metrics["baseline_nll_nats"], metrics["recognisable_fraction"])
    return metrics
