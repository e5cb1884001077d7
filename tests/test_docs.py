"""The documentation site's pages run (#25 item 3): on every page of mkdocs.yml's nav, the
python blocks in order (one namespace, from an empty directory), each `$ vitgraph ...`
line of a console block through the CLI, each yaml block that is a whole spec through
the loader (a fragment must parse). The tutorial and the training guide run in their own
tests (tests/test_tutorial.py, tests/test_training_guide.py); a block the tests do not
run says so right above it, visibly, with its reason (``*Not run by the tests: ...*``).
``make docs`` builds the site and checks it in a browser (tests/docs_site.py)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from vitgraph.cli import main
from vitgraph.spec.catalog import registry
from vitgraph.spec.composites import load_composite

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
#: pages whose code runs in a test of its own
OWN_TESTS = {"tutorial.md": "tests/test_tutorial.py", "training.md": "tests/test_training_guide.py"}
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
NOT_RUN = re.compile(r"\*Not run by the tests[^*]*: [^*]+\.\*\s*$")


def nav() -> list[str]:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    return [next(iter(entry.values())) for entry in config["nav"]]


def blocks(page: str) -> list[tuple[str, str, bool]]:
    """(language, code, run) of each fenced block of ``page``."""
    text = (DOCS / page).read_text(encoding="utf-8")
    out = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rpartition("\n")[2]
        out.append((match.group(1), match.group(2), not NOT_RUN.search(before)))
    return out


def test_every_markdown_page_is_in_the_nav_and_the_nav_has_each_part_of_the_site():
    pages = nav()
    assert sorted(pages) == sorted(p.name for p in DOCS.glob("*.md"))
    for part in (
        "getting_started.md",
        "spec_language.md",
        "blocks.md",
        "composites.md",
        "editing.md",
        "training.md",
        "export.md",
        "interop.md",
        "detection.md",
        "api.md",
    ):
        assert part in pages


def test_every_code_block_runs_or_says_why_not():
    languages = {"python", "console", "yaml"}
    for page in nav():
        for language, code, run in blocks(page):
            assert not run or language in languages, f"{page}: a ```{language} block\n{code}"


def test_the_readme_links_nothing_outside_the_repository():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert not re.findall(r"https?://|\]\(\.\./|`\.\./", readme)
    for target in re.findall(r"\]\(([^)#]+)", readme):
        assert (ROOT / target).exists(), target


@pytest.fixture
def registry_as_it_was():
    """A page may register a kind of its own (composites.md): it is gone afterwards."""
    reg = registry()
    before = (dict(reg.primitives), dict(reg.composites))
    yield
    reg.primitives.clear()
    reg.primitives.update(before[0])
    reg.composites.clear()
    reg.composites.update(before[1])


#: pages whose blocks take tens of seconds (ONNX and torch.export of four models; timm
#: and transformers imported, three references converted): in the slow suite
SLOW = {"export.md", "interop.md"}


@pytest.mark.parametrize(
    "page",
    [
        pytest.param(p, marks=[pytest.mark.slow] if p in SLOW else [])
        for p in nav()
        if p not in OWN_TESTS and any(run for *_, run in blocks(p))
    ],
)
def test_the_page_s_code_blocks_run_in_order(page, tmp_path, monkeypatch, registry_as_it_was):
    if page == "interop.md":
        pytest.importorskip("timm")
        pytest.importorskip("transformers")
    import vitgraph

    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": page}
    ran = 0
    for n, (language, code, run) in enumerate(blocks(page)):
        if not run:
            continue
        ran += 1
        if language == "python":
            exec(compile(code, f"{page}[block {n}]", "exec"), namespace)
        elif language == "console":
            for line in code.splitlines():
                if line.startswith("$ vitgraph "):
                    assert main(shlex.split(line, comments=True)[2:]) == 0, line
        elif re.search(r"^composite: ", code, re.M):
            load_composite(code, f"{page}[block {n}].yaml")  # a whole composite reads
        elif re.search(r"^vitgraph: 1$", code, re.M):
            vitgraph.load(f"{page}[block {n}].yaml", text=code)  # a whole spec validates
        else:
            assert yaml.safe_load(code), f"{page}[block {n}] does not parse"
    assert ran
