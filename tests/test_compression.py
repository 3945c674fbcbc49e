"""Tests of compression.models and compression.compare: one network for BP and PC, codes inferred with frozen weights,
and the controls (the BP-trained auto-decoder, the fitted prior, code refinement, paired statistics)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import relative_error
from torch import nn

import pc_common as pc
from compression import compare
from compression.models import (
    AE_PC,
    DECODER_PC,
    AutoDecoder,
    autoencoder,
    autoencoder_evaluator,
    build,
    decoder_as_generative,
    decoder_evaluator,
    fit_gaussian,
    gaussian_samples,
    generative,
    halves,
    infer_codes,
    inference_vs_steps,
    prior_mean,
    reconstruction_data,
    reconstruction_metrics,
    refine_codes,
    refinement_vs_steps,
)
from compression.models.controls import choose_step, merge_controls
from compression.models.costs import agreement, networks, profiler_flops, ratios_vs_T
from compression.models.experiment import mean_sem, paired_difference

SHAPES = [(1, 28, 28), (3, 32, 32)]


@pytest.fixture(scope="module")
def images():
    """128 real test digits, float64 (CPU)."""
    return pc.load_dataset("mnist-5k", device="cpu").test.x[:128].double()


@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("shape", SHAPES)
def test_networks_map_images_to_images(arch, shape):
    """Autoencoder and decoder give an image of the input's shape, in [0, 1] like the pixels (sigmoid output)."""
    x = torch.rand(3, *shape)
    with torch.no_grad():
        out = autoencoder(arch, shape, latent=16)(x)
        gen = generative(arch, shape, latent=16)(torch.randn(3, 16))
    for y in (out, gen):
        assert y.shape == x.shape and 0 <= float(y.min()) and float(y.max()) <= 1


def test_bp_and_pc_autoencoders_are_the_same_network():
    """The like-for-like comparison: bp-ae and pc-ae are one definition, and one seed gives identical weights."""
    torch.manual_seed(0)
    a = build("bp-ae")
    torch.manual_seed(0)
    b = build("pc-ae")
    assert repr(a) == repr(b)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_decoder_is_the_autoencoders_decoder():
    """The generative network is the autoencoder's decoder behind one latent value node: same layers, same sizes."""
    ae, gen = autoencoder("conv"), generative("conv")
    ae_decoder = list(ae)[len(ae) - len(gen) + 1 :]
    assert [repr(m) for m in ae_decoder] == [repr(m) for m in list(gen)[1:]]
    assert isinstance(gen[0], pc.PCLayer)


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_pc_autoencoder_reproduces_bp_at_fixed_prediction(arch, images):
    """Fixed-prediction PC at γ = 1, T = number of value nodes (the first is that far from the output) is exact BP.

    The oracle is autograd's backprop through the very same network; the conv case includes ConvTranspose2d.
    """
    torch.manual_seed(0)
    model = autoencoder(arch, latent=16).double()
    depth = len(pc.pc_layers(model))
    x = images[:16]
    pc.bp_gradients(model, x, x, "mse")
    bp = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    pc.infer(model, x, x, "mse", pc.PCConfig(T=depth, inference_lr=1.0, fixed_prediction=True))
    for p, g in zip(model.parameters(), bp):
        assert relative_error(p.grad, g) < 1e-10


def test_decoder_energy_is_prior_plus_prediction_errors(images):
    """F = ½‖φ_z‖² + ½‖φ_h − tanh(W₃φ_z + b₃)‖² + ½‖x − σ(W₄φ_h + b₄)‖², worked by hand at the inferred state.

    The ½‖φ_z‖² term is the Gaussian prior N(0, I) of the code: without it codes can grow without bound.
    """
    torch.manual_seed(0)
    model = generative("mlp", latent=8, init_std=0.3).double()
    x = images[:32]
    codes, energies = infer_codes(model, x, 8, pc.PCConfig(T=6, inference_lr=0.1))
    z, h = pc.neurons(model)
    lin3, lin4 = model[1], model[4]
    assert torch.equal(z, codes)
    with torch.no_grad():
        by_hand = (0.5 * z.pow(2).sum(1) + 0.5 * (h - torch.tanh(lin3(z))).pow(2).sum(1)
                   + 0.5 * (x.flatten(1) - torch.sigmoid(lin4(h))).pow(2).sum(1))
    assert float(energies[-1]) == pytest.approx(float(by_hand.mean()), rel=1e-12)


