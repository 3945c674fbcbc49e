"""Gradient check: how close are PC weight updates to BP gradients, model by model?

For each registered model, on one fixed batch in float64:

    fixed_prediction_rel_error  ‖g_PC − g_BP‖ / ‖g_BP‖ in fixed-prediction mode at γ = 1, T = depth (round-off: ~1e-16)
    standard_pc_cosine          cos(g_PC, g_BP) of standard PC at the notebook's default T, γ and β
    standard_pc_rel_error       ‖g_PC − g_BP‖ / ‖g_BP‖ of the same
    standard_pc_by_beta         the cosine and relative error at the same T and γ for a firmly (β = 1) and a weakly
                                (β = 0.01) clamped output, so that every model is also compared at both β

and, for the scalar function of Millidge et al. (2020), the PC estimate −ε_x of dL/dx (fixed prediction, γ = 1,
T = graph depth) next to the autograd value.

Usage:
    python PC_BP_Gradients/gradcheck.py [--models mlp ...] [--json results/gradcheck.json] [--device cpu]

Adding a model: write a ``build(device) -> (model, x, y)`` that returns a float64 network with ``PCLayer`` value
nodes and a batch, and add a :class:`Case` to :data:`MODELS`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

import pc_common as pc
from PC_BP_Gradients.models import graphs, mlp, scalar
from PC_BP_Gradients.models.metrics import pc_vs_bp
from pc_common import cli
from pc_common.utils import write_json


@dataclass(frozen=True)
class Case:
    """One model of the gradient check.

    Attributes:
        build: ``device -> (model, x, y)``; model in float64 and ``train()`` mode.
        standard: the standard-PC setting its notebook uses by default (T, γ, β).
        depth: the longest path, in value nodes, from the first weight to the output: fixed-prediction inference at
            γ = 1 is exact after this many steps.
        loss: the output loss (``"mse"`` or ``"ce"``).
    """

    build: Callable[[torch.device], tuple[nn.Module, torch.Tensor, torch.Tensor]]
    standard: pc.PCConfig
    depth: int
    loss: str = "mse"


def _mlp(device):
    return mlp.build_mlp(device=device), *mlp.digit_batch(device=device)


def _graph(name: str) -> Callable[[torch.device], tuple[nn.Module, torch.Tensor, torch.Tensor]]:
    def build(device):
        prob = graphs.problem(name)
        return prob.model.to(device), prob.x.to(device), prob.y.to(device)

    return build


def _graph_case(name: str) -> Case:
    """CNN / RNN / LSTM (12 steps) of ``models.graphs``; standard PC weakly clamped (β = 0.01), γ = 0.3, T = 4·depth."""
    depth = graphs.problem(name).depth
    return Case(_graph(name), pc.PCConfig(T=4 * depth, inference_lr=0.3, momentum=0.0, output_precision=0.01), depth, "ce")


MODELS: dict[str, Case] = {
    "mlp": Case(
        build=_mlp,
        standard=pc.PCConfig(T=mlp.T_LONG, inference_lr=mlp.INFERENCE_LR, output_precision=mlp.OUTPUT_PRECISION),
        depth=len(mlp.SIZES) - 2,
        loss=mlp.LOSS,
    ),
    **{name: _graph_case(name) for name in graphs.GRAPHS},
}


# Output precisions at which every model's standard PC is also reported: the default settings differ between models
# (β = 1 for the MLP, 0.01 for the graphs), and the cosine depends strongly on β (Whittington & Bogacz, 2017).
BETAS = (1.0, 0.01)


def check(case: Case, device=None) -> dict:
    """Fixed-prediction relative error and standard-PC agreement (all layers together) of one model."""
    model, x, y = case.build(pc.pick_device(device))
    fixed = pc_vs_bp(model, x, y, case.loss, pc.PCConfig(T=case.depth, inference_lr=1.0, fixed_prediction=True))
    standard = pc_vs_bp(model, x, y, case.loss, case.standard)
    by_beta = {str(beta): pc_vs_bp(model, x, y, case.loss, replace(case.standard, output_precision=beta))["all"]
               for beta in BETAS}
    return {
        "fixed_prediction_rel_error": fixed["all"]["rel_error"],
        "fixed_prediction_T": case.depth,
        "standard_pc_cosine": standard["all"]["cosine"],
        "standard_pc_rel_error": standard["all"]["rel_error"],
        "standard_pc_T": case.standard.T,
        "standard_pc_inference_lr": case.standard.inference_lr,
        "standard_pc_output_precision": case.standard.output_precision,
        "standard_pc_by_beta": {b: {"cosine": r["cosine"], "rel_error": r["rel_error"]} for b, r in by_beta.items()},
    }


def scalar_check() -> dict[str, float]:
    """PC and autograd dL/dx of the scalar function (fixed prediction, γ = 1, T = graph depth)."""
    return {
        "scalar_dLdx_pc": scalar.pc_dLdx(gamma=1.0, T=scalar.DEPTH),
        "scalar_dLdx_true": scalar.true_dLdx(),
        "scalar_T": scalar.DEPTH,
    }


def run(models=None, device=None) -> dict:
    """The whole check: ``{"models": {name: check(...)}, **scalar_check()}``."""
    names = list(MODELS) if models is None else models
    return {"models": {name: check(MODELS[name], device) for name in names}, **scalar_check()}


def format_table(report: dict) -> str:
    """The report as a plain-text table."""
    betas = [f"cos β={b}" for b in BETAS]
    head = (f"{'model':<8} {'fixed-pred rel err':>19} {'T':>3} {'std-PC cosine':>14} {'std-PC rel err':>15} "
            f"{'T':>4} {'γ':>5} {'β':>5} " + " ".join(f"{b:>11}" for b in betas))
    rows = [head, "-" * len(head)]
    for name, r in report["models"].items():
        rows.append(
            f"{name:<8} {r['fixed_prediction_rel_error']:>19.2e} {r['fixed_prediction_T']:>3d} "
            f"{r['standard_pc_cosine']:>14.6f} {r['standard_pc_rel_error']:>15.3e} {r['standard_pc_T']:>4d} "
            f"{r['standard_pc_inference_lr']:>5g} {r['standard_pc_output_precision']:>5g} "
            + " ".join(f"{r['standard_pc_by_beta'][str(b)]['cosine']:>11.6f}" for b in BETAS)
        )
    rows.append(
        f"scalar dL/dx: PC {report['scalar_dLdx_pc']:.12f} (T={report['scalar_T']}, γ=1)   "
        f"autograd {report['scalar_dLdx_true']:.12f}"
    )
    return "\n".join(rows)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=cli.HelpFormatter)
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=None, help="default: all")
    parser.add_argument("--json", type=Path, default=None, help="write the report to this JSON file")
    parser.add_argument("--device", type=cli.device, default="auto",
                        help="auto (cuda when available, else cpu), cpu, cuda:1, …")
    args = parser.parse_args(argv)
    report = run(args.models, args.device)
    print(format_table(report))
    if args.json is not None:
        write_json(args.json, report, indent=2)
    return report


if __name__ == "__main__":
    main()
