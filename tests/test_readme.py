"""README.md: every path, script, option and API name it shows exists, the two commands come first, and every
headline result is the number its JSON file holds.

The original tutorial's README named folders and files that did not exist. These tests read the README the way a
reader does (links, inline code, code blocks) and check each reference against the repository itself.
"""

from __future__ import annotations

import dataclasses
import json
import re
import statistics
from pathlib import Path

import pytest

import pc_common
from pc_common import PCConfig

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
# A relative path: ASCII names joined by slashes (so not a URL, an absolute or home path, a placeholder or ∂F/∂Θ).
PATHLIKE = re.compile(r"^[\w.*-]+(/[\w.*-]*)+$", re.ASCII)
# `.venv/bin/python path/to/script.py ARGS` or `.venv/bin/python -m package.module ARGS` (the prefix optional,
# optionally after VAR=value settings).
COMMAND = re.compile(r"^\s*(?:[A-Z_]+=\S+\s+)*(?:\.venv/bin/)?python\s+(?:-m\s+([\w.]+)|(\S+\.py))([^\n`|]*)", re.M)


def _code_texts() -> list[str]:
    """The contents of every fenced block and every inline code span (outside the fenced blocks)."""
    blocks = FENCE.findall(README)
    prose = FENCE.sub("", README)
    return blocks + INLINE.findall(prose)


def _commands() -> list[tuple[str, str]]:
    """(script path, arguments) of every ``python script.py ...`` or ``python -m module ...`` shown in code."""
    return [
        (m.group(2) or m.group(1).replace(".", "/") + ".py", m.group(3))
        for text in _code_texts()
        for m in COMMAND.finditer(text)
    ]


def _outputs() -> set[str]:
    """Paths that a README command writes (``--json PATH``): they exist once the command has run."""
    return {m for _, args in _commands() for m in re.findall(r"--json\s+(\S+)", args)}


def _path_tokens() -> set[str]:
    """Every relative path shown in code (see ``PATHLIKE``)."""
    tokens = set()
    for text in _code_texts():
        for token in re.split(r"[\s,;()\"'=|]+", text):
            token = token.rstrip(".:")
            # .venv/… is made by `make`, not part of the repository.
            if not PATHLIKE.match(token) or token.startswith(("..", ".venv/")):
                continue
            tokens.add(token)
    return tokens


def test_the_two_commands_come_first():
    """The first section after the title and intro shows `make test` and `make run`, before any other code.

    Why: a reader who stops after one screen should still know how to test and run everything.
    """
    first_section = README.split("\n## ")[1]
    first_block = FENCE.search(README)
    assert first_block is not None
    assert first_block.start() > README.index("\n## "), "no code before the first section"
    assert first_block.group(0) in first_section
    lines = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert "make test" in lines and "make run" in lines


def test_links_point_to_existing_files():
    """Every relative link and embedded image resolves to a file or folder of the repository."""
    targets = [t for t in LINK.findall(README) if not re.match(r"^(https?:|mailto:|#)", t)]
    assert targets, "the README links no local file (the figures at least)"
    missing = [t for t in targets if not (ROOT / t.split("#")[0]).exists()]
    assert not missing, f"README links missing files: {missing}"


def test_paths_in_code_exist():
    """Every repository path shown in code exists, unless a README command writes it (``--json PATH``)."""
    missing = sorted(t for t in _path_tokens() - _outputs() if not (ROOT / t).exists())
    assert not missing, f"README names paths that do not exist: {missing}"


def test_scripts_exist_and_accept_the_options_shown():
    """Each ``python script.py --option`` (or ``python -m module``) names an existing script defining that option.

    Oracle: the script's own source (its argparse definitions), so a renamed flag breaks this test, not the reader.
    """
    commands = _commands()
    assert commands, "the README shows no python command"
    for script, args in commands:
        path = ROOT / script
        assert path.is_file(), f"{script} does not exist"
        source = path.read_text(encoding="utf-8")
        for option in re.findall(r"(?<!\S)(--[\w-]+)", args):
            assert f'"{option}"' in source, f"{script} has no option {option}"


def test_figures_are_embedded():
    """The two schematic figures drawn by images/make_figures.py are shown in the README."""
    for name in ("images/architectures.png", "images/pseudocodes.png"):
        assert f"]({name})" in README


@pytest.mark.parametrize("name", sorted(set(re.findall(r"pc_common\.(\w+)", README))))
def test_api_names_exist(name):
    """Every ``pc_common.<name>`` the README mentions is part of the package (a rename must update the README)."""
    assert hasattr(pc_common, name), f"pc_common has no {name}"


