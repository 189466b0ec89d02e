"""The command blocks users copy from README.md and docs/ cannot rot.

Every shell block (```bash, ```sh, ```shell) is preceded by one marker, or holds only commands run here:

- `<!-- run by: tests/test_x.py::test_name ... -->`: those tests run the block's entry points on small data (each
  named file and test must exist);
- `<!-- not run here: REASON -->`: e.g. it needs AWS, a GPU or a long-running server;
- no marker: every command in it is one this test runs itself (`make help`, `python -m raymlops.X --help`).

Whatever the marker, every `python -m raymlops.*` line is checked against the code: a Hydra entry point's
overrides are composed and validated (a renamed key, group or experiment fails here), an argparse one's arguments
are parsed by its real parser, and every `make TARGET` must be a Makefile target. Cheap: no Ray, a few seconds.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO

from raymlops import docs_reference

SHELL_FENCES = ("bash", "sh", "shell")
MARKER = re.compile(r"^<!--\s*(run by|not run here):\s*(.*?)\s*-->$")
HYDRA = {"tune", "train", "evaluate", "serve", "predict"}
ARGPARSE = set(docs_reference.ARGPARSE_COMMANDS)
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class Block:
    where: str  # path:line of the opening fence
    marker: tuple[str, str] | None  # ("run by" | "not run here", text)
    commands: tuple[tuple[str, ...], ...]  # each command line as shell words, env assignments and comments dropped

    def __str__(self) -> str:
        return self.where


def doc_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def _words(line: str) -> tuple[str, ...]:
    line = re.sub(r"\$\([^()]*\)", "SUBST", line)  # $(date +%F), $(base64 -w0 cat.png): one word
    words = shlex.split(line, comments=True)
    while words and ENV_ASSIGNMENT.match(words[0]):
        words.pop(0)
    return tuple(words)


def _commands(text: str) -> list[tuple[str, ...]]:
    """Each command of a block as words: a quoted string may span lines (kubectl --overrides='{...}')."""
    found, pending = [], ""
    for line in text.splitlines():
        pending = f"{pending}\n{line}" if pending else line
        try:
            found.append(_words(pending))
        except ValueError:  # an open quote: the command goes on on the next line
            continue
        pending = ""
    assert not pending, f"an unclosed quote: {pending!r}"
    return found


def blocks(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = lines[i].strip()
        if not fence.startswith("```"):
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        if fence[3:].strip() in SHELL_FENCES:
            before = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            m = MARKER.match(before)
            text = "\n".join(lines[i + 1 : end]).replace("\\\n", " ")
            commands = tuple(w for w in _commands(text) if w)
            where = f"{path.relative_to(REPO)}:{i + 1}"
            found.append(Block(where, (m.group(1), m.group(2)) if m else None, commands))
        i = end + 1
    return found


ALL_BLOCKS = [b for path in doc_files() for b in blocks(path)]


def _module(words: tuple[str, ...]) -> str | None:
    """`raymlops.X` of a `python -m raymlops.X ...` line (any python), else None."""
    if len(words) >= 3 and Path(words[0]).name.startswith("python") and words[1] == "-m" and words[2].startswith("raymlops."):
        return words[2].removeprefix("raymlops.")
    return None


def _runs_here(words: tuple[str, ...]) -> bool:
    """The commands this test executes itself (test_cheap_commands_run)."""
    return words == ("make", "help") or (_module(words) in ARGPARSE and words[3:] == ("--help",))


def test_the_docs_have_shell_blocks() -> None:
    assert len(ALL_BLOCKS) >= 20, [str(b) for b in ALL_BLOCKS]


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=str)
def test_every_shell_block_is_run_or_says_why_not(block: Block) -> None:
    if block.marker is None:
        unrun = [" ".join(w) for w in block.commands if not _runs_here(w)]
        assert not unrun, (
            f"{block}: {unrun} run nowhere: add <!-- run by: tests/test_x.py::test_name --> (tests that run them on "
            "small data) or <!-- not run here: REASON --> on the line before the block"
        )
        return
    kind, text = block.marker
    assert text, f"{block}: '{kind}:' needs its tests or its reason"
    if kind == "run by":
        named = re.findall(r"(tests/[\w/]+\.py)(?:::(\w+))?", text)
        assert named, f"{block}: 'run by:' names no tests/...py"
        for file, test in named:
            source = REPO / file
            assert source.is_file(), f"{block}: {file} does not exist"
            assert not test or re.search(rf"^(async )?def {test}\(", source.read_text(), re.M), f"{block}: no {file}::{test}"
        for other in re.findall(r"(?<![\w/])(\.ci/\w+)", text):
            assert (REPO / other).is_file(), f"{block}: {other} does not exist"


def _hydra_argv(module: str, args: list[str]) -> list[str]:
    """The overrides the entry point composes (raymlops/evaluate.py and predict.py rewrite their short keys)."""
    if module == "evaluate":
        return [f"evaluate.{a}" if a.startswith("model_uri=") else a for a in args]
    if module == "predict":
        from raymlops.predict import SHORT_KEYS

        args = [f"predict.{a}" if a.startswith(SHORT_KEYS) else a for a in args]
        return args if any(a.startswith(("data=", "+experiment=")) for a in args) else ["data=imagefolder", *args]
    return args


# sorted whole: every pytest-xdist worker must collect the same ids in the same order
RAYMLOPS_LINES = sorted({(b.where, w) for b in ALL_BLOCKS for w in b.commands if _module(w) and not _runs_here(w)})


@pytest.mark.parametrize(("where", "words"), RAYMLOPS_LINES, ids=[f"{w}:{' '.join(c[2:4])}" for w, c in RAYMLOPS_LINES])
def test_every_raymlops_command_matches_the_code(where: str, words: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    module, args = _module(words), list(words[3:])
    assert module in HYDRA | ARGPARSE, f"{where}: python -m raymlops.{module} is no entry point"
    if module in HYDRA:
        from raymlops.config import compose

        monkeypatch.chdir(REPO)
        compose(_hydra_argv(module, args))  # a UserError names the stale key, group or experiment
        return
    parser = docs_reference.parser_of(module)
    try:
        parser.parse_args(args)
    except SystemExit as err:
        pytest.fail(f"{where}: python -m raymlops.{module} {' '.join(args)} is refused by its parser (exit {err.code})")


def _targets() -> set[str]:
    return set(re.findall(r"^([a-zA-Z_-]+):", (REPO / "Makefile").read_text(), re.M))


def test_every_make_target_in_the_docs_exists() -> None:
    targets = _targets()
    wrong = [
        f"{b}: make {word}"
        for b in ALL_BLOCKS
        for w in b.commands
        if w[:1] == ("make",)
        for word in w[1:]
        if "=" not in word and word not in targets
    ]
    assert not wrong, wrong


def test_cheap_commands_run() -> None:
    """What the docs show without a marker: `make help` and each argparse entry point's --help, executed."""
    shown = {w for b in ALL_BLOCKS for w in b.commands if _runs_here(w)}
    assert ("make", "help") in shown
    out = subprocess.run(["make", "help"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for target in ("docs", "docs-serve", "docs-reference", "docs-screenshots", "quickstart", "test"):
        assert re.search(rf"^\s+{target}\s", out, re.M), f"make help lists no {target}"
    for module in ARGPARSE:
        done = subprocess.run(
            [sys.executable, "-m", f"raymlops.{module}", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0 and "usage: python -m raymlops." in done.stdout, done.stderr[-2000:]


def test_readme_is_a_users_guide() -> None:
    """README.md: short, the two commands first, no dated measurements or commit hashes."""
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    first = [w for b in blocks(REPO / "README.md")[:1] for w in b.commands]
    assert first[:2] == [("make", "quickstart"), ("make", "test")], first
    prose = re.sub(r"```.*?```", "", text, flags=re.S)  # console excerpts may carry a search's timestamped name
    assert not re.findall(r"\b20\d\d-\d\d-\d\d\b", prose), "dates belong in docs/benchmarks.md"
    assert not re.findall(r"\bat [0-9a-f]{7,40}\b|\bcommit [0-9a-f]{7,40}\b", prose), "commit hashes belong in docs/benchmarks.md"
