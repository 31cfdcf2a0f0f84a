"""The seed-003 comparison (rgbench.evaluation.comparison) and the energy estimate
(rgbench.evaluation.energy): exact values on tiny hand-made tables and a fake powercap tree."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from rgbench.evaluation.comparison import COLUMNS, answer_sentences, answer_table, comparison_table
from rgbench.evaluation.energy import RAPL_METHOD, RaplMeter, energy_per_sample, estimate_method, package_domains


def ebm_rows() -> pd.DataFrame:
    """What tables/potts_ebm.csv holds for an independent model and one RBM seed sampled
    by our sampler and by THRML (the THRML row has no likelihood of its own)."""
    base = {"ceiling_recognisable_fraction": 0.98, "ceiling_conditional_recognition": 0.99, "class_entropy": 2.2,
            "memorisation_l2_ratio": 1.2, "exact_copy_fraction": 0.0, "n_samples": 1000, "sample_sweeps": 300}
    return pd.DataFrame([
        {**base, "model": "independent", "sampler": "block", "seed": 0, "test_nll_nats": 324.6,
         "recognisable_fraction_vs_ceiling": 0.02, "cpu_seconds_per_1000_samples": 0.01},
        {**base, "model": "rbm", "sampler": "block", "seed": 0, "test_nll_nats": 176.0, "likelihood_method": "ais+raise",
         "test_nll_raise_nats": 192.7, "test_nll_ais_raise_images_nats": 174.7, "raise_images": 100,
         "train_cpu_seconds": 35.0, "fid": 60.0, "recognisable_fraction": 0.75, "recognisable_fraction_vs_ceiling": 0.76,
         "min_class_share": 0.04, "wall_seconds_per_1000_samples": 8.0, "cpu_seconds_per_1000_samples": 8.0,
         "cpu_seconds_per_recognisable_digit": 0.0107},
        {**base, "model": "rbm", "sampler": "thrml", "seed": 0, "fid": 58.0, "recognisable_fraction": 0.78,
         "recognisable_fraction_vs_ceiling": 0.80, "min_class_share": 0.05, "wall_seconds_per_1000_samples": 20.0,
         "cpu_seconds_per_1000_samples": 19.0, "cpu_seconds_per_recognisable_digit": 0.024,
         "sampling_energy_joules_per_sample": 0.5},
    ])


def traditional_rows() -> pd.DataFrame:
    """What the generative runs' metrics give: a MADE (exact NLL) and a VAE (a bound)."""
    base = {"sampler": "ancestral", "conditional": False, "ceiling_recognisable_fraction": 0.98,
            "ceiling_conditional_recognition": 0.99, "n_samples": 1000, "sample_batch": 1000, "sample_sweeps": 1,
            "class_entropy": 2.1, "memorisation_l2_ratio": 1.25, "exact_copy_fraction": 0.0, "min_class_share": 0.03}
    return pd.DataFrame([
        {**base, "model": "made", "seed": 0, "test_nll_nats": 161.6, "nll_kind": "exact", "nll_method": "exact",
         "fid": 100.0, "recognisable_fraction": 0.58, "recognisable_fraction_vs_ceiling": 0.59,
         "wall_seconds_per_1000_samples": 0.4, "cpu_seconds_per_1000_samples": 0.4, "train_cpu_seconds": 62.0},
        {**base, "model": "vae", "seed": 0, "test_nll_nats": 163.8, "nll_kind": "bound", "nll_method": "iwae_k100",
         "fid": 200.0, "recognisable_fraction": 0.27, "recognisable_fraction_vs_ceiling": 0.28,
         "wall_seconds_per_1000_samples": 0.2, "cpu_seconds_per_1000_samples": 0.16, "train_cpu_seconds": 52.0},
    ])