def test_pcconfig_fields_exist():
    """The glossary's ``PCConfig.<field>`` names are the dataclass's fields (oracle: ``dataclasses.fields``)."""
    fields = {f.name for f in dataclasses.fields(PCConfig)}
    named = set(re.findall(r"PCConfig\.(\w+)", README))
    assert named, "the glossary names no PCConfig field"
    assert named <= fields, f"unknown PCConfig fields: {named - fields}"


def test_python_snippets_run():
    """The README's Python examples run as shown, and the PC step they define changes the weights.

    Oracle: a PC step with nonzero errors must move at least one weight (Adam steps every weight with a gradient).
    """
    import torch

    snippets = re.findall(r"^```python\n(.*?)^```", README, re.S | re.M)
    assert snippets, "the README shows no Python example"
    for code in snippets:
        namespace: dict = {}
        exec(compile(code, "README.md", "exec"), namespace)
        if "pc_step" in namespace:
            torch.manual_seed(0)
            before = [p.detach().clone() for p in namespace["model"].parameters()]
            namespace["pc_step"](torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,)))
            after = list(namespace["model"].parameters())
            assert any(not torch.equal(b, a) for b, a in zip(before, after))


# Every result number of the "Headline results" section, and the JSON it comes from. One entry per README snippet:
# (JSON file, the README text with each number written as {expression:format}). In an expression, v("a/b/0") reads
# that path of the file (keys and list indices), pct(path) is 100·v(path), and ratio(a, b) = median(a) / median(b)
# (a number is its own median). Whitespace is compared collapsed, so a snippet may cross a line break of the prose.
# A new result in the README gets one entry here: test_every_headline_result_is_quoted fails until it has one.
QUOTES = [
    ("classification/results/comparison_mlp-50epochs_fashion-mnist.json",
     "raised an alarm | {pct('bp/test_accuracy/mean'):.2f} ± {pct('bp/test_accuracy/std'):.2f}; {v('bp/alarms'):d}"
     " | {pct('pc/test_accuracy/mean'):.2f} ± {pct('pc/test_accuracy/std'):.2f}; {v('pc/alarms'):d} |"),
    ("classification/results/comparison_mlp-50epochs-beta0.1_fashion-mnist.json",
     "α = 3e-3): test accuracy (%); alarm epochs | {pct('bp/test_accuracy/mean'):.2f} ± {pct('bp/test_accuracy/std'):.2f};"
     " {v('bp/alarms'):d} | {pct('pc/test_accuracy/mean'):.2f} ± {pct('pc/test_accuracy/std'):.2f}; {v('pc/alarms'):d} |"),
    ("classification/results/comparison_mlp-width512-fixedstep_fashion-mnist.json",
     "width 512, γ fixed: test accuracy (%); alarm epochs | {pct('bp/test_accuracy/mean'):.2f}; {v('bp/alarms'):d}"
     " | {pct('pc/test_accuracy/mean'):.2f}; {v('pc/alarms'):d} |"),
    ("classification/results/comparison_mlp-width512_fashion-mnist.json",
     "rose: 9 and 12) | {pct('bp/test_accuracy/mean'):.2f}; {v('bp/alarms'):d}"
     " | {pct('pc/test_accuracy/mean'):.2f}; {v('pc/alarms'):d} |"),
    ("classification/results/comparison_mlp-batch32_fashion-mnist.json",
     "1,719 batches an epoch): test accuracy (%); alarm epochs | {pct('bp/test_accuracy/mean'):.2f};"
     " {v('bp/alarms'):d} | {pct('pc/test_accuracy/mean'):.2f}; {v('pc/alarms'):d} |"),
    ("classification/results/comparison_mlp_fashion-mnist.json",
     "5 seeds: test accuracy at the best-validation epoch (%) | {pct('bp/test_accuracy/mean'):.2f} ± "
     "{pct('bp/test_accuracy/std'):.2f} | {pct('pc/test_accuracy/mean'):.2f} ± {pct('pc/test_accuracy/std'):.2f} |"),
    ("classification/results/comparison_mlp-ce_fashion-mnist.json",
     "cross-entropy output (%) | {pct('bp/test_accuracy/mean'):.2f} ± {pct('bp/test_accuracy/std'):.2f}"
     " | {pct('pc/test_accuracy/mean'):.2f} ± {pct('pc/test_accuracy/std'):.2f} |"),
    ("classification/results/comparison_cnn_fashion-mnist.json",
     "settings of the MLP (%) | {pct('bp/test_accuracy/mean'):.2f} ± {pct('bp/test_accuracy/std'):.2f}"
     " | {pct('pc/test_accuracy/mean'):.2f} ± {pct('pc/test_accuracy/std'):.2f} |"),
    ("classification/results/comparison_mlp_fashion-mnist.json",
     "only a rough guide) | {v('bp/epoch_seconds'):.1f} /"),
    ("classification/results/comparison_mlp-ce_fashion-mnist.json",
     " / {v('bp/epoch_seconds'):.1f} / "),
    ("classification/results/comparison_cnn_fashion-mnist.json",
     " / {v('bp/epoch_seconds'):.1f} | "),
    ("classification/results/comparison_mlp_fashion-mnist.json",
     "| {v('pc/epoch_seconds'):.1f} / "),
    ("classification/results/comparison_mlp-ce_fashion-mnist.json",
     " / {v('pc/epoch_seconds'):.1f} / "),
    ("classification/results/comparison_cnn_fashion-mnist.json",
     " / {v('pc/epoch_seconds'):.1f} | (as above) |"),
    ("PC_BP_Gradients/results/gradcheck.json",
     "| (reference) | {v('models/mlp/fixed_prediction_rel_error'):.2g} / {v('models/cnn/fixed_prediction_rel_error'):.2g}"
     " / {v('models/rnn/fixed_prediction_rel_error'):.2g} / {v('models/lstm/fixed_prediction_rel_error'):.2g} |"),
    ("PC_BP_Gradients/results/gradcheck.json",
     "| (reference) | {v('models/mlp/standard_pc_by_beta/1.0/cosine'):.3f} / {v('models/cnn/standard_pc_by_beta/1.0/cosine'):.3f}"
     " / {v('models/rnn/standard_pc_by_beta/1.0/cosine'):.3f} / {v('models/lstm/standard_pc_by_beta/1.0/cosine'):.3f} |"),
    ("PC_BP_Gradients/results/gradcheck.json",
     "| (reference) | {v('models/mlp/standard_pc_by_beta/0.01/cosine'):.3f} / {v('models/cnn/standard_pc_by_beta/0.01/cosine'):.3f}"
     " / {v('models/rnn/standard_pc_by_beta/0.01/cosine'):.5f} / {v('models/lstm/standard_pc_by_beta/0.01/cosine'):.5f} |"),
    ("PC_BP_Gradients/results/gradcheck.json",
     "| −{-v('scalar_dLdx_true'):.12f} (autograd) | −{-v('scalar_dLdx_pc'):.12f} |"),
    ("classification/results/comparison_mlp_mnist-5k.json",
     "at the best-validation epoch (%) | {pct('bp/test_accuracy/mean'):.2f} ± {pct('bp/test_accuracy/std'):.2f}"
     " | {pct('pc/test_accuracy/mean'):.2f} ± {pct('pc/test_accuracy/std'):.2f} |"),
    ("classification/results/comparison_cnn_mnist-5k.json",
     "same protocol (%) | {pct('bp/test_accuracy/mean'):.2f} ± {pct('bp/test_accuracy/std'):.2f}"
     " | {pct('pc/test_accuracy/mean'):.2f} ± {pct('pc/test_accuracy/std'):.2f} |"),
    ("classification/results/benchmark.json",
     "2 threads; PC / BP | {v('bp_seconds'):.3f} | {v('pc_seconds'):.3f} ({v('ratio'):.2f}×) |"),
    ("classification/results/benchmark_1thread.json",
     "the same on 1 thread | {v('bp_seconds'):.3f} | {v('pc_seconds'):.3f} ({v('ratio'):.2f}×) |"),
    ("classification/results/flops.json",
     "| {v('breakdown/0/total'):.1f} MFLOP | {v('breakdown/1/total'):.1f} MFLOP ({v('breakdown/1/ratio to BP'):.2f}×) |"),
    ("classification/results/flops.json",
     "| {v('breakdown/3/total'):.1f} MFLOP | {v('breakdown/4/total'):.1f} MFLOP ({v('breakdown/4/ratio to BP'):.2f}×) |"),
    ("classification/results/sequences.json",
     "| {pct('rowmnist/runs/BP/test_accuracy'):.1f} | fixed prediction"
     " {pct('rowmnist/runs/PC fixed prediction/test_accuracy'):.1f}"
     " ({ratio('rowmnist/runs/PC fixed prediction/seconds_per_epoch', 'rowmnist/runs/BP/seconds_per_epoch'):.1f}×);"
     " standard {pct('rowmnist/runs/PC standard/test_accuracy'):.1f}"
     " ({ratio('rowmnist/runs/PC standard/seconds_per_epoch', 'rowmnist/runs/BP/seconds_per_epoch'):.1f}×) |"),
    ("classification/results/sequences.json",
     "| {pct('shakespeare/runs/BP/test_accuracy'):.1f} | {pct('shakespeare/runs/PC standard/test_accuracy'):.1f}"
     " ({ratio('shakespeare/runs/PC standard/seconds_per_epoch', 'shakespeare/runs/BP/seconds_per_epoch'):.1f}×) |"),
    ("compression/results/comparison.json",
     "| {v('summary/0/test_mse'):.4f} | {v('summary/1/test_mse'):.4f} / {v('summary/2/test_mse'):.4f} |"),
    ("compression/results/comparison.json",
     "| {v('summary/0/parameters'):,} | PC AE {v('summary/1/parameters'):,}"
     " ({ratio('summary/1/train_seconds_per_epoch', 'summary/0/train_seconds_per_epoch'):.1f}×,"
     " {ratio('summary/1/test_seconds_per_batch', 'summary/0/test_seconds_per_batch'):.1f}×);"
     " PC decoder {v('summary/2/parameters'):,}"
     " ({ratio('summary/2/train_seconds_per_epoch', 'summary/0/train_seconds_per_epoch'):.1f}×,"
     " {ratio('summary/2/test_seconds_per_batch', 'summary/0/test_seconds_per_batch'):.1f}×) |"),
    ("classification/results/benchmark_1thread.json",
     "The eager time ratio sits above the FLOP ratio of {v('flop_ratio'):.2f}: {v('ratio'):.2f}× on one thread"),
    ("classification/results/benchmark.json", "on one thread and {v('ratio'):.2f}× on two over whole epochs"),
    ("classification/results/flops.json",
     "and {v('ratios_vs_T/mlp/time_pc/3'):.2f}× for one step timed on its own in `classification/FLOPs.ipynb`"),
    ("classification/results/flops.json", "The FLOP ratio would be {v('breakdown/2/ratio to BP'):.1f} if"),
    ("compression/results/flops.json", "35 inference steps, {v('ratios_vs_T/mlp/flop pc-decoder coding/4'):.1f} encoder"),
    ("compression/results/comparison.json",
     "in FLOPs, and {ratio('summary/2/test_seconds_per_batch', 'summary/0/test_seconds_per_batch'):.1f} times the BP"
     " autoencoder's wall time per test batch"),
]
# Rows whose numbers have no committed result file yet (the compiled-step timings): quote them once their JSON is in.
NO_RESULT_FILE = ("| MLP seconds per epoch, eager / compiled step", "| CNN, the same, median of 5",
                  "| MLP, full Fashion-MNIST (430 batches")
