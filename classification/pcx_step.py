"""The PC training step of the JAX library pcx, timed, for ``classification/benchmark.py --steps --pcx``.

The network and step of the benchmark's PC row, as pcx 0.6.3 runs them: the MLP 784-128-128-128-10 with the
activation of ``--act``, batch 128, T = 8 inference steps on the neurons (pcx's SGD with momentum 0.65, step 0.0105),
then one AdamW step on the weights at the relaxed state, squared-error output, all in one jitted function. pcx's
``Vode`` is its value node; the output node is clamped to the target. The batches are random (the time does not
depend on the data).

Each run compiles the step, warms it up, and times ``--rounds`` rounds of ``--steps`` steps in wall time (XLA's helper
threads would add their CPU time to process time); it prints each round's ms per step and the fastest and median.
Give ``benchmark.py --pcx ACT=MS`` the fastest of several runs if the machine is shared.

pcx needs JAX, which is not among this repository's requirements; install it apart, e.g.

    python3 -m venv ~/.pcx-venv && ~/.pcx-venv/bin/pip install pcx==0.6.3
    XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \\
        ~/.pcx-venv/bin/python classification/pcx_step.py --act leaky_relu

(the flags keep XLA on one thread, as ``OMP_NUM_THREADS=1`` keeps torch). pcx's ``jax.nn.gelu`` is GELU's tanh
approximation, so ``--act gelu_tanh`` here is the function of the benchmark's ``--act gelu_tanh``.
"""

from __future__ import annotations

import argparse
import statistics
import time

SIZES = (784, 128, 128, 128, 10)
BATCH = 128
T = 8
NEURON_SGD = {"learning_rate": 0.0105, "momentum": 0.65}
WEIGHT_ADAMW = {"learning_rate": 2.97e-4, "weight_decay": 3.55e-4}


def time_pcx_step(act: str = "leaky_relu", rounds: int = 5, steps: int = 50, seed: int = 0) -> list[float]:
    """Milliseconds per step of pcx's jitted PC step, one figure per round of ``steps`` steps."""
    import jax  # noqa: PLC0415 - JAX is an optional dependency of this script alone
    import jax.numpy as jnp  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    import optax  # noqa: PLC0415
    import pcx  # noqa: PLC0415
    import pcx.functional as pxf  # noqa: PLC0415
    import pcx.nn as pxnn  # noqa: PLC0415
    import pcx.predictive_coding as pxc  # noqa: PLC0415
    import pcx.utils as pxu  # noqa: PLC0415

    f = {"leaky_relu": jax.nn.leaky_relu, "gelu_tanh": jax.nn.gelu}[act]

    class MLP(pxc.EnergyModule):
        def __init__(self):
            super().__init__()
            self.f = pcx.static(f)
            self.layers = [pxnn.Linear(a, b) for a, b in zip(SIZES[:-1], SIZES[1:])]
            self.nodes = [pxc.Vode() for _ in SIZES[1:-1]] + [pxc.Vode(pxc.se_energy)]
            self.nodes[-1].h.frozen = True  # the output node is clamped to the target

        def __call__(self, x, y):
            for node, layer in zip(self.nodes[:-1], self.layers[:-1]):
                x = node(self.f(layer(x)))
            x = self.nodes[-1](self.layers[-1](x))
            if y is not None:
                self.nodes[-1].set("h", y)
            return self.nodes[-1].get("u")

    per_sample = pxu.M(pxc.VodeParam | pxc.VodeParam.Cache).to((None, 0))

    @pxf.vmap(per_sample, in_axes=(0, 0), out_axes=0)
    def forward(x, y, *, model):
        return model(x, y)

    @pxf.vmap(per_sample, in_axes=(0,), out_axes=(None, 0), axis_name="batch")
    def energy(x, *, model):
        output = model(x, None)
        return jax.lax.pmean(model.energy().sum(), "batch"), output

    @pxf.jit(static_argnums=0)
    def step(steps, x, y, *, model, weights, neurons):
        model.train()
        with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
            forward(x, y, model=model)
        neurons.init(pxu.M(pxc.VodeParam)(model))
        free = pxu.M_hasnot(pxc.VodeParam, frozen=True).to([False, True])
        for _ in range(steps):
            with pxu.step(model, clear_params=pxc.VodeParam.Cache):
                _, g = pxf.value_and_grad(free, has_aux=True)(energy)(x, model=model)
            neurons.step(model, g["model"], allow_none=True)
        neurons.clear()
        with pxu.step(model, clear_params=pxc.VodeParam.Cache):
            _, g = pxf.value_and_grad(pxu.M(pxnn.LayerParam).to([False, True]), has_aux=True)(energy)(x, model=model)
        weights.step(model, g["model"])

    model = MLP()
    with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
        forward(jnp.zeros((BATCH, SIZES[0])), None, model=model)
        neurons = pxu.Optim(lambda: optax.sgd(**NEURON_SGD))
        weights = pxu.Optim(lambda: optax.adamw(**WEIGHT_ADAMW), pxu.M(pxnn.LayerParam)(model))
    rng = np.random.default_rng(seed)
    xs = [jnp.asarray(rng.standard_normal((BATCH, SIZES[0]), dtype=np.float32)) for _ in range(steps)]
    ys = [jax.nn.one_hot(jnp.asarray(rng.integers(0, SIZES[-1], BATCH)), SIZES[-1]) for _ in range(steps)]

    def sync():
        jax.block_until_ready([leaf for leaf in jax.tree_util.tree_leaves(model) if isinstance(leaf, jax.Array)])

    for i in range(2):  # the first call compiles
        step(T, xs[i], ys[i], model=model, weights=weights, neurons=neurons)
    sync()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for x, y in zip(xs, ys):
            step(T, x, y, model=model, weights=weights, neurons=neurons)
        sync()
        times.append(1e3 * (time.perf_counter() - start) / steps)
    return times


def _positive(text: str) -> int:
    """An argparse type: an integer ≥ 1 (this script runs without torch, so without pc_common.cli)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> list[float]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--act", choices=("leaky_relu", "gelu_tanh"), default="leaky_relu", help="activation")
    p.add_argument("--rounds", type=_positive, default=5, help="timed rounds")
    p.add_argument("--steps", type=_positive, default=50, help="steps per round")
    args = p.parse_args(argv)
    try:
        times = time_pcx_step(args.act, args.rounds, args.steps)
    except ImportError as err:
        p.exit(2, f"pcx_step.py: {err}; pcx is not installed here (see the module docstring: pip install pcx==0.6.3 in "
                  "a virtual environment of its own)\n")
    print(f"pcx {args.act}: ms per step by round " + ", ".join(f"{t:.2f}" for t in times)
          + f"; fastest {min(times):.2f}, median {statistics.median(times):.2f}")
    return times


if __name__ == "__main__":
    main()
