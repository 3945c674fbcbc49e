"""Tests of classification/sweep.py's choice rule, and that compare.py's defaults are what it chooses."""

import json
from pathlib import Path

import pytest

from classification import compare
from classification.sweep import GRID, STABILITY_MARGIN, bound_contingency, choose

RESULTS = Path(__file__).resolve().parents[1] / "classification" / "results"


def run(rule, val, alarms=(), gamma_lambda=None, **settings):
    """One sweep row with every setting of the rule's grid axes (the first value unless given)."""
    row = {"rule": rule, **{k: v[0] for k, v in GRID[rule].items()}, **settings, "best_val_accuracy": val,
           "alarms": list(alarms)}
    if gamma_lambda is not None:
        row["gamma_lambda"] = gamma_lambda
    return row


def test_choose_takes_the_most_accurate_stable_point():
    """A setting that raised a guard alarm, or whose γλ_max passed the margin in any epoch, is not chosen however
    accurate: it trained at the edge of the neuron step's stability bound and crosses it in a longer run."""
    runs = [
        run("bp", 0.80, lr=1e-4), run("bp", 0.85, lr=1e-3), run("bp", 0.90, alarms=[{"epoch": 3}], lr=3e-3),
        run("pc", 0.95, gamma_lambda=[0.5, STABILITY_MARGIN + 0.01], lr=3e-3),  # over the margin once
        run("pc", 0.94, alarms=[{"epoch": 1}], gamma_lambda=[0.5, 0.6], lr=1e-2),
        run("pc", 0.88, gamma_lambda=[0.5, STABILITY_MARGIN], lr=1e-3),  # at the margin: accepted
        run("pc", 0.87, gamma_lambda=[0.2, 0.3], lr=3e-4),
    ]
    chosen = choose({"runs": runs})
    assert chosen["bp"] == {"lr": 1e-3}
    assert chosen["pc"]["lr"] == 1e-3
    assert set(chosen["pc"]) == set(GRID["pc"])


def test_choose_says_when_nothing_is_stable():
    runs = [run("bp", 0.8), run("pc", 0.9, gamma_lambda=[2.5])]
    with pytest.raises(ValueError, match="no stable pc setting"):
        choose({"runs": runs})


@pytest.mark.parametrize("loss, tag", [("mse", ""), ("ce", "-ce")])
def test_compare_defaults_are_the_committed_sweeps_choice(loss, tag):
    """The defaults in compare.py must be what the rule picks from the committed validation sweep, not numbers edited
    by hand: the README's full-scale rows are run with these defaults."""
    chosen = choose(json.loads((RESULTS / f"sweep_fashion-mnist{tag}.json").read_text()))
    assert compare.LEARNING_RATES[loss] == {"bp": chosen["bp"]["lr"], "pc": chosen["pc"]["lr"]}
    pc = compare.PC_SETTINGS
    assert (pc.output_precision, pc.inference_lr, pc.T) == (
        chosen["pc"]["output_precision"], chosen["pc"]["inference_lr"], chosen["pc"]["T"])


def test_bound_contingency_counts_each_pc_run_once():
    """Each PC run lands in one cell by its largest γλ_max (past 2 or not) and whether the guard alarmed; BP runs,
    which have no neuron step, are not counted, and a run that diverged before its first probe has a cell of its own.
    Worked by hand on six runs."""
    runs = [
        run("bp", 0.8),
        run("pc", 0.9, gamma_lambda=[1.0, 2.5], alarms=[{"epoch": 2}]),  # past, alarm
        run("pc", 0.9, gamma_lambda=[2.1]),  # past, no alarm
        run("pc", 0.9, gamma_lambda=[1.9], alarms=[{"epoch": 1}]),  # below, alarm
        run("pc", 0.9, gamma_lambda=[2.0]),  # at the bound is not past it
        run("pc", None, gamma_lambda=[], alarms=[{"epoch": 1, "diverged": "inf"}]),  # diverged before a probe
    ]
    assert bound_contingency(runs) == {"past, alarm": 1, "past, no alarm": 1, "below, alarm": 1,
                                       "below, no alarm": 1, "diverged before a probe": 1}
