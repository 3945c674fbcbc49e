"""Tests of pc_common.training: one loop for both rules, validation-only selection, reproducibility."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from conftest import make_mlp
from torch import nn

import pc_common as pc
from pc_common.training import RunSettings


def small_mlp(seed=0):
    return make_mlp(sizes=(784, 32, 32, 10), dtype=torch.float32, seed=seed)


@pytest.mark.parametrize("rule", ["bp", "pc"])
def test_seeded_runs_repeat_bit_for_bit(rule):
    """Same seed, same thread count, CPU: identical histories (but timing) and identical weights."""
    runs = []
    for _ in range(2):
        pc.seed_everything(7)
        data = pc.load_dataset("mnist-5k", batch_size=256, seed=7, device="cpu")
        model = small_mlp(seed=7)
        history = pc.fit(model, data, rule, epochs=2, max_batches=4, progress=False, pc=pc.PCConfig(T=3))
        runs.append((history, [p.detach().clone() for p in model.parameters()]))
    (h1, w1), (h2, w2) = runs
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h.epochs]  # noqa: E731
    assert strip(h1) == strip(h2)
    assert all(torch.equal(a, b) for a, b in zip(w1, w2))


def test_model_selection_uses_validation_only(digits):
    """best_epoch is the arg-max of validation accuracy, and the returned model is that epoch's model."""
    model = small_mlp()
    history = pc.fit(model, digits, "bp", epochs=4, max_batches=3, progress=False, lr=3e-3)
    val = history.series("val_accuracy")
    assert history.best_epoch == val.index(max(val))
    assert pc.evaluate(model, digits.val)["accuracy"] == pytest.approx(history.best["val_accuracy"])
    assert pc.evaluate(model, digits.test)["accuracy"] == pytest.approx(history.best["test_accuracy"])


def test_history_records_loss_accuracy_energy_and_time(digits):
    """Each epoch has train loss/accuracy, PC energy, seconds, and validation and test metrics."""
    history = pc.fit(small_mlp(), digits, "pc", epochs=1, max_batches=2, progress=False)
    record = history.epochs[0]
    for key in ("train_loss", "train_accuracy", "energy", "seconds", "val_loss", "val_accuracy", "test_loss",
                "test_accuracy"):
        assert key in record
    assert history.to_dict()["rule"] == "pc"


