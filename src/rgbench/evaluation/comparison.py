"""Seed 003's question as data: every generator of 4-level MNIST in one table, and which
family reaches each quality level cheaper.

``comparison_table`` joins the energy-based models' rows (``tables/potts_ebm.csv``: the
grid Potts model and the RBMs, sampled by our block Gibbs sampler and by THRML) with the
traditional generators' runs (``generative`` experiment: MADE and VAE), one row per
(generator, sampler, seed), in the columns of ``tables/generative.csv`` (CONTRACT.md).
Every quality number comes from the same scorer (the reference classifier, the same
ceiling of real test images); every cost from the job that drew the samples.

``answer_table`` reads it: for each quality measure and level, the cheapest generator of
each family whose mean over seeds reaches the level, and the factor between the two.
``answer_sentences`` writes that as the report's answer to the seed's question.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from rgbench.evaluation.energy import energy_per_sample

EBM_FAMILY = "ebm"
TRADITIONAL_FAMILY = "traditional"
# the EBM models that are generators (the independent-pixel model is the baseline both sides beat)
BASELINE_MODELS = ("independent",)
NLL_KINDS = ("exact", "bound", "ais", "raise")

# (column of the comparison, its meaning in the answer, the models it applies to)
QUALITY_MEASURES = {
    "recognisable_fraction_vs_ceiling": "recognisable fraction (share of the real-image ceiling)",
    "conditional_recognition": "conditional recognition (class-conditional models)",
}
DEFAULT_LEVELS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)

COLUMNS = ["model", "family", "sampler", "seed", "conditional", "nll_nats", "nll_kind", "nll_method",
           "nll_raise_nats", "nll_ais_raise_images_nats", "nll_raise_images", "fid", "recognisable_fraction",
           "recognisable_fraction_vs_ceiling", "ceiling_recognisable_fraction", "conditional_recognition",
           "ceiling_conditional_recognition", "min_class_share", "class_entropy", "memorisation_l2_ratio",
           "exact_copy_fraction", "samples", "sample_batch", "sweeps", "wall_seconds_per_1000_samples",
           "cpu_seconds_per_1000_samples", "cpu_seconds_per_recognisable_digit", "train_cpu_seconds",
           "energy_joules_per_sample", "energy_method", "long_sample_sweeps", "long_recognisable_fraction_vs_ceiling",
           "long_min_class_share", "long_conditional_recognition", "equilibrium_max_class_prior"]


TEXT_COLUMNS = {"model", "family", "sampler", "conditional", "nll_kind", "nll_method", "energy_method"}


def _value(row: pd.Series, key: str) -> Any:
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def _ebm_rows(ebm: pd.DataFrame) -> list[dict[str, Any]]:
    """The EBMs' rows. A THRML row samples the same trained model as the block row of its
    model and seed, so its likelihood and training cost are that row's."""
    rows = []
    trained = ebm[~ebm["model"].isin(BASELINE_MODELS)]
    block = {(r["model"], int(r["seed"])): r for _, r in trained[trained["sampler"] == "block"].iterrows()}
    for _, r in trained.iterrows():
        model_row = block.get((r["model"], int(r["seed"])), r)
        nll = _value(model_row, "test_nll_nats")
        method = _value(model_row, "likelihood_method") or ""
        rows.append({
            "model": r["model"], "family": EBM_FAMILY, "sampler": r["sampler"], "seed": int(r["seed"]),
            "conditional": str(r["model"]).endswith("_cond"),
            "nll_nats": nll, "nll_kind": "ais" if nll is not None else None,
            "nll_method": method,
            "nll_raise_nats": _value(model_row, "test_nll_raise_nats"),
            "nll_ais_raise_images_nats": _value(model_row, "test_nll_ais_raise_images_nats"),
            "nll_raise_images": _value(model_row, "raise_images"),
            "samples": _value(r, "n_samples"), "sample_batch": _value(r, "n_samples"),  # every chain at once
            "sweeps": _value(r, "sample_sweeps"),  # of every chain, all run at once
            "train_cpu_seconds": _value(model_row, "train_cpu_seconds"),
            # the label-free DBN's class prior at equilibrium (its train job's AIS), beside the shares at the budget
            "equilibrium_max_class_prior": _value(model_row, "equilibrium_max_class_prior"),
            **{k: _value(r, k) for k in _SHARED},
        })
    return rows


