"""classification/benchmark.py --steps: every step beside its own matrix products, with the settings to repeat it.

The figures themselves are timings and are not tested; what is tested is what they are made of: the products
replayed for a step are that step's (their FLOPs are the analytic count), "the rest" is the step's time less theirs,
and the pcx ratio is taken for the PC steps that include the optimizer, as pcx's step does.
"""

from __future__ import annotations

import functools
import importlib.util
import math

import pytest
import torch

from classification import benchmark, pcx_step
from classification.models import activation
from pc_common import CompiledStep


@pytest.fixture(scope="module")
def result():
    """One round of every unit, T = 1, the compiled steps run as their traced graphs (no Inductor: seconds)."""
    threads = torch.get_num_threads()  # the benchmark sets one thread
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(benchmark, "CompiledStep", functools.partial(CompiledStep, backend=None))
        yield benchmark.step_benchmark("mlp", "leaky_relu", T=1, rounds=1, pcx_ms=5.0)
    torch.set_num_threads(threads)


def test_every_step_and_update_is_timed(result):
    """BP and PC, eager and compiled, each with no update, AdamW and fused AdamW (torch has it on the CPU)."""
    rows = {(r["rule"], r["engine"], r["update"]) for r in result["steps"]}
    assert rows == {(rule, engine, update) for rule in benchmark.RULES for engine in ("eager", "compiled")
                    for update in benchmark.UPDATES}
    assert all(c["compiled"] for c in result["compile_seconds"].values())


def test_the_replayed_products_are_the_steps_own(result):
    """Each step's replay costs its analytic FLOPs: the floor is made of the products the step runs, no more."""
    for key, products in result["products"].items():
        rule = key.split()[0]
        assert products["flops"] == result["flops"][rule]
        assert sum(products["by_signature"].values()) == products["count"]


def test_the_rest_is_the_step_less_its_products(result):
    """rest = step − products, its fraction of the step, and the step's rate = analytic FLOPs / its time."""
    for row in result["steps"]:
        products = result["products"][f"{row['rule']} {row['engine']}"]
        assert row["products_ms"] == products["ms"]
        assert row["rest_ms"] == pytest.approx(row["ms"] - products["ms"])
        assert row["rest_fraction"] == pytest.approx(row["rest_ms"] / row["ms"])
        assert row["gflops"] == pytest.approx(result["flops"][row["rule"]] / row["ms"] / 1e6)


def test_pcx_is_compared_with_pc_steps_that_update_the_weights(result):
    """pcx's step includes AdamW: only PC steps with an optimizer are set beside it."""
    for row in result["steps"]:
        if row["rule"] == "pc" and row["update"] != "none":
            assert row["over_pcx"] == pytest.approx(row["ms"] / 5.0)
        else:
            assert row["over_pcx"] is None


def test_the_settings_say_how_it_was_timed(result):
    """A reader can repeat the measurement: the clock (CPU time on a CPU), threads, rounds, machine and load."""
    setting = result["setting"]
    assert setting["clock"].startswith("process CPU time") and setting["threads"] == 1
    assert setting["widths"] == [784, 128, 128, 128, 10] and setting["T"] == 1
    assert setting["rounds"] * setting["calls_per_round"] == 5
    table = benchmark.step_report(result)
    assert "PC compiled + adamw fused" in table and "pcx" in table


def test_gelu_tanh_is_the_tanh_approximation_that_pcx_computes():
    """The activation set beside pcx's GELU is GELU's tanh approximation (jax.nn.gelu's default), written out:
    ½x(1 + tanh(√(2/π)(x + 0.044715x³))), which differs from the exact GELU (xΦ(x)) by up to about 5e-4."""
    x = torch.linspace(-6, 6, 1001, dtype=torch.float64)
    tanh_gelu = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    f = activation("gelu_tanh")
    assert torch.allclose(f(x), tanh_gelu, rtol=0, atol=1e-12)
    assert (activation("gelu")(x) - tanh_gelu).abs().max() > 1e-4


def test_pcx_timer_without_jax_says_how_to_install_it(capsys):
    """classification/pcx_step.py needs JAX, which the requirements leave out: without it the script exits with
    status 2 and names what to install, instead of a traceback."""
    if importlib.util.find_spec("jax") is not None:
        pytest.skip("JAX is installed here: the script would time pcx")
    with pytest.raises(SystemExit) as stop:
        pcx_step.main(["--rounds", "1", "--steps", "1"])
    assert stop.value.code == 2
    assert "pip install pcx==0.6.3" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--rounds", "0"], ["--steps", "two"], ["--act", "gelu"]])
def test_pcx_timer_refuses_bad_values_in_one_line(args, capsys):
    """As the other scripts: a bad value stops the script at parsing (exit code 2), with the option named."""
    with pytest.raises(SystemExit) as stop:
        pcx_step.main(args)
    assert stop.value.code == 2
    assert f"argument {args[0]}:" in capsys.readouterr().err