@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("grads_set", [True, False])
def test_test_time_coding_leaves_weights_and_grads_bit_identical(arch, grads_set, images):
    """The original's leak: test-time inference left weight grads that the next update applied to test data.

    After training steps (.grad set) or on a fresh network (.grad None), an evaluation pass over test batches (codes
    inferred, then decoded) leaves every weight and every .grad exactly as it was, None included.
    """
    torch.manual_seed(0)
    model = generative(arch, latent=16)
    config = pc.PCConfig(T=4, inference_lr=0.1, momentum=0.5)
    x = images.float()
    if grads_set:
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        for batch in (x[:64], x[64:]):
            pc.train_step(model, opt, prior_mean(batch, 16), batch, "pc", "mse", config)
    weights = [p.detach().clone() for p in model.parameters()]
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    assert all((g is None) != grads_set for g in grads)
    test = pc.TensorLoader(prior_mean(x, 16), x, 50)  # batches of 50, 50, 28
    decoder_evaluator(16, config)(model, test)
    for p, w, g in zip(model.parameters(), weights, grads):
        assert torch.equal(p.detach(), w)
        assert (p.grad is None and g is None) or torch.equal(p.grad, g)


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_codes_do_not_depend_on_the_batch(arch, images):
    """Batches of 128, then 37, then 1: each image gets the code it gets alone.

    The energy is a sum of per-sample terms, so an image's neurons see only their own gradient: its code cannot
    depend on which or how many other images share the batch, and no neuron carries over between batches.
    """
    torch.manual_seed(0)
    model = generative(arch, latent=16).double()
    config = pc.PCConfig(T=6, inference_lr=0.1, momentum=0.5)
    codes = {n: infer_codes(model, images[:n], 16, config)[0] for n in (128, 37, 1)}
    assert codes[128].shape == (128, 16) and codes[37].shape == (37, 16) and codes[1].shape == (1, 16)
    assert torch.allclose(codes[128][:37], codes[37], rtol=0, atol=1e-10)
    assert torch.allclose(codes[37][:1], codes[1], rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", ["pc-decoder", "pc-ae", "bp-decoder"])
def test_energy_falls_during_inference_at_the_chosen_settings(name, images):
    """At the default γ, momentum and T the energy F never rises during inference on real digits (fresh network)."""
    torch.manual_seed(0)
    model = build(name).double().train()
    x = images[:64]
    if name == "pc-decoder":
        energies = infer_codes(model, x, 64, DECODER_PC)[1]
    elif name == "bp-decoder":
        energies = infer_codes(model.generative, x, 64, model.config)[1]
    else:
        energies = pc.infer(model, x, x, "mse", AE_PC, weight_grads=False).energies
    assert bool((energies.diff() <= 1e-9).all())
    assert float(energies[-1]) < float(energies[0])


def test_reconstruction_metrics_match_their_definitions():
    """loss = Σ_b ½‖x_b − x̂_b‖² and mse = Σ_b mean over pixels of (x_b − x̂_b)² (per-pixel MSE × batch)."""
    x, y = torch.rand(5, 1, 4, 4, dtype=torch.float64), torch.rand(5, 1, 4, 4, dtype=torch.float64)
    m = reconstruction_metrics(x, y)
    assert m["loss"] == pytest.approx(0.5 * float(((x - y) ** 2).sum()), rel=1e-12)
    assert m["mse"] == pytest.approx(5 * float(nn.functional.mse_loss(x, y)), rel=1e-12)


def test_reconstruction_data_targets_are_images():
    """Autoencoder loaders give (x, x); decoder loaders give (prior mean 0, x); shuffling and batch size are kept."""
    splits = pc.load_dataset("mnist-5k", batch_size=50, device="cpu")
    ae, dec = reconstruction_data(splits), reconstruction_data(splits, latent=8)
    x, y = next(iter(ae.test))
    assert torch.equal(x, y) and torch.equal(y, splits.test.x[: len(y)])
    z0, y = next(iter(dec.test))
    assert z0.shape == (len(y), 8) and not z0.any() and torch.equal(y, splits.test.x[: len(y)])
    assert dec.train.batch_size == 50 and dec.train.shuffle and dec.train.generator is splits.train.generator


def test_autoencoder_evaluator_is_a_plain_forward_pass():
    """The autoencoder's test MSE is the mean per-pixel error of x̂ = model(x), computed directly."""
    splits = reconstruction_data(pc.load_dataset("mnist-5k", device="cpu"))
    torch.manual_seed(0)
    model = autoencoder()
    with torch.no_grad():
        direct = float(((model(splits.test.x) - splits.test.x) ** 2).mean())
    assert autoencoder_evaluator(model, splits.test)["mse"] == pytest.approx(direct, rel=1e-5)


def test_compare_cli_runs_and_writes_json(tmp_path, capsys, monkeypatch):
    """A tiny run of every model reports MSE, parameters and times, and writes them as JSON."""
    def small(*args, **kwargs):
        splits = pc.load_dataset(*args, **kwargs)
        for name in ("val", "test"):  # a fraction of the evaluation splits keeps the test fast
            loader = getattr(splits, name)
            setattr(splits, name, pc.TensorLoader(loader.x[:100], loader.y[:100], 50))
        return splits

    monkeypatch.setattr(compare, "load_dataset", small)
    out = tmp_path / "compare.json"
    compare.main(["--epochs", "1", "--max-batches", "2", "--T", "2", "--latent", "8", "--device", "cpu",
                  "--no-compile", "--json", str(out)])
    table = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert [r["model"] for r in data["summary"]] == ["bp-ae", "pc-ae", "pc-decoder", "bp-decoder"]
    for row in data["summary"]:
        assert row["model"] in table and row["test_mse"] > 0 and row["test_seconds_per_batch"] > 0
    # The decoders have half the autoencoder's weights: they have no encoder.
    params = {r["model"]: r["parameters"] for r in data["summary"]}
    assert params["bp-ae"] == params["pc-ae"] > params["pc-decoder"] == params["bp-decoder"]
    # One seed: each paired difference is that seed's difference of the two models' test MSE.
    mse = {r["model"]: r["test_mse"] for r in data["runs"]}
    for d in data["paired"]:
        assert d["mean"] == pytest.approx(mse[d["a"]] - mse[d["b"]], rel=1e-12)
    assert not out.with_suffix(".parts").exists()  # the per-seed parts are merged, then removed


def test_compare_cli_resumes_from_the_parts_of_a_stopped_run(tmp_path, monkeypatch):
    """A run stopped after its first seed loses nothing: the rerun reads that seed's part and trains only the next.

    Oracle: the part written by the first run, and a training function that counts which seeds it is asked for.
    A part written under other settings (here another learning rate) is not reused.
    """
    trained = []
    real = compare.one_seed

    def counting(args, splits, latent, seed, main_process, **options):
        trained.append(seed)
        return real(args, splits, latent, seed, main_process, **options)

    monkeypatch.setattr(compare, "one_seed", counting)
    out = tmp_path / "c.json"
    base = ["--model", "bp-ae", "--epochs", "1", "--max-batches", "1", "--subset", "100", "--latent", "4",
            "--device", "cpu", "--no-compile", "--json", str(out)]
    compare.main([*base, "--seeds", "1"])
    first = json.loads(out.read_text())["runs"][0]
    # Put the first seed back as the part a stopped two-seed run would have left.
    parts = out.with_suffix(".parts")
    parts.mkdir()
    settings = json.loads(json.dumps(compare.settings(compare.parse_args([*base, "--seeds", "2"]))))
    (parts / "latent4_seed0.json").write_text(json.dumps({"settings": settings, "latent": 4, "seed": 0,
                                                          "runs": [first]}))
    trained.clear()
    merged = compare.main([*base, "--seeds", "2"])
    assert trained == [1]
    assert merged["runs"][0] == first
    # Other settings: the same part is not trusted.
    parts.mkdir()
    (parts / "latent4_seed0.json").write_text(json.dumps({"settings": settings, "latent": 4, "seed": 0,
                                                          "runs": [first]}))
    trained.clear()
    compare.main([*base, "--seeds", "1", "--lr", "1e-3"])
    assert trained == [0]


def test_compare_cli_offline_dataset_is_a_clear_error(monkeypatch):
    """A torchvision dataset that cannot be downloaded stops the CLI with the core's explanatory message."""
    def offline(*args, **kwargs):
        raise pc.DatasetUnavailableError("Could not download the dataset 'cifar10' … use --dataset mnist-5k")

    monkeypatch.setattr(compare, "load_dataset", offline)
    with pytest.raises(SystemExit, match="mnist-5k"):
        compare.main(["--dataset", "cifar10", "--arch", "conv"])


def test_halves_compose_to_the_autoencoder():
    """D(E(x)) with the two halves is the autoencoder's own output: the halves share its trained weights."""
    torch.manual_seed(0)
    model = autoencoder("conv", latent=8)
    encoder, decoder = halves(model)
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(decoder(encoder(x)), model(x))


def test_inference_behind_a_fitted_prior_descends_the_energy_with_that_prior(images):
    """With the prior N(m, S) (z = m + L u, S = L Lᵀ), inference is T steps of plain gradient descent on the
    hand-written F = ½‖u‖² + ½‖φ_h − tanh(W₃(m + L u) + b₃)‖² + ½‖x − σ(W₄φ_h + b₄)‖², from u = 0 (z = m) and
    φ_h = tanh(W₃m + b₃); ½‖u‖² is ½(z − m)ᵀS⁻¹(z − m).

    Oracle: the same descent written with autograd on that formula (float64). This is the energy the control uses
    to give the BP autoencoder's decoder inference, with the prior fitted to its own codes.
    """
    torch.manual_seed(0)
    model = autoencoder("mlp", latent=8).double()
    encoder, _ = halves(model)
    x = images[:16]
    with torch.no_grad():
        m, scale = fit_gaussian(encoder(images))
    generative_bp = decoder_as_generative(model, (m, scale))
    gamma, T = 0.1, 5
    u_inferred = infer_codes(generative_bp, x, 8, pc.PCConfig(T=T, inference_lr=gamma))[0]
    lin3, lin4 = generative_bp[2], generative_bp[5]
    with torch.no_grad():
        u, h = torch.zeros(16, 8, dtype=torch.float64), torch.tanh(lin3(m)).expand(16, -1).clone()
    for _ in range(T):
        u.requires_grad_(True)
        h.requires_grad_(True)
        energy = (0.5 * u.pow(2).sum() + 0.5 * (h - torch.tanh(lin3(m + u @ scale.T))).pow(2).sum()
                  + 0.5 * (x.flatten(1) - torch.sigmoid(lin4(h))).pow(2).sum())
        gu, gh = torch.autograd.grad(energy, (u, h))
        u, h = (u - gamma * gu).detach(), (h - gamma * gh).detach()
    assert relative_error(u_inferred, u) < 1e-12
    # The prior's whitening is exact: ½‖u‖² = ½ (z − m)ᵀ S⁻¹ (z − m) at z = m + L u.
    z = generative_bp[1](u)
    S = scale @ scale.T
    mahalanobis = ((z - m) * torch.linalg.solve(S, (z - m).T).T).sum(1)
    assert torch.allclose(u.pow(2).sum(1), mahalanobis, rtol=1e-10)


def test_inference_curve_behind_a_fitted_prior_starts_at_its_mean(images):
    """At T = 0 every code is the prior's mean m: the curve's MSE is that of D(m), its code norm ‖m‖, moved 0.

    Oracle: the decoder half applied to m directly.
    """
    torch.manual_seed(0)
    model = autoencoder("mlp", latent=8).double()
    encoder, decoder = halves(model)
    with torch.no_grad():
        prior = fit_gaussian(encoder(images))
        direct = float((decoder(prior[0].expand(100, -1)) - images[:100]).pow(2).mean())
    loader = pc.TensorLoader(images[:100], images[:100], 64)
    curve = inference_vs_steps(decoder_as_generative(model, prior), loader, 8, DECODER_PC, [0, 3])
    assert curve["mse"][0] == pytest.approx(direct, rel=1e-12)
    assert curve["code_norm"][0] == pytest.approx(float(prior[0].norm()), rel=1e-12)
    assert curve["moved"][0] == 0 and curve["moved"][1] > 0


def test_refined_codes_descend_the_decoders_own_loss_without_a_prior(images):
    """refine_codes is heavy-ball gradient descent on L(z) = ½‖x − D(z)‖² from the start (v ← m v + ∂L/∂z,
    z ← z − γ v), with no term that pulls z back to the start; it keeps the codes at the requested steps and
    leaves the decoder's weights and .grad alone.

    Oracle: the same descent written by hand with autograd on that formula (float64).
    """
    torch.manual_seed(0)
    model = autoencoder("mlp", latent=8).double()
    encoder, decoder = halves(model)
    x = images[:16]
    with torch.no_grad():
        start = encoder(x)
    gamma, momentum, T = 0.5, 0.5, 6
    kept, trace = refine_codes(decoder, x, start, pc.PCConfig(T=T, inference_lr=gamma, momentum=momentum), [0, 2, 6])
    z, v, losses, by_hand = start.clone(), torch.zeros_like(start), [], {0: start.clone()}
    for t in range(1, T + 1):
        z.requires_grad_(True)
        loss = 0.5 * (x - decoder(z)).pow(2).sum()
        losses.append(float(loss.detach()) / 16)
        (g,) = torch.autograd.grad(loss, z)
        v = momentum * v + g
        z = (z - gamma * v).detach()
        by_hand[t] = z.clone()
    assert sorted(kept) == [0, 2, 6]
    for t in kept:
        assert relative_error(kept[t], by_hand[t]) < 1e-12
    assert trace[:T].tolist() == pytest.approx(losses, rel=1e-12)
    assert all(p.grad is None for p in model.parameters())


def test_refinement_curve_at_T0_is_the_autoencoder(images):
    """refinement_vs_steps at T = 0 decodes E(x): the autoencoder's own MSE and code norm, and the codes have not
    moved; a few steps later they have.

    Oracle: the autoencoder's forward pass (a round trip through the shared halves), so the control curve starts
    exactly at the BP autoencoder.
    """
    torch.manual_seed(0)
    model = autoencoder("mlp", latent=8).double()
    encoder, decoder = halves(model)
    loader = pc.TensorLoader(images[:100], images[:100], 64)
    curve = refinement_vs_steps(decoder, encoder, loader, pc.PCConfig(inference_lr=0.5, momentum=0.5), [0, 4])
    with torch.no_grad():
        mse = float((model(images[:100]) - images[:100]).pow(2).mean())
        norm = float(encoder(images[:100]).norm(dim=1).mean())
    assert curve["mse"][0] == pytest.approx(mse, rel=1e-12)
    assert curve["code_norm"][0] == pytest.approx(norm, rel=1e-12)
    assert curve["moved"][0] == 0 and curve["moved"][1] > 0


def test_auto_decoder_is_backprop_at_the_inferred_codes(images):
    """The auto-decoder's BP gradient is ∂/∂Θ of ½‖x − D(z*)‖² (batch mean) at the code z* that PC inference gives
    with the weights frozen, z* held fixed: the control differs from the PC decoder in the weight update only.

    Oracle: autograd on that formula, with z* from infer_codes (float64). Its forward pass codes an image as the PC
    decoder's evaluation does, and a seed gives both decoders the same initial weights.
    """
    torch.manual_seed(0)
    x = images[:16]
    config = pc.PCConfig(T=6, inference_lr=0.1, momentum=0.5)
    model = AutoDecoder(generative("mlp", latent=8).double(), 8, config)
    pc.bp_gradients(model, x, x, "mse")
    codes = infer_codes(model.generative, x, 8, config)[0]
    params = list(model.generative.parameters())
    loss = 0.5 * (x - model.generative(codes)).pow(2).flatten(1).sum(1).mean()
    for p, g in zip(params, torch.autograd.grad(loss, params)):
        assert relative_error(p.grad, g) < 1e-12
    with torch.no_grad():
        assert torch.equal(model(x), model.generative(codes))
    torch.manual_seed(0)
    a = build("pc-decoder")
    torch.manual_seed(0)
    b = build("bp-decoder")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_choose_step_takes_the_lowest_error_whose_trace_never_rose():
    """The rule that picks γ for the BP decoder: a lower error at a γ whose energy rose (or blew up) is refused."""
    trials = {0.05: {"val_mse": 0.04, "rises": 0}, 0.1: {"val_mse": 0.03, "rises": 0},
              0.2: {"val_mse": 0.02, "rises": 3}, 5.0: {"val_mse": None, "rises": None}}
    assert choose_step(trials) == 0.1
    assert choose_step({0.2: {"val_mse": 0.02, "rises": 3}, 0.5: {"val_mse": 0.01, "rises": 1}}) == 0.2


def test_paired_differences_are_taken_seed_by_seed():
    """mean ± standard error of a − b over the seeds both models ran, the standard error being std/√n.

    Oracle: the differences worked by hand; a common seed offset (the shared batch order) cancels.
    """
    records = [{"model": m, "latent": 8, "seed": s, "test_mse": base + offset}
               for s, offset in enumerate((0.0, 1.0, 2.0)) for m, base in (("a", 0.5), ("b", 0.2))]
    records.append({"model": "a", "latent": 8, "seed": 3, "test_mse": 9.0})  # no partner: left out
    d = paired_difference(records, "a", "b")
    assert d["seeds"] == [0, 1, 2] and d["per_seed"] == pytest.approx([0.3, 0.3, 0.3])
    assert d["mean"] == pytest.approx(0.3) and d["sem"] == pytest.approx(0.0, abs=1e-12)
    stats = mean_sem([1.0, 2.0, 4.0])
    assert stats["std"] == pytest.approx((7 / 3) ** 0.5) and stats["sem"] == pytest.approx((7 / 9) ** 0.5)
    with pytest.raises(ValueError):
        paired_difference([*records, {"model": "b", "latent": 16, "seed": 0, "test_mse": 0.0}], "a", "b")


def test_merged_controls_pair_each_curve_with_the_pc_decoder_seed_by_seed():
    """merge_controls: per-T mean over seeds of each curve, and of its difference from the PC decoder's same seed."""
    def seed(pc_mse, bp_mse):
        curve = lambda mse: {"T": [0, 5], "mse": mse, "code_norm": [0.0, 1.0], "moved": [0.0, 1.0], "rises": 0}
        return {"curves": {"pc-decoder": curve(pc_mse), "bp-decoder": curve(bp_mse)}}

    merged = merge_controls([seed([0.1, 0.05], [0.1, 0.07]), seed([0.2, 0.06], [0.2, 0.10])])
    assert merged["T"] == [0, 5]
    assert merged["curves"]["bp-decoder"]["mse"][1]["mean"] == pytest.approx(0.085)
    assert [d["mean"] for d in merged["minus_pc_decoder"]["bp-decoder"]] == pytest.approx([0.0, 0.03])


def test_gaussian_samples_follow_the_fitted_gaussian():
    """Samples from the Gaussian fitted to codes have (to sampling error) the codes' mean and covariance."""
    g = torch.Generator().manual_seed(0)
    mix = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.5, 0.0], [0.0, -0.3, 0.2]], dtype=torch.float64)
    codes = torch.randn(4000, 3, generator=g, dtype=torch.float64) @ mix.T + torch.tensor([1.0, -2.0, 0.5])
    samples = gaussian_samples(codes, 200_000, g)
    assert torch.allclose(samples.mean(0), codes.mean(0), atol=0.01)
    assert torch.allclose(torch.cov(samples.T), torch.cov(codes.T), atol=0.01)


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_flop_counts_agree_including_transposed_convolutions(arch):
    """Analytic, fvcore and FlopCounterMode counts agree for every compared operation (ConvTranspose2d forward and
    backward included, which torch.profiler counts as zero): the cost figures rest on this."""
    nets = networks(arch, (1, 28, 28), 16)
    rows = agreement(nets, torch.rand(4, 1, 28, 28), 16, pc.PCConfig(T=2), pc.PCConfig(T=3))
    for r in rows:
        assert r["analytic"] == r["counter"] and r["fvcore"] in (None, r["analytic"]), r