def test_bp_and_pc_start_from_the_same_network():
    """One definition, one seed: the BP and the PC run start from identical weights (a fair comparison)."""
    a, b = small_mlp(seed=3), small_mlp(seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_wrong_input_shape_is_a_clear_error(digits):
    """A model built for other inputs (here 3×32×32 images) gets an error naming the dataset's input shape."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    with pytest.raises(ValueError, match=r"\(1, 28, 28\).*mnist-5k"):
        pc.fit(model, digits, "bp", epochs=1, progress=False)


def test_unknown_rule(digits):
    """Only 'bp' and 'pc' are learning rules."""
    with pytest.raises(ValueError, match="rule"):
        pc.fit(small_mlp(), digits, "hebb", epochs=1, progress=False)


def test_evaluate_is_a_plain_forward_pass(digits):
    """evaluate() matches a hand-written loop over the test split and restores train mode."""
    model = small_mlp()
    result = pc.evaluate(model, digits.test)
    with torch.no_grad():
        out = model(digits.test.x)
    assert result["accuracy"] == pytest.approx((out.argmax(1) == digits.test.y).float().mean().item())
    assert result["loss"] == pytest.approx(pc.squared_error(out, digits.test.y).mean().item(), rel=1e-5)
    assert model.training


def test_pick_device_defaults_to_what_is_available():
    """cuda when available, else cpu; an explicit choice wins."""
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pc.pick_device().type == expected and pc.pick_device("cpu").type == "cpu"


def _linear_splits(n=96, batch=32):
    """Random float64 regression data in Splits form (a linear PC network's energy is quadratic in φ)."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 12, generator=g, dtype=torch.float64), torch.randn(n, 5, generator=g, dtype=torch.float64)
    loader = lambda shuffle: pc.TensorLoader(x, y, batch, shuffle, torch.Generator().manual_seed(1))  # noqa: E731
    return pc.Splits("linear", loader(True), loader(False), loader(False), (12,), 5)


@pytest.mark.parametrize("factor, diverges", [(1.5, False), (2.6, True)])
def test_guard_flags_inference_steps_beyond_the_curvature_bound(factor, diverges):
    """On a linear network F is quadratic in φ with a Hessian that depends on the weights only, so gradient descent
    with γ = factor / λ_max lowers F at every step iff factor < 2. With the weights frozen (learning rate 0) the
    guard must flag every batch for factor 2.6 and none for 1.5, warn once, and record it in the history."""
    from pc_common.diagnostics import energy_curvature

    model = make_mlp(sizes=(12, 10, 8, 5), activation=nn.Identity, seed=4)
    data = _linear_splits()
    x, y = next(iter(data.val))
    lam = energy_curvature(model, x, y, iters=500)
    # The warning is for rises that stay modest; over max_energy_rise infer stops with an error (test_inference).
    config = pc.PCConfig(T=40, inference_lr=factor / lam, max_energy_rise=math.inf)
    frozen = lambda params: torch.optim.SGD(params, lr=0.0)  # noqa: E731
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = pc.fit(model, data, "pc", epochs=2, optimizer=frozen, loss="mse", pc=config, classify=False,
                         progress=False)
    alarms = [w for w in caught if "diverging" in str(w.message)]
    if diverges:
        assert len(alarms) == 1 and "inference_lr" in str(alarms[0].message)
        assert [a["energy_rises"] for a in history.alarms] == [len(data.train)] * 2
        assert history.alarms[0]["first_rising_batch"] == 0
    else:
        assert not alarms and history.alarms == []


def test_adapt_step_halves_the_neuron_step_until_inference_is_stable_again():
    """With the weights frozen, F is the same quadratic in every batch, and descent on it is stable iff
    γ λ_max < 2. Starting at γ = 2.6 / λ_max, adapt_step must flag the first epoch, halve γ to 1.3 / λ_max, and
    leave the later epochs without an alarm and at that γ."""
    from pc_common.diagnostics import energy_curvature

    model = make_mlp(sizes=(12, 10, 8, 5), activation=nn.Identity, seed=4)
    data = _linear_splits()
    x, y = next(iter(data.val))
    lam = energy_curvature(model, x, y, iters=500)
    gamma = 2.6 / lam
    config = pc.PCConfig(T=40, inference_lr=gamma, max_energy_rise=math.inf)
    frozen = lambda params: torch.optim.SGD(params, lr=0.0)  # noqa: E731
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = pc.fit(model, data, "pc", epochs=3, optimizer=frozen, loss="mse", pc=config, classify=False,
                         progress=False, adapt_step=True)
    messages = [str(w.message) for w in caught if "stability bound" in str(w.message)]
    assert len(messages) == 1 and "halved" in messages[0]
    assert [a["epoch"] for a in history.alarms] == [1]
    assert history.alarms[0]["energy_rises"] == len(data.train)
    assert history.alarms[0]["next_inference_lr"] == pytest.approx(gamma / 2, rel=1e-15)
    assert history.series("inference_lr") == pytest.approx([gamma, gamma / 2, gamma / 2], rel=1e-15)


def test_guard_flags_a_blow_up_of_the_training_loss():
    """A weight step far too large makes the loss explode (SGD at α = 3 on this network): the guard reports the
    jump over the running level and the epoch loss above twice the first epoch's, for BP as for PC."""
    data = _linear_splits(n=320)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = pc.fit(make_mlp(sizes=(12, 10, 8, 5), activation=nn.Identity, seed=4), data, "bp", epochs=3,
                         optimizer=lambda params: torch.optim.SGD(params, lr=3.0), loss="mse", classify=False,
                         progress=False)
    assert sum("diverging" in str(w.message) for w in caught) == 1
    assert history.alarms and history.alarms[0]["loss_jumps"] > 0


def test_guard_ignores_the_rising_trace_of_fixed_prediction(digits):
    """Exact fixed prediction (γ = 1, T = depth) drives the hidden errors from zero up to BP's deltas, so its trace
    rises by design: no alarm, while training itself is as stable as BP."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = pc.fit(small_mlp(), digits, "pc", epochs=1, max_batches=3, progress=False,
                         pc=pc.PCConfig(T=3, inference_lr=1.0, fixed_prediction=True))
    assert history.alarms == [] and not [w for w in caught if "diverging" in str(w.message)]


def test_settings_as_one_object_or_as_keywords(digits):
    """fit(model, data, RunSettings(...)) is fit(model, data, rule, **keywords): every existing caller keeps working,
    and a script can hand one settings object around (or replace some of its fields with keywords)."""
    runs = []
    for call in (lambda m: pc.fit(m, digits, "pc", epochs=2, max_batches=2, lr=3e-3, progress=False),
                 lambda m: pc.fit(m, digits, RunSettings("pc", epochs=2, max_batches=2, lr=3e-3, progress=False)),
                 lambda m: pc.fit(m, digits, RunSettings("pc", epochs=5, max_batches=2, lr=1.0), epochs=2, lr=3e-3,
                                  progress=False)):
        digits.train.generator = torch.Generator().manual_seed(0)
        model = small_mlp()
        history = call(model)
        runs.append(([{k: v for k, v in e.items() if k != "seconds"} for e in history.epochs],
                     [p.detach().clone() for p in model.parameters()]))
    for records, weights in runs[1:]:
        assert records == runs[0][0] and all(torch.equal(a, b) for a, b in zip(weights, runs[0][1]))


def test_a_misspelt_setting_is_an_error(digits):
    """fit takes its settings as keywords: a misspelt one must fail, naming it, rather than be ignored."""
    with pytest.raises(TypeError, match="epoch"):
        pc.fit(small_mlp(), digits, "bp", epoch=3, progress=False)


def test_history_round_trips_through_its_dict():
    """A checkpoint stores the History as a dict: reading it back must give the same history."""
    history = pc.History("pc", epochs=[{"epoch": 1, "val_accuracy": 0.5}], best_epoch=0, alarms=[{"epoch": 1}])
    assert pc.History.from_dict(history.to_dict()) == history