def test_the_table_has_every_generator_once_per_sampler_and_seed_and_no_baseline() -> None:
    table = comparison_table(ebm_rows(), traditional_rows(), watts_per_core=4.0)
    assert list(table.columns) == COLUMNS
    assert sorted(zip(table["model"], table["sampler"])) == [("made", "ancestral"), ("rbm", "block"),
                                                              ("rbm", "thrml"), ("vae", "ancestral")]
    assert set(table[table["model"] == "rbm"]["family"]) == {"ebm"}
    assert set(table[table["model"] != "rbm"]["family"]) == {"traditional"}


def test_a_thrml_row_takes_its_models_likelihood_and_training_cost_from_the_block_row() -> None:
    table = comparison_table(ebm_rows(), traditional_rows(), watts_per_core=4.0).set_index(["model", "sampler"])
    thrml, block = table.loc[("rbm", "thrml")], table.loc[("rbm", "block")]
    assert thrml["nll_nats"] == block["nll_nats"] == 176.0 and thrml["nll_kind"] == "ais"
    assert thrml["nll_raise_nats"] == 192.7 and thrml["train_cpu_seconds"] == 35.0
    assert thrml["fid"] == 58.0 and block["fid"] == 60.0  # its samples are its own
    assert table.loc[("made", "ancestral"), "nll_kind"] == "exact"
    assert table.loc[("vae", "ancestral"), "nll_kind"] == "bound"


def test_energy_is_measured_where_rapl_was_read_and_estimated_from_cpu_seconds_elsewhere() -> None:
    table = comparison_table(ebm_rows(), traditional_rows(), watts_per_core=4.0).set_index(["model", "sampler"])
    assert table.loc[("rbm", "thrml"), "energy_joules_per_sample"] == 0.5
    assert table.loc[("rbm", "thrml"), "energy_method"] == RAPL_METHOD
    assert table.loc[("rbm", "block"), "energy_joules_per_sample"] == pytest.approx(8.0 / 1000 * 4.0)
    assert table.loc[("made", "ancestral"), "energy_method"] == estimate_method(4.0) == "cpu_seconds_x_4_w_per_core"


def test_the_answer_names_the_cheapest_generator_of_each_family_per_level_and_the_factor() -> None:
    table = comparison_table(ebm_rows(), traditional_rows(), watts_per_core=4.0)
    answer = answer_table(table, levels=[0.2, 0.5, 0.7]).set_index(["measure", "level"])
    low = answer.loc[("recognisable_fraction_vs_ceiling", 0.2)]
    # the VAE (0.16 CPU-s per 1,000) reaches 0.2 more cheaply than the MADE; the block RBM beats THRML
    assert low["traditional_generator"] == "vae (ancestral)" and low["ebm_generator"] == "rbm (block)"
    assert low["cheaper"] == "traditional" and low["factor"] == pytest.approx(8.0 / 0.16)
    middle = answer.loc[("recognisable_fraction_vs_ceiling", 0.5)]
    assert middle["traditional_generator"] == "made (ancestral)" and middle["factor"] == pytest.approx(8.0 / 0.4)
    high = answer.loc[("recognisable_fraction_vs_ceiling", 0.7)]
    assert high["cheaper"] == "only ebm" and math.isnan(high["factor"])
    # no conditional model in the tiny table: no family reaches any conditional level
    assert set(answer.loc["conditional_recognition"]["cheaper"]) == {"neither"}


def test_the_sentences_say_who_is_cheaper_by_how_much_and_the_best_of_each_family() -> None:
    table = comparison_table(ebm_rows(), traditional_rows(), watts_per_core=4.0)
    sentences = answer_sentences(table, answer_table(table, levels=[0.2, 0.5, 0.7]))
    assert "traditional generators reach every level both families reach (0.2-0.5) with 20-50x fewer" in sentences[0]
    assert "the best EBM, rbm (thrml), reaches 0.80" in sentences[0] and "Only the EBMs reach 0.7." in sentences[0]
    # a generator on fewer seeds than asked stays out of the answer
    assert answer_table(table, levels=[0.2], min_seeds=2)["cheaper"].tolist() == ["neither", "neither"]
    assert sentences[-2].startswith("Lowest test NLL per family: made 161.6 nats (exact), rbm 176.0 nats (ais; its "
                                    "RAISE bound 192.7 on fewer images)")
    assert sentences[-1] == "Per seed (0), rbm at 300 sweeps: recognisable / ceiling 0.76; smallest class share 0.04."


