"""Tests of the classification models and of classification/compare.py (the BP-vs-PC CLI)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
import torch
from conftest import grads, relative_error

import pc_common as pc
from classification import compare
from classification.models import cnn, mlp

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "mlp": (lambda: mlp(), (1, 28, 28)),
    "cnn": (lambda: cnn(channels=(4, 8), hidden=32), (1, 28, 28)),
    "cnn-colour": (lambda: cnn((3, 32, 32), channels=(4, 8), hidden=32), (3, 32, 32)),
    "mlp-colour": (lambda: mlp(3 * 32 * 32, hidden=(32, 32)), (3, 32, 32)),
}


@pytest.mark.parametrize("name", MODELS)
def test_fixed_prediction_pc_gives_the_bp_gradient(name):
    """On each model, fixed-prediction PC at γ = 1, T = depth reproduces autograd's BP gradient (float64).

    One definition must train with both rules: every block sends its error back through a value node, so PC at
    its BP limit must see exactly the network BP differentiates (Millidge et al. 2020; Rosenbaum 2022).
    """
    build, shape = MODELS[name]
    torch.manual_seed(0)
    model = build().double()
    x, y = torch.rand(6, *shape, dtype=torch.float64), torch.arange(6) % 10
    model.zero_grad()
    pc.bp_gradients(model, x, y, "mse")
    bp = grads(model)
    model.zero_grad()
    depth = len(pc.pc_layers(model))
    pc.infer(model, x, y, "mse", pc.PCConfig(T=depth, inference_lr=1.0, fixed_prediction=True))
    for g_pc, g_bp in zip(grads(model), bp):
        assert relative_error(g_pc, g_bp) < 1e-12


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("rule", ["bp", "pc"])
def test_models_train_with_both_rules(name, rule):
    """A few steps of either rule lower the training loss on a fixed batch (the models learn both ways)."""
    build, shape = MODELS[name]
    torch.manual_seed(0)
    model = build()
    x, y = torch.rand(16, *shape), torch.arange(16) % 10
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with torch.no_grad():
        before = float(pc.squared_error(model(x), y).mean())

    for _ in range(5):
        pc.train_step(model, opt, x, y, rule, "mse")
    with torch.no_grad():
        assert float(pc.squared_error(model(x), y).mean()) < before


def test_cnn_rejects_indivisible_inputs():
    """A 2×2 pool per block needs H and W divisible by 2^blocks; the error says so instead of a shape crash."""
    with pytest.raises(ValueError, match="divisible"):
        cnn((1, 30, 30), channels=(8, 8, 8))


def test_both_rules_start_from_the_same_weights_and_batches(digits, monkeypatch):
    """compare() (through train_rules) hands BP and PC identical initial weights and the same batch order for every seed.

    The comparison is fair only if the learning rule is the *only* difference.
    """
    seen = []

    def spy(model, data, rule, **kwargs):
        first_batch = next(iter(data.train))[1]
        seen.append((rule, [p.detach().clone() for p in model.parameters()], first_batch.clone()))
        return pc.History(rule, epochs=[{"seconds": 1.0, "val_accuracy": 0.5, "test_accuracy": 0.5}], best_epoch=0)

    monkeypatch.setattr(pc.training, "fit", spy)
    compare.compare(lambda: mlp(), digits, seeds=[0, 1], epochs=1, lr={"bp": 1e-3, "pc": 1e-3}, progress=False)
    assert [rule for rule, _, _ in seen] == ["bp", "pc", "bp", "pc"]
    for (_, w_bp, b_bp), (_, w_pc, b_pc) in (seen[0:2], seen[2:4]):
        assert all(torch.equal(a, b) for a, b in zip(w_bp, w_pc))
        assert torch.equal(b_bp, b_pc)
    # Different seeds give different networks (the seed is really used).
    assert not torch.equal(seen[0][1][0], seen[2][1][0])


def test_cli_smoke_on_mnist5k(tmp_path):
    """The CLI runs as a script on the embedded dataset and writes the documented JSON."""
    out = tmp_path / "results.json"
    cmd = [sys.executable, str(ROOT / "classification" / "compare.py"), "--model", "mlp", "--dataset", "mnist-5k",
           "--epochs", "2", "--seeds", "1", "--T", "2", "--max-batches", "2", "--device", "cpu", "--no-progress",
           "--no-compile", "--json", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "PC / BP time per epoch" in done.stdout
    results = json.loads(out.read_text())
    assert set(results) == {"bp", "pc"}
    for r in results.values():
        assert set(r["test_accuracy"]) == {"mean", "std", "per_seed"} and len(r["test_accuracy"]["per_seed"]) == 1
        assert r["epoch_seconds"] > 0 and len(r["history"][0]["epochs"]) == 2
        best = r["history"][0]["best_epoch"]
        assert r["test_accuracy"]["per_seed"][0] == r["history"][0]["epochs"][best]["test_accuracy"]
    assert results["pc"]["hyperparameters"]["T"] == 2


def test_runs_per_seed_merge_into_the_run_of_all_seeds(tmp_path):
    """Seeds 0 and 1 run as two processes (--first-seed) and merged (--merge) give the same accuracies, best epochs
    and settings as one run of both seeds: a long comparison can be split per seed, so a stopped job loses at most one
    seed. Merging refuses parts of different settings."""
    common = ["--model", "mlp", "--dataset", "mnist-5k", "--epochs", "2", "--T", "2", "--max-batches", "2",
              "--device", "cpu", "--no-progress", "--no-compile"]
    torch.set_num_threads(1)
    whole = compare.main([*common, "--seeds", "2", "--json", str(tmp_path / "whole.json")])
    for seed in (1, 0):
        compare.main([*common, "--seeds", "1", "--first-seed", str(seed), "--json", str(tmp_path / f"s{seed}.json")])
    merged = compare.main(["--merge", str(tmp_path / "s1.json"), str(tmp_path / "s0.json"),
                           "--json", str(tmp_path / "merged.json")])
    for rule in ("bp", "pc"):
        for key in ("test_accuracy", "val_accuracy", "best_epoch", "hyperparameters"):
            assert merged[rule][key] == whole[rule][key], (rule, key)
    other = compare.main([*common, "--seeds", "1", "--first-seed", "2", "--lr-pc", "1e-2",
                          "--json", str(tmp_path / "other.json")])
    assert other["pc"]["hyperparameters"]["lr"] == 1e-2
    with pytest.raises(ValueError, match="different settings"):
        compare.merge([json.loads((tmp_path / "s0.json").read_text()), other])
    with pytest.raises(ValueError, match="share seeds"):
        compare.merge([json.loads((tmp_path / "s0.json").read_text())] * 2)


def test_cli_without_network_fails_with_the_clear_error(tmp_path, monkeypatch, capsys):
    """A dataset neither on disk nor downloadable ends in the DatasetUnavailableError message naming mnist-5k.

    torchvision's download is replaced by one that raises the error urllib raises offline, so no network is tried.
    """
    import torchvision

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("PC_DATA_DIR", str(tmp_path))
    monkeypatch.setattr("pc_common.data.SYSTEM_DIRS", {})  # as on a machine without the Debian package
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    with pytest.raises(SystemExit) as exit_info:
        compare.main(["--dataset", "fashion-mnist", "--epochs", "1", "--seeds", "1", "--no-progress"])
    message = str(exit_info.value.code)
    assert "'fashion-mnist' is not on this machine" in message and "--dataset mnist-5k" in message
    assert str(tmp_path) in message
