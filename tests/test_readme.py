"""README.md: every path, script, option and API name it shows exists, and the two commands come first.

The original tutorial's README named folders and files that did not exist. These tests read the README the way a
reader does (links, inline code, code blocks) and check each reference against the repository itself.
"""

from __future__ import annotations

import dataclasses
import re
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
