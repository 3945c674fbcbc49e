"""Tests of compression.models and compression.compare: one network for BP and PC, codes inferred with frozen weights."""

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
    autoencoder,
    autoencoder_evaluator,
    build,
    decoder_as_generative,
    decoder_evaluator,
    gaussian_samples,
    generative,
    halves,
    infer_codes,
    inference_vs_steps,
    prior_mean,
    reconstruction_data,
    reconstruction_metrics,
)
from compression.models.costs import agreement, networks, profiler_flops, ratios_vs_T

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


@pytest.mark.parametrize("name", ["pc-decoder", "pc-ae"])
def test_energy_falls_during_inference_at_the_chosen_settings(name, images):
    """At the default γ, momentum and T the energy F never rises during inference on real digits (fresh network)."""
    torch.manual_seed(0)
    model = build(name).double().train()
    x = images[:64]
    if name == "pc-decoder":
        energies = infer_codes(model, x, 64, DECODER_PC)[1]
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
    assert [r["model"] for r in data["summary"]] == ["bp-ae", "pc-ae", "pc-decoder"]
    for row in data["summary"]:
        assert row["model"] in table and row["test_mse"] > 0 and row["test_seconds_per_batch"] > 0
    # The decoder has half the autoencoder's weights: it has no encoder.
    params = {r["model"]: r["parameters"] for r in data["summary"]}
    assert params["bp-ae"] == params["pc-ae"] > params["pc-decoder"]


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


def test_inferred_codes_from_a_start_descend_the_energy_with_the_prior_moved_there(images):
    """With a start m, inference is T steps of plain gradient descent on the hand-written
    F = ½‖φ_z − m‖² + ½‖φ_h − tanh(W₃φ_z + b₃)‖² + ½‖x − σ(W₄φ_h + b₄)‖², from φ_z = m, φ_h = tanh(W₃m + b₃).

    Oracle: the same descent written with autograd on that formula (float64). This is the energy the amortisation-gap
    control uses when it refines an encoder's codes, so the prior must follow the start.
    """
    torch.manual_seed(0)
    model = autoencoder("mlp", latent=8).double()
    encoder, _ = halves(model)
    generative_bp = decoder_as_generative(model)
    x = images[:16]
    with torch.no_grad():
        m = encoder(x)
    gamma, T = 0.1, 5
    codes = infer_codes(generative_bp, x, 8, pc.PCConfig(T=T, inference_lr=gamma), start=m)[0]
    lin3, lin4 = generative_bp[1], generative_bp[4]
    with torch.no_grad():
        z, h = m.clone(), torch.tanh(lin3(m))
    for _ in range(T):
        z.requires_grad_(True)
        h.requires_grad_(True)
        energy = (0.5 * (z - m).pow(2).sum() + 0.5 * (h - torch.tanh(lin3(z))).pow(2).sum()
                  + 0.5 * (x.flatten(1) - torch.sigmoid(lin4(h))).pow(2).sum())
        gz, gh = torch.autograd.grad(energy, (z, h))
        z, h = (z - gamma * gz).detach(), (h - gamma * gh).detach()
    assert relative_error(codes, z) < 1e-12


def test_inference_from_the_encoders_codes_at_T0_is_the_autoencoder(images):
    """inference_vs_steps with the encoder as start and T = 0 decodes E(x): the autoencoder's own MSE and code norm.

    Oracle: the autoencoder's forward pass (a round trip through the shared halves), so the control curve starts
    exactly at the BP autoencoder.
    """
    torch.manual_seed(0)
    model = autoencoder("mlp", latent=8).double()
    encoder, _ = halves(model)
    loader = pc.TensorLoader(images[:100], images[:100], 64)
    curve = inference_vs_steps(decoder_as_generative(model), loader, 8, DECODER_PC, [0], encoder=encoder)
    with torch.no_grad():
        mse = float((model(images[:100]) - images[:100]).pow(2).mean())
        norm = float(encoder(images[:100]).norm(dim=1).mean())
    assert curve["mse"][0] == pytest.approx(mse, rel=1e-12)
    assert curve["code_norm"][0] == pytest.approx(norm, rel=1e-12)


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
