"""FLOPs and wall time of training and of coding, for the compression models (on top of pc_common.flops).

Per sample, with c_E and c_D the MACs of one pass through the encoder and the decoder (×2 for FLOPs):

    training step   bp-ae       3 (c_E + c_D) − c_first        (forward, input gradients, weight gradients)
                    pc-decoder  (T + 1) c_D + (T − 1) c_D + c_out + c_D = (2T + 1) c_D + c_out
                    bp-decoder  2T c_D + c_out + 3 c_D − c_first,D   (inference, then a BP step of the decoder
                                                                      at the inferred code)
    coding          autoencoder c_E                            (one encoder pass)
                    pc-decoder  (T + 1) c_D + (T − 1) c_D + c_out = 2T c_D + c_out   (inference alone, weights frozen)

where c_out is the decoder's output layer (the first inference step sends back only the output error: the hidden
errors are zero after the feed-forward sweep), and the PC autoencoder's step follows
:func:`pc_common.flops.analytic_step_flops`. When c_E ≈ c_D (the mirrored MLP, where c_out is most of c_D), coding
by inference costs about 2T + 1 encoder passes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from pc_common import PCConfig, flops

from .coding import AutoDecoder, infer_codes, prior_mean
from .networks import autoencoder, generative, halves


def networks(arch: str, input_shape: Sequence[int], latent: int, **kwargs) -> dict[str, nn.Module]:
    """The autoencoder (``ae``, for bp-ae and pc-ae), its ``encoder`` half, and the generative ``decoder``.

    ``kwargs`` go to both networks (``hidden`` for the MLP, ``channels`` for the conv net).
    """
    ae = autoencoder(arch, input_shape, latent, **kwargs)
    return {"ae": ae, "encoder": halves(ae)[0], "decoder": generative(arch, input_shape, latent, **kwargs)}


def _encode(encoder: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        encoder(x)


def operations(nets: dict[str, nn.Module], x: torch.Tensor, latent: int, ae_pc: PCConfig, decoder_pc: PCConfig):
    """The six operations compared, each as (analytic FLOPs, a callable that runs it once).

    The auto-decoder (bp-decoder) shares the generative decoder's weights and infers with ``decoder_pc``.

    Returns:
        ``{"bp-ae step", "pc-ae step", "pc-decoder step", "bp-decoder step", "encoder pass", "pc-decoder coding"}``.
    """
    ae, encoder, decoder = nets["ae"], nets["encoder"], nets["decoder"]
    batch, z0 = len(x), prior_mean(x, latent)
    ae_costs, dec_costs = flops.layer_costs(ae, x), flops.layer_costs(decoder, z0)
    coding = flops.analytic_inference_flops(dec_costs, batch, T=decoder_pc.T)["total"]
    auto_decoder = AutoDecoder(decoder, latent, decoder_pc)
    return {
        "bp-ae step": (flops.analytic_step_flops(ae_costs, batch, "bp")["total"],
                       lambda: flops.bp_step(ae, x, x)),
        "pc-ae step": (flops.analytic_step_flops(ae_costs, batch, "pc", T=ae_pc.T)["total"],
                       lambda: flops.pc_step(ae, x, x, "mse", ae_pc)),
        "pc-decoder step": (flops.analytic_step_flops(dec_costs, batch, "pc", T=decoder_pc.T)["total"],
                            lambda: flops.pc_step(decoder, z0, x, "mse", decoder_pc)),
        # The code arrives detached, so the decoder's first layer sends no error back to it.
        "bp-decoder step": (coding + flops.analytic_step_flops(dec_costs, batch, "bp")["total"],
                            lambda: flops.bp_step(auto_decoder, x, x)),
        "encoder pass": (flops.analytic_step_flops(flops.layer_costs(encoder, x), batch, "bp")["forward"],
                         lambda: _encode(encoder, x)),
        "pc-decoder coding": (coding, lambda: infer_codes(decoder, x, latent, decoder_pc)),
    }


def agreement(nets: dict[str, nn.Module], x: torch.Tensor, latent: int, ae_pc: PCConfig,
              decoder_pc: PCConfig) -> list[dict]:
    """Analytic, fvcore (plain forward passes only) and FlopCounterMode counts of every operation, in FLOPs."""
    rows = []
    for name, net, inp in (("autoencoder forward", nets["ae"], x),
                           ("decoder forward", nets["decoder"], prior_mean(x, latent))):
        costs = flops.layer_costs(net, inp)

        def forward(net=net, inp=inp):
            with torch.no_grad():
                net(inp)

        rows.append({"operation": name,
                     "analytic": flops.analytic_step_flops(costs, len(x), "bp")["forward"],
                     "fvcore": 2 * flops.fvcore_forward(net, inp)[0][""],
                     "counter": flops.counted_step_flops(forward)["total"]})
    for name, (analytic, op) in operations(nets, x, latent, ae_pc, decoder_pc).items():
        rows.append({"operation": name, "analytic": analytic, "fvcore": None,
                     "counter": flops.counted_step_flops(op)["total"]})
    return rows


@contextmanager
def _stderr_to_devnull():
    """Point file descriptor 2 at /dev/null for the block (Python's sys.stderr alone would not catch C++ logs)."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def profiler_flops(step: Callable[[], None]) -> int:
    """``torch.profiler``'s ``with_flops`` total over one call of ``step``: the count the original tutorial used.

    Shown for contrast: it misses the convolution backward and every ``ConvTranspose2d``. The profiler's C++ side
    writes "USDT: … profiler_start / profiler_stop" lines (and, without a GPU, a failed device probe) straight to
    the process's stderr whatever ``KINETO_LOG_LEVEL`` says, so that stream is silenced while it runs; a failing
    ``step`` still raises as usual.
    """
    with _stderr_to_devnull():
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], with_flops=True) as prof:
            step()
    return sum(e.flops for e in prof.key_averages())


def ratios_vs_T(nets: dict[str, nn.Module], x: torch.Tensor, latent: int, ae_pc: PCConfig, decoder_pc: PCConfig,
                Ts: Sequence[int], repeats: int = 5, clock=time.perf_counter) -> dict[str, list[float]]:
    """PC/BP ratios of FLOPs and of median time against T (the same T for both PC models).

    Training: ``pc-ae step`` and ``pc-decoder step`` over ``bp-ae step``. Coding: ``pc-decoder coding`` over
    ``encoder pass``. γ and momentum are those of the given configs (they do not change the cost).

    Args:
        clock: ``time.perf_counter`` (wall time) or ``time.process_time``: on one CPU thread, the compute time of
            the operation, which other jobs on a shared machine do not inflate as they inflate wall time.
    """
    out: dict[str, list[float]] = {"T": list(Ts)}
    for T in Ts:
        ops = operations(nets, x, latent, PCConfig(T, ae_pc.inference_lr, ae_pc.momentum),
                         PCConfig(T, decoder_pc.inference_lr, decoder_pc.momentum))
        seconds = {name: flops.time_step(op, repeats, warmup=1, clock=clock) for name, (_, op) in ops.items()
                   if name != "bp-decoder step"}
        for pc_name, ref in (("pc-ae step", "bp-ae step"), ("pc-decoder step", "bp-ae step"),
                             ("pc-decoder coding", "encoder pass")):
            out.setdefault(f"flop {pc_name}", []).append(ops[pc_name][0] / ops[ref][0])
            out.setdefault(f"time {pc_name}", []).append(seconds[pc_name] / seconds[ref])
    return out