def test_per_seed_lines_show_every_seed_and_the_long_runs_values() -> None:
    """A model scored at the budget and after more sweeps (the DBNs) shows both, per seed;
    a THRML row stays out (the lines are our sampler's)."""
    dbn = [{"model": "dbn_cond", "sampler": "block", "seed": seed, "n_samples": 1000, "sample_sweeps": 100,
            "conditional_recognition": value, "long_conditional_recognition": value + 0.05, "long_sample_sweeps": 1000,
            "recognisable_fraction_vs_ceiling": 0.7, "cpu_seconds_per_1000_samples": 2.6}
           for seed, value in ((1, 0.83), (0, 0.84))]
    dbn.append({**dbn[0], "sampler": "thrml", "conditional_recognition": 0.1})
    table = comparison_table(pd.concat([ebm_rows(), pd.DataFrame(dbn)]), traditional_rows(), watts_per_core=4.0)
    assert table.loc[table["model"] == "dbn_cond", "long_sample_sweeps"].tolist() == [1000.0] * 3
    assert table.loc[table["model"] == "made", "long_conditional_recognition"].isna().all()
    sentences = answer_sentences(table, answer_table(table, levels=[0.5]))
    assert sentences[-2] == ("Per seed (0, 1), dbn_cond at 100 sweeps: conditional recognition 0.84, 0.83; "
                             "at 1000 sweeps 0.89, 0.88.")


def test_bad_input_fails_with_a_message() -> None:
    with pytest.raises(ValueError, match="no generator"):
        comparison_table(None, None, watts_per_core=4.0)
    bad = traditional_rows().assign(nll_kind="guess")
    with pytest.raises(ValueError, match="unknown nll_kind 'guess'"):
        comparison_table(None, bad, watts_per_core=4.0)
    with pytest.raises(ValueError, match="watts_per_core"):
        energy_per_sample(0.001, None, watts_per_core=0.0)


def _domain(root: Path, name: str, energy_uj: int, max_uj: int = 1_000_000) -> Path:
    domain = root / name
    domain.mkdir(parents=True)
    (domain / "energy_uj").write_text(f"{energy_uj}\n")
    (domain / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return domain


def test_rapl_reads_package_domains_only_and_corrects_one_wrap(tmp_path: Path) -> None:
    package0 = _domain(tmp_path, "intel-rapl:0", 999_000)
    _domain(tmp_path, "intel-rapl:0:0", 5)  # a core sub-domain: part of package 0, not counted
    package1 = _domain(tmp_path, "intel-rapl:1", 100)
    assert [d.name for d in package_domains(tmp_path)] == ["intel-rapl:0", "intel-rapl:1"]
    with RaplMeter(tmp_path) as meter:
        (package0 / "energy_uj").write_text("2000\n")  # wrapped at 1,000,000: 1,000 + 2,000 uJ
        (package1 / "energy_uj").write_text("500100\n")  # 0.5 J
    assert meter.joules == pytest.approx(0.003 + 0.5)


def test_without_counters_the_meter_reads_none(tmp_path: Path) -> None:
    with RaplMeter(tmp_path / "absent") as meter:
        pass
    assert meter.joules is None
    assert energy_per_sample(0.002, None, 5.0) == (pytest.approx(0.01), "cpu_seconds_x_5_w_per_core")
    assert energy_per_sample(None, None, 5.0) == (None, "cpu_seconds_x_5_w_per_core")
