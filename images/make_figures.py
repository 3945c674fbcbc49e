"""Draw the two schematic figures of the README from code: the architectures and the pseudocodes.

    python images/make_figures.py            # writes images/architectures.png and images/pseudocodes.png
    python images/make_figures.py --out DIR  # writes them into DIR instead

Only matplotlib is needed (equations use its built-in mathtext, no LaTeX installation). The symbols are the glossary's
(README): value nodes φ_ℓ (``x``), predictions μ_ℓ (``mu``), errors ε_ℓ = φ_ℓ − μ_ℓ (``eps``), energy F
(``energy``), T inference steps, γ (``inference_lr``), weights Θ with learning rate α, output precision β.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Rectangle

HERE = Path(__file__).resolve().parent
DPI = 130

# One colour per role, shared by both figures.
PRED = "#1f5fae"  # predictions μ (forward / top-down)
ERR = "#c0392b"  # errors ε (PC) and gradients δ (BP)
NODE = "#d6e6f7"  # value nodes φ
ERR_FILL = "#f8d7d3"  # error units ε
DATA = "#4a4a4a"  # clamped data (input x, target y, image)
HIDDEN = "#e6e6e6"  # BP activations h

# Panel geometry (data coordinates): value nodes / activations on the top row, errors / gradients below.
TOP, BOTTOM, R_NODE, R_ERR = 2.6, 0.9, 0.42, 0.3


def _circle(ax, xy, r, face, label, edge="black", color="black", size=15):
    patch = Circle(xy, r, facecolor=face, edgecolor=edge, lw=1.4, zorder=3)
    ax.add_patch(patch)
    ax.text(*xy, label, ha="center", va="center", fontsize=size, color=color, zorder=4)
    return patch


def _square(ax, xy, label, size=15):
    s = 0.78
    patch = Rectangle((xy[0] - s / 2, xy[1] - s / 2), s, s, facecolor=DATA, edgecolor="black", lw=1.4, zorder=3)
    ax.add_patch(patch)
    ax.text(*xy, label, ha="center", va="center", fontsize=size, color="white", zorder=4)
    return patch


def _arrow(ax, a, b, color, dashed=False, rad=0.0, label=None, label_at=0.5, offset=(0.0, 0.0), lw=1.8):
    """Arrow from patch ``a`` to patch ``b`` (clipped at their edges), with an optional label near the curve."""
    arrow = FancyArrowPatch(
        posA=_center(a),
        posB=_center(b),
        patchA=a,
        patchB=b,
        arrowstyle="-|>",
        mutation_scale=16,
        connectionstyle=f"arc3,rad={rad}",
        color=color,
        lw=lw,
        linestyle=(0, (4, 2.5)) if dashed else "-",
        zorder=2,
    )
    ax.add_patch(arrow)
    if label:
        (xa, ya), (xb, yb) = _center(a), _center(b)
        x = xa + label_at * (xb - xa) + offset[0]
        y = ya + label_at * (yb - ya) + offset[1]
        ax.text(x, y, label, ha="center", va="center", fontsize=12, color=color, zorder=5,
                bbox=dict(boxstyle="round,pad=0.12", fc="white", ec="none", alpha=0.9))
    return arrow


def _center(patch):
    return patch.center if isinstance(patch, Circle) else patch.get_center()


def _link(ax, a, b):
    """The thin line joining a value node φ_ℓ (or a clamped output) to its own error unit ε_ℓ = φ_ℓ − μ_ℓ."""
    (xa, ya), (xb, yb) = _center(a), _center(b)
    ax.plot([xa, xb], [ya, yb], color="black", lw=1.2, zorder=1)


def _panel(ax, title, subtitle):
    ax.set_xlim(-0.2, 10.2)
    ax.set_ylim(-0.3, 3.85)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=14, fontweight="bold", loc="left", pad=4)
    ax.text(-0.2, 3.65, subtitle, fontsize=11, color="#333333", va="center")


def _bp_chain(ax, xs, top_labels, first_is_data, target_label, output_label, delta_labels):
    """BP: activations h on the top row, a forward sweep (blue), then the backward sweep of δ = ∂L/∂h (red)."""
    nodes = []
    for i, (x, lab) in enumerate(zip(xs, top_labels)):
        if i == 0 and first_is_data:
            nodes.append(_square(ax, (x, TOP), lab))
        else:
            nodes.append(_circle(ax, (x, TOP), R_NODE, HIDDEN, lab))
    for a, b in zip(nodes[:-1], nodes[1:]):
        _arrow(ax, a, b, PRED)
    loss = _circle(ax, (xs[-1] + 1.35, BOTTOM), R_ERR + 0.08, ERR_FILL, r"$L$", edge=ERR, size=14)
    target = _square(ax, (xs[-1] + 1.35, TOP), target_label)
    _arrow(ax, target, loss, DATA, lw=1.4)
    _arrow(ax, nodes[-1], loss, PRED, label=output_label, label_at=0.5, offset=(-0.25, -0.05))
    deltas = [_circle(ax, (x, BOTTOM), R_ERR, ERR_FILL, lab, edge=ERR, size=12)
              for x, lab in zip(xs[1:], delta_labels)]
    chain = [loss] + deltas[::-1]
    for a, b in zip(chain[:-1], chain[1:]):
        _arrow(ax, a, b, ERR, dashed=True)
    for d, n in zip(deltas, nodes[1:]):
        ax.plot([n.center[0], d.center[0]], [n.center[1] - R_NODE, d.center[1] + R_ERR], color="#999999",
                lw=1.0, ls=":", zorder=1)
    ax.text((xs[0] + xs[-1]) / 2 + 0.7, -0.1,
            r"backward sweep, layer after layer: $\delta_\ell = J_{\ell+1}^{\top}\delta_{\ell+1}$,  "
            r"$\partial L/\partial\Theta_\ell$ from $\delta_\ell$",
            ha="center", va="center", fontsize=11, color=ERR)


def _pc_chain(ax, xs, phi_labels, eps_labels, mu_labels, first_is_data, clamp_label, first_label):
    """PC: value nodes φ (top) and their error units ε (below); μ_ℓ goes from φ_{ℓ−1} into ε_ℓ, which sends its
    error back to φ_{ℓ−1} (unless that is clamped data) and to its own φ_ℓ: every signal is local."""
    first = _square(ax, (xs[0], TOP), first_label) if first_is_data else _circle(
        ax, (xs[0], TOP), R_NODE, NODE, first_label, edge=PRED)
    phis = [first] + [_circle(ax, (x, TOP), R_NODE, NODE, lab, edge=PRED) for x, lab in zip(xs[1:-1], phi_labels)]
    out = _square(ax, (xs[-1], TOP), clamp_label)
    epss = [_circle(ax, (x, BOTTOM), R_ERR, ERR_FILL, lab, edge=ERR, size=13) for x, lab in zip(xs[1:], eps_labels)]
    for prev, eps, mu in zip(phis, epss, mu_labels):
        _arrow(ax, prev, eps, PRED, rad=-0.12, label=mu, label_at=0.42, offset=(0.22, 0.12))
        if isinstance(prev, Circle):  # clamped data is never updated: no error goes back to it
            _arrow(ax, eps, prev, ERR, dashed=True, rad=-0.12)
    for phi, eps in zip(phis[1:] + [out], epss):
        _link(ax, phi, eps)
    return phis, epss


def draw_architectures(path: Path) -> None:
    """PC and BP networks, for classification (top) and compression / generation (bottom)."""
    fig, axes = plt.subplots(2, 2, figsize=(16, 8.6))
    fig.subplots_adjust(left=0.01, right=0.99, top=0.93, bottom=0.1, wspace=0.04, hspace=0.12)

    xs = [0.5, 2.6, 4.7, 6.8]
    ax = axes[0, 0]
    _panel(ax, "Classification: BP", "one network, activations $h_\\ell$; gradients need a global backward sweep")
    _bp_chain(ax, xs, [r"$x$", r"$h_1$", r"$h_2$", r"$h_3$"], True, r"$y$", r"$\hat y$",
              [r"$\delta_1$", r"$\delta_2$", r"$\delta_3$"])

    ax = axes[0, 1]
    xs_pc = [0.5, 2.6, 4.7, 6.8, 8.9]
    _panel(ax, "Classification: PC", "the same network with value nodes $\\varphi_\\ell$; input $x$ and label $y$ "
           "clamped")
    _pc_chain(ax, xs_pc, [r"$\varphi_1$", r"$\varphi_2$", r"$\varphi_3$"],
              [r"$\varepsilon_1$", r"$\varepsilon_2$", r"$\varepsilon_3$", r"$\varepsilon_L$"],
              [r"$\mu_1$", r"$\mu_2$", r"$\mu_3$", r"$\hat y$"], True, r"$y$", r"$x$")
    ax.text(4.7, -0.1, r"errors are local: $\varphi_\ell \leftarrow \varphi_\ell - \gamma\,(\varepsilon_\ell - "
            r"J_{\ell+1}^{\top}\varepsilon_{\ell+1})$, all layers at once, $T$ steps",
            ha="center", va="center", fontsize=11, color=ERR)

    ax = axes[1, 0]
    xs_ae = [0.5, 2.0, 3.5, 5.0, 6.5]
    _panel(ax, "Compression / generation: BP autoencoder",
           "encoder $x \\to z$ and decoder $z \\to \\hat x$, trained end to end")
    _bp_chain(ax, xs_ae, [r"$x$", r"$h$", r"$z$", r"$h'$", r"$\hat x$"], True, r"$x$", None,
              [r"$\delta_h$", r"$\delta_z$", r"$\delta_{h'}$", r"$\delta_{\hat x}$"])
    for x0, x1, name in ((0.1, 3.4, "encoder"), (3.6, 6.9, "decoder")):
        ax.plot([x0, x1], [3.15, 3.15], color="#777777", lw=1.0)
        ax.text((x0 + x1) / 2, 3.22, name, ha="center", va="bottom", fontsize=11, color="#555555")

    ax = axes[1, 1]
    xs_dec = [0.5, 2.6, 4.7, 6.8]
    _panel(ax, "Compression / generation: PC generative decoder",
           "decoder only; image clamped at the output, latent code $\\varphi_z$ inferred (prior mean 0)")
    _pc_chain(ax, xs_dec, [r"$\varphi_z$", r"$\varphi_h$"],
              [r"$\varepsilon_z$", r"$\varepsilon_h$", r"$\varepsilon_L$"],
              [r"$\mu_z$", r"$\mu_h$", r"$\hat x$"], True, r"$x$", r"$0$")
    ax.text(0.5, 2.0, "prior", ha="center", va="top", fontsize=10, color="#555555")
    ax.text(7.8, 2.25, "no encoder:\nthe code of an\nimage is found\nby inference", fontsize=11,
            color="#333333", va="center")
    ax.text(5.0, -0.1, r"top-down predictions $\mu$ generate the image; errors flow back to the code $\varphi_z$",
            ha="center", va="center", fontsize=11, color=ERR)

    handles = [
        Line2D([], [], color=PRED, lw=2, label=r"prediction $\mu_\ell$ (forward / top-down)"),
        Line2D([], [], color=ERR, lw=2, ls=(0, (4, 2.5)), label=r"error $\varepsilon_\ell$ (PC, local) / "
               r"gradient $\delta_\ell$ (BP, backward sweep)"),
        Line2D([], [], marker="o", ls="none", ms=14, mfc=NODE, mec=PRED,
               label=r"value node $\varphi_\ell$ (nn.Parameter, inferred)"),
        Line2D([], [], marker="o", ls="none", ms=10, mfc=ERR_FILL, mec=ERR,
               label=r"error unit $\varepsilon_\ell = \varphi_\ell - \mu_\ell$"),
        Line2D([], [], marker="s", ls="none", ms=12, mfc=DATA, mec="black", label="clamped data"),
        Line2D([], [], marker="o", ls="none", ms=14, mfc=HIDDEN, mec="black", label=r"BP activation $h_\ell$"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=12, frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    fig.suptitle("Predictive coding (PC) and backpropagation (BP) on the same networks", fontsize=17, y=0.99)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


# Pseudocode lines: (indent level, text, name in the code). Mathtext, no LaTeX install needed.
PC_LINES = [
    (0, r"input: batch $(x, y)$, weights $\Theta$, steps $T$, step sizes $\gamma$, $\alpha$, output precision "
        r"$\beta$", ""),
    (0, r"$\mathbf{1.}$ initialise by a feed-forward sweep: $\varphi_\ell \leftarrow \mu_\ell = "
        r"f_\ell(\varphi_{\ell-1};\Theta_\ell)$  (so $\varepsilon_\ell = 0$)", "pc_mode(initialise=True)"),
    (0, r"$\mathbf{2.}$ for $t = 1, \dots, T$:  energy evaluation $t$, at the state after $t-1$ updates", "T"),
    (1, r"$\mu_\ell = f_\ell(\varphi_{\ell-1};\Theta_\ell)$,   $\varepsilon_\ell = \varphi_\ell - \mu_\ell$",
     "mu, eps"),
    (1, r"$F = \frac{1}{2}\sum_\ell \Vert\varepsilon_\ell\Vert^2 + \beta\,L(\hat y, y)$", "energy"),
    (1, r"$\varphi \leftarrow \varphi - \gamma\,\partial F/\partial\varphi$,   "
        r"$\partial F/\partial\varphi_\ell = \varepsilon_\ell - J_{\ell+1}^{\top}\varepsilon_{\ell+1}$",
     "inference_lr, momentum"),
    (1, r"gradients on the neurons only: no $\partial F/\partial\Theta$ during the $T$ steps", ""),
    (0, r"$\mathbf{3.}$ evaluation $T{+}1$, at the relaxed state: "
        r"$\partial F/\partial\Theta_\ell = -(\partial\mu_\ell/\partial\Theta_\ell)^{\top}\varepsilon_\ell$",
     "weight_grads=True"),
    (0, r"$\mathbf{4.}$ $\Theta \leftarrow \Theta - \alpha\,\partial F/\partial\Theta$   "
        r"(batch mean, divided by $\beta$; any optimizer)", "optimizer.step()"),
]
BP_LINES = [
    (0, r"input: batch $(x, y)$, weights $\Theta$, learning rate $\alpha$", ""),
    (0, r"$\mathbf{1.}$ forward: $h_\ell = f_\ell(h_{\ell-1};\Theta_\ell)$  (activations stored)", "model(x)"),
    (0, r"$\mathbf{2.}$ loss $L(\hat y, y)$, batch mean", "loss"),
    (0, r"$\mathbf{3.}$ backward, layer after layer:", ".backward()"),
    (1, r"gradients $\delta_\ell = \partial L/\partial h_\ell$:   $\delta_{\hat y} = \partial L/\partial\hat y$,   "
        r"$\delta_\ell = J_{\ell+1}^{\top}\delta_{\ell+1}$", ""),
    (1, r"$\partial L/\partial\Theta_\ell = (\partial h_\ell/\partial\Theta_\ell)^{\top}\delta_\ell$", ""),
    (0, r"$\mathbf{4.}$ $\Theta \leftarrow \Theta - \alpha\,\partial L/\partial\Theta$", "optimizer.step()"),
]


def _code_box(fig, x0, y0, w, h, title, api, lines, note, edge):
    box = FancyBboxPatch((x0, y0), w, h, boxstyle="round,pad=0.006,rounding_size=0.012", transform=fig.transFigure,
                         facecolor="#fbfbfb", edgecolor=edge, lw=2)
    fig.add_artist(box)
    fig.text(x0 + 0.015, y0 + h - 0.05, title, fontsize=16, fontweight="bold", color=edge, va="center")
    fig.text(x0 + 0.015, y0 + h - 0.095, api, fontsize=11.5, family="monospace", color="#444444", va="top",
             linespacing=1.5)
    step = 0.061
    for i, (indent, text, code) in enumerate(lines):
        y = y0 + h - 0.215 - i * step
        fig.text(x0 + 0.02 + 0.03 * indent, y, text, fontsize=13, va="center")
        if code:
            fig.text(x0 + w - 0.012, y, code, fontsize=10.5, family="monospace", color="#777777", ha="right",
                     va="center")
    fig.text(x0 + 0.015, y0 + 0.025, note, fontsize=12, color="#333333", va="bottom", linespacing=1.6)


def draw_pseudocodes(path: Path) -> None:
    """The PC training step (T + 1 energy evaluations) beside the BP training step, in the glossary's notation."""
    fig = plt.figure(figsize=(17, 7.6))
    fig.suptitle("One training step on a batch: predictive coding vs backpropagation", fontsize=18, y=0.975)
    _code_box(fig, 0.01, 0.03, 0.565, 0.87, "Predictive coding", "pc_common.infer(model, x, y, loss, config)\n"
              "config = PCConfig(T, inference_lr, momentum, fixed_prediction, output_precision)", PC_LINES,
              r"cost: $T{+}1$ forward passes (the energy evaluations), $T$ error sweeps (neurons only), one weight gradient"
              "\n"
              r"fixed-prediction mode ($\mu, J$ frozen at step 1 and stored), $\gamma = 1$, $T \geq$ depth: exactly BP,"
              " but not local in time",
              PRED)
    _code_box(fig, 0.59, 0.03, 0.40, 0.87, "Backpropagation", "pc_common.bp_gradients(model, x, y, loss)",
              BP_LINES, "cost: one forward pass, one backward pass\n"
              r"the value nodes $\varphi_\ell$ are the identity: the very same network" "\n"
              r"PC's relaxed errors: $\varepsilon_\ell \approx -\beta\,\delta_\ell$ "
              r"(small $\beta$; exact in fixed-prediction mode)", ERR)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output directory (default: images/)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, draw in (("architectures.png", draw_architectures), ("pseudocodes.png", draw_pseudocodes)):
        draw(args.out / name)
        print(f"wrote {args.out / name}")


if __name__ == "__main__":
    main()