# columns both families' runs carry under the same name (the shared scoring kit's)
_SHARED = ("fid", "recognisable_fraction", "recognisable_fraction_vs_ceiling", "ceiling_recognisable_fraction",
           "conditional_recognition", "ceiling_conditional_recognition", "min_class_share", "class_entropy",
           "memorisation_l2_ratio", "exact_copy_fraction", "wall_seconds_per_1000_samples",
           "cpu_seconds_per_1000_samples", "cpu_seconds_per_recognisable_digit",
           "sampling_energy_joules_per_sample", "long_sample_sweeps", "long_recognisable_fraction_vs_ceiling",
           "long_min_class_share", "long_conditional_recognition")


def _traditional_rows(traditional: pd.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for _, r in traditional.iterrows():
        rows.append({
            "model": r["model"], "family": TRADITIONAL_FAMILY, "sampler": r["sampler"], "seed": int(r["seed"]),
            "conditional": bool(r["conditional"]), "nll_nats": _value(r, "test_nll_nats"),
            "nll_kind": _value(r, "nll_kind"), "nll_method": _value(r, "nll_method"),
            "nll_raise_nats": None, "nll_ais_raise_images_nats": None, "nll_raise_images": None,
            "samples": _value(r, "n_samples"), "sample_batch": _value(r, "sample_batch"),
            "sweeps": _value(r, "sample_sweeps"),  # one ancestral pass
            "train_cpu_seconds": _value(r, "train_cpu_seconds"),
            **{k: _value(r, k) for k in _SHARED},
        })
    return rows


def comparison_table(ebm: pd.DataFrame | None, traditional: pd.DataFrame | None,
                     watts_per_core: float) -> pd.DataFrame:
    """One row per (generator, sampler, seed) in ``COLUMNS``; energy per sample from RAPL
    where the sampling job read it, else CPU seconds times ``watts_per_core``."""
    rows = (_ebm_rows(ebm) if ebm is not None and len(ebm) else []) + \
        (_traditional_rows(traditional) if traditional is not None and len(traditional) else [])
    if not rows:
        raise ValueError("no generator to compare: neither EBM nor traditional runs were given")
    for row in rows:
        if row["nll_kind"] is not None and row["nll_kind"] not in NLL_KINDS:
            raise ValueError(f"{row['model']}: unknown nll_kind {row['nll_kind']!r}")
        cpu = row["cpu_seconds_per_1000_samples"]
        row["energy_joules_per_sample"], row["energy_method"] = energy_per_sample(
            None if cpu is None else cpu / 1000.0, row.pop("sampling_energy_joules_per_sample"), watts_per_core)
    frame = pd.DataFrame(rows)[COLUMNS]
    for column in COLUMNS:  # a column no run recorded is all None: make it a float column of NaN
        if column not in TEXT_COLUMNS:
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame.sort_values(["family", "model", "sampler", "seed"], kind="stable").reset_index(drop=True)


def generator_means(table: pd.DataFrame) -> pd.DataFrame:
    """Per (family, model, sampler): the mean and seed sd of the quality and cost columns
    and the number of seeds (what the figure and the answer read)."""
    keys = ["family", "model", "sampler", "conditional"]
    measured = ["cpu_seconds_per_1000_samples", "nll_nats", "fid", *QUALITY_MEASURES, "min_class_share",
                "train_cpu_seconds", "energy_joules_per_sample", "ceiling_conditional_recognition"]
    grouped = table.groupby(keys, sort=False)
    means = grouped[measured].mean()
    spreads = grouped[measured].std(ddof=1).add_suffix("_sd")
    out = pd.concat([means, spreads], axis=1)
    out["n_seeds"] = grouped["seed"].nunique()
    return out.reset_index()


def answer_table(table: pd.DataFrame, levels: Sequence[float] = DEFAULT_LEVELS, min_seeds: int = 1) -> pd.DataFrame:
    """For each quality measure and level: the cheapest generator (by mean CPU seconds per
    sample) of each family whose mean over at least ``min_seeds`` seeds reaches the level,
    and which family is cheaper by what factor (empty cells where a family does not reach
    it). A generator run on fewer seeds stays in the table and the figure, not here: one
    seed's number decides nothing."""
    means = generator_means(table)
    means = means[means["n_seeds"] >= min_seeds]
    rows = []
    for measure in QUALITY_MEASURES:
        for level in levels:
            row: dict[str, Any] = {"measure": measure, "level": level}
            for family in (EBM_FAMILY, TRADITIONAL_FAMILY):
                reach = means[(means["family"] == family) & (means[measure] >= level)]
                reach = reach[np.isfinite(reach["cpu_seconds_per_1000_samples"])]
                if len(reach):
                    best = reach.loc[reach["cpu_seconds_per_1000_samples"].idxmin()]
                    row[f"{family}_generator"] = f"{best['model']} ({best['sampler']})"
                    row[f"{family}_cpu_seconds_per_1000_samples"] = float(best["cpu_seconds_per_1000_samples"])
                    row[f"{family}_quality"] = float(best[measure])
                else:
                    row[f"{family}_generator"] = ""
                    row[f"{family}_cpu_seconds_per_1000_samples"] = float("nan")
                    row[f"{family}_quality"] = float("nan")
            ebm_cost = row[f"{EBM_FAMILY}_cpu_seconds_per_1000_samples"]
            trad_cost = row[f"{TRADITIONAL_FAMILY}_cpu_seconds_per_1000_samples"]
            if math.isfinite(ebm_cost) and math.isfinite(trad_cost) and ebm_cost > 0 and trad_cost > 0:
                row["cheaper"] = EBM_FAMILY if ebm_cost < trad_cost else TRADITIONAL_FAMILY
                row["factor"] = max(ebm_cost, trad_cost) / min(ebm_cost, trad_cost)
            else:  # at most one family reaches the level: no factor
                row["cheaper"] = (f"only {TRADITIONAL_FAMILY}" if math.isfinite(trad_cost) else
                                  f"only {EBM_FAMILY}" if math.isfinite(ebm_cost) else "neither")
                row["factor"] = float("nan")
            rows.append(row)
    return pd.DataFrame(rows)


def _best(means: pd.DataFrame, family: str, measure: str) -> pd.Series | None:
    mine = means[(means["family"] == family) & np.isfinite(means[measure])]
    return None if mine.empty else mine.loc[mine[measure].idxmax()]


def _factors(answer: pd.DataFrame, measure: str) -> tuple[list[float], str]:
    both = answer[(answer["measure"] == measure) & np.isfinite(answer["factor"])]
    winners = set(both["cheaper"])
    return list(both["factor"]), (winners.pop() if len(winners) == 1 else "mixed")


def answer_sentences(table: pd.DataFrame, answer: pd.DataFrame, min_seeds: int = 1) -> list[str]:
    """The answer to seed 003's question, written from the comparison and its answer
    table: who reaches each shared quality level cheaper and by what factor, and the best
    quality each family reaches with its class coverage (the failures beside the
    successes); generators on fewer than ``min_seeds`` seeds are left out, as in the answer."""
    means = generator_means(table)
    means = means[means["n_seeds"] >= min_seeds]
    out = []
    for measure, words in QUALITY_MEASURES.items():
        factors, winner = _factors(answer, measure)
        best_ebm, best_trad = _best(means, EBM_FAMILY, measure), _best(means, TRADITIONAL_FAMILY, measure)
        if best_ebm is None or best_trad is None:
            continue
        shared = answer[(answer["measure"] == measure) & np.isfinite(answer["factor"])]
        if factors:
            levels = f"{shared['level'].min():g}-{shared['level'].max():g}"
            if winner == "mixed":
                lead = f"On {words}, neither family is cheaper at every level both reach ({levels})"
            else:
                lead = (f"On {words}, the {'traditional generators' if winner == TRADITIONAL_FAMILY else 'EBMs'} "
                        f"reach every level both families reach ({levels}) with "
                        f"{min(factors):.0f}-{max(factors):.0f}x fewer CPU seconds per sample")
        else:
            lead = f"On {words}, no level is reached by both families"
        only = answer[(answer["measure"] == measure) & answer["cheaper"].str.startswith("only ")]
        beyond = ""
        if len(only):
            top = only.loc[only["level"].idxmax()]
            beyond = f" Only the {'EBMs' if top['cheaper'] == 'only ' + EBM_FAMILY else 'traditional generators'} " \
                     f"reach {top['level']:g}."
        out.append(
            f"{lead}; the best EBM, {best_ebm['model']} ({best_ebm['sampler']}), reaches "
            f"{best_ebm[measure]:.2f} at {best_ebm['cpu_seconds_per_1000_samples']:.2g} CPU-s per 1,000 samples "
            f"(smallest class share {best_ebm['min_class_share']:.3f}, FID {best_ebm['fid']:.0f}), "
            f"the best traditional generator, {best_trad['model']}, {best_trad[measure]:.2f} at "
            f"{best_trad['cpu_seconds_per_1000_samples']:.2g} (smallest class share "
            f"{best_trad['min_class_share']:.3f}, FID {best_trad['fid']:.0f}); means over "
            f"{int(best_ebm['n_seeds'])} and {int(best_trad['n_seeds'])} seeds.{beyond}")
    nll = means[np.isfinite(means["nll_nats"])]
    kinds = table.groupby("model")["nll_kind"].first()
    raise_nll = table.groupby("model")["nll_raise_nats"].mean()
    parts = []
    for family in (TRADITIONAL_FAMILY, EBM_FAMILY):
        mine = nll[nll["family"] == family]
        if len(mine):
            best = mine.loc[mine["nll_nats"].idxmin()]
            text = f"{best['model']} {best['nll_nats']:.1f} nats ({kinds.get(best['model'], '')}"
            if family == EBM_FAMILY and np.isfinite(raise_nll.get(best["model"], np.nan)):
                text += f"; its RAISE bound {raise_nll[best['model']]:.1f} on fewer images"
            parts.append(text + ")")
    if parts:
        out.append("Lowest test NLL per family: " + ", ".join(parts) + ". AIS estimates err low and RAISE "
                   "bounds from above, so the EBM's true NLL lies between them.")
    return out + per_seed_sentences(table)


def _seed_values(rows: pd.DataFrame, column: str) -> str:
    return ", ".join(f"{v:.2f}" if np.isfinite(v) else "-" for v in rows[column])


def per_seed_sentences(table: pd.DataFrame) -> list[str]:
    """One line per EBM (our block sampler): its per-seed quality, so that a reader sees
    which seeds carry a mean near a target. Unconditional models: recognisable share of the
    ceiling's with the smallest class share; conditional ones: conditional recognition;
    with the long run's values (more sweeps of the same chains) where the model has one."""
    ebm = table[(table["family"] == EBM_FAMILY) & (table["sampler"] == "block")].sort_values("seed")
    out = []
    for model, rows in ebm.groupby("model", sort=True):
        seeds = ", ".join(str(int(s)) for s in rows["seed"])
        if bool(rows["conditional"].iloc[0]):
            parts = [f"conditional recognition {_seed_values(rows, 'conditional_recognition')}"]
            long = "long_conditional_recognition"
        else:
            parts = [f"recognisable / ceiling {_seed_values(rows, 'recognisable_fraction_vs_ceiling')}",
                     f"smallest class share {_seed_values(rows, 'min_class_share')}"]
            long = "long_recognisable_fraction_vs_ceiling"
        text = f"Per seed ({seeds}), {model} at {int(rows['sweeps'].iloc[0])} sweeps: " + "; ".join(parts)
        if rows[long].notna().any():
            text += f"; at {int(rows['long_sample_sweeps'].iloc[0])} sweeps {_seed_values(rows, long)}"
            if long == "long_recognisable_fraction_vs_ceiling":
                text += f" (smallest class share {_seed_values(rows, 'long_min_class_share')})"
        if "equilibrium_max_class_prior" in rows and rows["equilibrium_max_class_prior"].notna().any():
            text += ("; at equilibrium (AIS of the label units' prior) the most probable digit's share "
                     f"{_seed_values(rows, 'equilibrium_max_class_prior')}")
        out.append(text + ".")
    return out


def table_job(config: dict[str, Any], run_metrics: Sequence[str], ebm_tables: Sequence[str], table_path: str,
              answer_path: str, sentences_path: str) -> pd.DataFrame:
    """The comparison rule: the traditional runs' metrics.json files and the EBMs' table
    into ``tables/generative.csv`` (checked for the contract's columns), the answer table
    beside it and the answer's sentences (one per line, what the report's card leads with)."""
    from rgbench.io import atomic_path
    from rgbench.io import read_json, write_text_atomic
    from rgbench.results import flatten_record

    traditional = pd.DataFrame([flatten_record(read_json(path)) for path in sorted(map(str, run_metrics))])
    ebm = pd.concat([pd.read_csv(path) for path in ebm_tables]) if ebm_tables else None
    table = comparison_table(ebm, traditional, float(config["watts_per_core"]))
    missing = [c for c in config.get("required_columns", []) if c not in table.columns]
    if missing:
        raise ValueError(f"{table_path} lacks contract columns {missing}")
    answer = answer_table(table, config["levels"], config["min_seeds"])
    with atomic_path(table_path) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(answer_path) as tmp:
        answer.to_csv(tmp, index=False)
    write_text_atomic(sentences_path, "\n".join(answer_sentences(table, answer, config["min_seeds"])) + "\n")
    return table