FIELD = re.compile(r"\{([^{}]+):([^{}:]*)\}")


def _flat(text: str) -> str:
    return " ".join(text.split())


def _render(path: str, template: str) -> str:
    """The README text a quote stands for: each {expression:format} evaluated on the JSON file ``path``."""
    data = json.loads((ROOT / path).read_text(encoding="utf-8"))

    def v(key: str):
        value = data
        for part in key.split("/"):
            value = value[int(part)] if isinstance(value, list) else value[part]
        return value

    def ratio(a: str, b: str) -> float:
        def typical(x):
            return statistics.median(x) if isinstance(x, list) else x

        return typical(v(a)) / typical(v(b))

    names = {"v": v, "pct": lambda key: 100 * v(key), "ratio": ratio}
    return _flat(FIELD.sub(lambda m: format(eval(m.group(1), names), m.group(2)), template))


def _headline() -> str:
    """The "Headline results" section (up to the next heading)."""
    return README.split("\n## Headline results\n")[1].split("\n## ")[0]


@pytest.mark.parametrize("path, template", QUOTES, ids=[f"{p}:{i}" for i, (p, _) in enumerate(QUOTES)])
def test_readme_numbers_match_their_results(path, template):
    """Each quoted number is what its JSON file holds, at the precision the README prints.

    Why: hand-copied numbers drift when results are regenerated (compression 10.3× / 58× stood against 10.2× / 52.2×
    in the JSON). Oracle: the committed result file the number comes from.
    """
    expected = _render(path, template)
    assert expected in _flat(_headline()), f"README should read: {expected!r} (from {path})"


def test_every_headline_result_is_quoted():
    """Every digit in the BP and PC columns of the headline table lies inside a quote of ``QUOTES``.

    Why: a result added to the table without an entry would escape the check above.
    """
    text = _flat(_headline())
    covered = [False] * len(text)
    for path, template in QUOTES:
        quote = _render(path, template)
        start = text.find(quote)
        while start >= 0:
            covered[start : start + len(quote)] = [True] * len(quote)
            start = text.find(quote, start + 1)
    rows = [line for line in _headline().splitlines() if line.startswith("| ") and not line.startswith("| what")
            and not line.startswith(NO_RESULT_FILE)]
    assert rows, "the headline table has no rows"
    for row in rows:
        flat = _flat(row)
        offset = text.index(flat)
        cells = flat.split(" | ")
        start = offset + len(cells[0]) + 3  # the BP column begins after "| what | "
        end = start + len(cells[1]) + 3 + len(cells[2])
        missing = [text[i] for i in range(start, end) if text[i].isdigit() and not covered[i]]
        assert not missing, f"unquoted result numbers in the row {cells[0]!r}: add an entry to QUOTES"