def test_coding_by_inference_costs_about_2T_plus_1_encoder_passes():
    """Mirrored MLP 784-384-64 / 64-384-784, so c_E = c_D = 784·384 + 384·64. Inference costs T + 1 forward passes of
    the decoder and T backward ones, the first of which crosses only the output layer (c_out = 384·784): in encoder
    passes, 2T + c_out / c_D."""
    nets = networks("mlp", (1, 28, 28), 64)
    ratios = ratios_vs_T(nets, torch.rand(2, 1, 28, 28), 64, pc.PCConfig(T=1), pc.PCConfig(T=1), [1, 6], repeats=1)
    c_out, c_d = 384 * 784, 784 * 384 + 384 * 64
    assert ratios["flop pc-decoder coding"] == pytest.approx([2 + c_out / c_d, 12 + c_out / c_d], rel=1e-12)


def test_profiler_count_writes_nothing_to_stderr(capfd):
    """The profiler count of FLOPs.ipynb (the original tutorial's method) leaves no "USDT: profiler_start" lines.

    Oracle for the number: a Linear n → m on B rows is one matrix product, 2·B·n·m FLOPs. capfd reads file
    descriptor 2 itself, where the profiler's C++ logging goes.
    """
    layer, x = nn.Linear(6, 4), torch.rand(5, 6)

    def forward():
        with torch.no_grad():
            layer(x)

    assert profiler_flops(forward) == 2 * 5 * 6 * 4
    assert capfd.readouterr().err == ""
