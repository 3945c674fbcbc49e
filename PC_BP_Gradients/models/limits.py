"""Where standard PC stops tracking BP: the curvature of F and the depth of the network.

Two measurements for ``6_limits.ipynb`` and ``depth_sweep.py``:

    λ_max(∂²F/∂φ²)        ``pc_common.diagnostics.energy_curvature`` (power iteration on Hessian-vector
                          products): standard PC's neuron descent is stable only for γ < 2 / λ_max
    ‖g_PC,ℓ‖ / ‖g_BP,ℓ‖   the share of the BP gradient that reaches weight layer ℓ under standard PC, and the test
                          accuracy of BP and PC, against the number of hidden layers (same width)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import MaxNLocator
from torch import nn

import pc_common as pc

from .metrics import bp_layer_gradients, cosine, pc_layer_gradients
from .mlp import build_mlp


def spectral_norms(model: nn.Module) -> list[float]:
    """‖W_ℓ‖₂ (largest singular value) of every Linear layer, input side first."""
    return [float(torch.linalg.matrix_norm(m.weight.detach(), ord=2)) for m in model.modules()
            if isinstance(m, nn.Linear)]


def deep_mlp(hidden_layers: int, width: int, dtype=torch.float32, device=None, seed: int = 0) -> nn.Sequential:
    """The tutorial's tanh MLP with ``hidden_layers`` hidden layers of ``width`` (784 in, 10 out), with orthogonal
    weights (gain 1) and zero biases.

    Why not PyTorch's default initialisation: its weights shrink the signal by a constant factor per layer, so that
    beyond about a dozen tanh layers BP itself stalls, and a depth sweep would measure the initialisation instead of
    the learning rule. Orthogonal weights keep every layer's Jacobian close to norm 1 at the start.
    """
    model = build_mlp((784, *[width] * hidden_layers, 10), dtype=dtype, device=device, seed=seed)
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            nn.init.orthogonal_(layer.weight)
            nn.init.zeros_(layer.bias)
    return model


def gradient_agreement(model: nn.Module, x, y, config: pc.PCConfig, loss="mse") -> dict[str, list[float]]:
    """Per weight layer ℓ (input side first): the share ‖g_PC,ℓ‖ / ‖g_BP,ℓ‖ and the cosine cos(g_PC,ℓ, g_BP,ℓ).

    A share of 1 means PC's update has BP's size at that layer, 0 that the output error never arrived there; the
    cosine says whether what arrived points BP's way (Adam rescales sizes, not directions).
    """
    bp = bp_layer_gradients(model, x, y, loss)
    pc_grads, _ = pc_layer_gradients(model, x, y, loss, config)
    model.zero_grad(set_to_none=True)
    return {"share": [float(pc_grads[k].norm() / bp[k].norm()) for k in bp],
            "cosine": [float(cosine(pc_grads[k], bp[k], 0)) for k in bp]}


def depth_point(hidden_layers: int, data: pc.Splits, config: pc.PCConfig, *, width: int, epochs: int, lr: float,
                seed: int = 0, loss="mse", max_batches: int | None = None) -> dict:
    """One depth of the sweep: the gradient share at initialisation (float64, one training batch), then BP and PC
    trained from the same initial weights (:func:`pc_common.train_rules`).

    Returns:
        ``{"hidden_layers", "share": [per weight layer], "bp"/"pc": {"test_accuracy", "best_epoch"}}``, accuracies
        at the best-validation epoch.
    """
    x, y = next(iter(data.train))
    probe = deep_mlp(hidden_layers, width, dtype=torch.float64, device=x.device, seed=seed)
    share = gradient_agreement(probe, x.double(), y, config, loss)["share"]
    _, histories = pc.train_rules(lambda: deep_mlp(hidden_layers, width, device=x.device, seed=seed), data,
                                  {"bp": None, "pc": config}, seed=seed, epochs=epochs, lr=lr, loss=loss,
                                  max_batches=max_batches, progress=False)
    return {"hidden_layers": hidden_layers, "share": share,
            **{rule: {"test_accuracy": h.best["test_accuracy"], "best_epoch": h.best_epoch + 1}
               for rule, h in histories.items()}}


def linear_weights(model: nn.Module) -> list[nn.Parameter]:
    """The weight matrix W_ℓ of every Linear layer, input side first."""
    return [m.weight for m in model.modules() if isinstance(m, nn.Linear)]


def weight_change(model: nn.Module, initial: Sequence[torch.Tensor]) -> list[float]:
    """‖W_ℓ − W_ℓ(0)‖_F / ‖W_ℓ(0)‖_F per weight layer: how far training has moved each layer, relative to its size."""
    return [float((w.detach() - w0).norm() / w0.norm()) for w, w0 in zip(linear_weights(model), initial)]


def equilibrium_steps(model: nn.Module, x, y, config: pc.PCConfig, horizon: int, tol: float = 1e-3,
                      loss="mse") -> dict:
    """The number of inference steps after which the energy has stopped falling, measured.

        T_eq = min { T : F(T) − F(H) ≤ tol · (F(0) − F(H)) },   H = ``horizon``

    F(H) stands in for the equilibrium energy, so T_eq is only trusted when it is well inside the horizon
    (T_eq ≤ H / 2: F fell by less than ``tol`` of its total fall over the last half of the run).

    Returns:
        ``{"T": T_eq, "horizon": H, "tol": tol, "F_ratio": F(T_eq) / F(0)}``.

    Raises:
        ValueError: if T_eq > H / 2 (use a longer horizon).
    """
    trace = pc.infer(model, x, y, loss, replace(config, T=horizon), weight_grads=False).energies.double()
    remaining = (trace - trace[-1]) / (trace[0] - trace[-1])
    t_eq = int((remaining > tol).nonzero().max()) + 1
    if t_eq > horizon // 2:
        raise ValueError(f"the energy still falls after {horizon // 2} of {horizon} steps: use a longer horizon")
    return {"T": t_eq, "horizon": horizon, "tol": tol, "F_ratio": float(trace[t_eq] / trace[0])}


def remaining_fall(model: nn.Module, x, y, config: pc.PCConfig, factor: int = 4, loss="mse") -> float:
    """(F(T) − F(kT)) / (F(0) − F(kT)), k = ``factor``: the part of the fall within kT steps that T steps leave undone.

    Checks on trained weights that a T chosen on the initial network is still near equilibrium.
    """
    trace = pc.infer(model, x, y, loss, replace(config, T=factor * config.T), weight_grads=False).energies.double()
    return float((trace[config.T] - trace[-1]) / (trace[0] - trace[-1]))


def control_run(hidden_layers: int, data: pc.Splits, config: pc.PCConfig | None, probe, *, width: int, epochs: int,
                lr: float, seed: int = 0, loss="mse", max_batches: int | None = None,
                checkpoint: str | Path | None = None) -> dict:
    """One run of the depth controls: BP (``config=None``) or standard PC at ``config``, from the seed's network.

    After every epoch it records where the weights moved, ‖W_ℓ − W_ℓ(0)‖ / ‖W_ℓ(0)‖ per layer, and for PC how its
    update compares with BP's gradient at the current weights on a fixed ``probe`` batch (share and cosine per layer,
    :func:`gradient_agreement`), so that "the early layers barely learn" is measured rather than inferred. The same
    seed gives the same initial weights and batch order for every setting (paired runs).

    With ``checkpoint`` (a file), the training checkpoints there after every epoch and continues from it when it
    exists (:func:`pc_common.fit`): the record is the uninterrupted run's, but for the seconds.

    Returns:
        ``{"test_accuracy", "best_epoch"` (at the best-validation epoch), "init": {...}, "epochs": [...], "alarms"}``
        and, for PC, ``"remaining_fall"`` of the trained network (:func:`remaining_fall`).
    """
    x, y = probe
    model = deep_mlp(hidden_layers, width, device=x.device, seed=seed)
    initial = [w.detach().clone() for w in linear_weights(model)]

    def measure(m: nn.Module) -> dict:
        out = {"weight_change": weight_change(m, initial)}
        if config is not None:
            out.update(gradient_agreement(m, x, y, config, loss))
        return out

    start = measure(model)
    data.train.generator = torch.Generator().manual_seed(seed)
    history = pc.fit(model, data, "bp" if config is None else "pc", epochs=epochs, lr=lr, loss=loss,
                     pc=config or pc.PCConfig(), max_batches=max_batches, progress=False, on_epoch=measure,
                     checkpoint=checkpoint)
    keys = ("epoch", "seconds", "train_loss", "val_accuracy", "test_accuracy", "weight_change", "share", "cosine")
    record = {"test_accuracy": history.best["test_accuracy"], "best_epoch": history.best_epoch + 1, "init": start,
              "epochs": [{k: e[k] for k in keys if k in e} for e in history.epochs], "alarms": history.alarms}
    if config is not None:
        record["remaining_fall"] = remaining_fall(model, x, y, config, loss=loss)
    return record


def plot_depth_sweep(points: Sequence[dict], title: str = ""):
    """Left: test accuracy of BP and PC against the number of hidden layers. Right: the gradient share per layer
    (input side on the left), one line per depth, on a log axis.

    Returns:
        the figure.
    """
    fig, (ax_acc, ax_share) = plt.subplots(1, 2, figsize=(11, 3.8))
    depths = [p["hidden_layers"] for p in points]
    for i, rule in enumerate(("bp", "pc")):
        ax_acc.plot(depths, [100 * p[rule]["test_accuracy"] for p in points], marker="o",
                    color=f"C{i}", label=rule.upper())
    ax_acc.set_xlabel("hidden layers")
    ax_acc.set_ylabel("test accuracy at best validation epoch (%)")
    ax_acc.set_xticks(depths)
    ax_acc.legend()
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(points)))
    for p, c in zip(points, colors):
        layers = np.arange(1, len(p["share"]) + 1)
        ax_share.plot(layers, p["share"], marker="o", ms=3, color=c, label=f"{p['hidden_layers']} hidden")
    ax_share.set_yscale("log")
    ax_share.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_share.set_xlabel("weight layer ℓ (1 = input side)")
    ax_share.set_ylabel("‖g_PC,ℓ‖ / ‖g_BP,ℓ‖ at initialisation")
    ax_share.legend(fontsize=8)
    for ax in (ax_acc, ax_share):
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_depth_controls(report: dict):
    """The depth controls on one figure (``depth_sweep.py --controls --merge``), mean over seeds, error bars ± SE.

    Top: test accuracy against depth (BP and each PC setting); layer 1's share of BP's gradient at initialisation at
    T = 2(d + 1) and at T_eq, for β = 1 and 0.01; how far layer 1 moved in training, ‖ΔW_1‖ / ‖W_1(0)‖.
    Bottom, at the deepest network: layer 1's cosine to BP over training; ‖ΔW_ℓ‖ / ‖W_ℓ(0)‖ per layer after
    training; the cosine per layer at initialisation.

    Returns:
        the figure.
    """
    summary, runs, depths = report["summary"], report["runs"], report["settings"]["depths"]
    deepest = max(depths)
    settings = ["bp", *report["settings"]["settings"]]
    color = {s: f"C{i}" for i, s in enumerate(settings)}
    label = {"bp": "BP", **{s: f"PC {s} (β={v['output_precision']:g}, T={v['T']})"
                            for s, v in report["settings"]["settings"].items()}}
    for s in settings:  # the number of seeds behind each line, e.g. "seeds 1–3" when some depths have fewer
        counts = sorted({len(r["seeds"]) for r in summary if r["setting"] == s}) or [0]
        label[s] += f", seeds {counts[0]}" + (f"–{counts[-1]}" if counts[-1] != counts[0] else "")
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))

    def by_depth(ax, key, setting, scale=1.0):
        rows = [r for r in summary if r["setting"] == setting and key in r]
        if not rows:
            return
        ax.errorbar([r["hidden_layers"] for r in rows], [scale * r[key]["mean"] for r in rows],
                    yerr=[scale * (r[key]["se"] if r[key]["n"] > 1 else 0) for r in rows], marker="o", ms=4,
                    capsize=3, color=color[setting], label=label[setting])

    for s in settings:
        by_depth(axes[0, 0], "test_accuracy", s, 100)
        by_depth(axes[0, 2], "weight_change_1", s)
    axes[0, 0].set_ylabel("test accuracy at best validation epoch (%)")
    axes[0, 2].set_ylabel("‖ΔW_1‖ / ‖W_1(0)‖ after training")
    axes[0, 2].set_yscale("log")
    corners = list(report["init"][0]["agreement"])
    for i, name in enumerate(range(len(corners))):
        points = [(p["hidden_layers"], list(p["agreement"].values())[name]) for p in report["init"]]
        beta = points[0][1]["beta"]
        short = i % 2 == 0
        axes[0, 1].plot([d for d, _ in points], [a["share"][0] for _, a in points], marker="o", ms=4,
                        ls="-" if short else "--", color="C1" if beta == 1 else "C2",
                        label=f"β = {beta:g}, T = {'2(d+1)' if short else 'T_eq(d)'}")
    axes[0, 1].set_yscale("log")
    axes[0, 1].set_ylabel("‖g_PC,1‖ / ‖g_BP,1‖ at initialisation")
    for ax in axes[0]:
        ax.set_xlabel("hidden layers d")
        ax.set_xticks(depths)

    for s in settings[1:]:
        rs = [r for r in runs if r["setting"] == s and r["hidden_layers"] == deepest]
        if not rs:
            continue
        curves = np.array([[r["init"]["cosine"][0]] + [e["cosine"][0] for e in r["epochs"]] for r in rs])
        axes[1, 0].plot(np.arange(curves.shape[1]), curves.mean(0), marker="o", ms=3, color=color[s], label=label[s])
    axes[1, 0].set_xlabel("epoch (0 = initialisation)")
    axes[1, 0].set_ylabel("cos(g_PC,1, g_BP,1) on the probe batch")
    for s in settings:
        rs = [r for r in runs if r["setting"] == s and r["hidden_layers"] == deepest]
        if rs:
            change = np.array([r["epochs"][-1]["weight_change"] for r in rs]).mean(0)
            axes[1, 1].plot(np.arange(1, len(change) + 1), change, marker="o", ms=3, color=color[s], label=label[s])
    axes[1, 1].set_yscale("log")
    axes[1, 1].set_ylabel("‖ΔW_ℓ‖ / ‖W_ℓ(0)‖ after training")
    deep_init = next(p for p in report["init"] if p["hidden_layers"] == deepest)
    for i, (name, a) in enumerate(deep_init["agreement"].items()):
        axes[1, 2].plot(np.arange(1, len(a["cosine"]) + 1), a["cosine"], marker="o", ms=3,
                        ls="-" if i % 2 == 0 else "--", color="C1" if a["beta"] == 1 else "C2", label=name)
    axes[1, 2].set_ylabel("cos(g_PC,ℓ, g_BP,ℓ) at initialisation")
    for ax in axes[1, 1:]:
        ax.set_xlabel(f"weight layer ℓ (1 = input side), {deepest} hidden layers")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes.flat:
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle(f"Depth controls: {report['settings']['dataset']}, width {report['settings']['width']}, "
                 f"{report['settings']['epochs']} epochs, Adam α = {report['settings']['lr']:g}, γ = "
                 f"{report['settings']['inference_lr']:g}; mean ± SE over the seeds run (legend)")
    fig.tight_layout()
    return fig
