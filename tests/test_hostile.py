"""Hostile specs get a located refusal, quickly and without side effects (issue #9).

One test per hostile class: YAML tags that would run or import code, other non-standard
tags, alias bombs, exploding expressions, deep nesting, huge repeats, overrides that
would allocate billions of parameters, ``extends:`` outside the allowed roots or in a
cycle, composite blocks that include themselves. Each asserts the exact message at
file:line:col and a wall-time bound (the machine is shared, so bounds are generous
multiples of the time taken on an idle one).
"""

from __future__ import annotations

import re
import sys
import time
import tokenize
from collections.abc import Iterator
from pathlib import Path

import pytest

import vitgraph
from benchmarks.harness import PeakMemory
from tests.helpers import line_of
from vitgraph import SpecError
from vitgraph.cli import main
from vitgraph.spec.catalog import registry, shipped_specs
from vitgraph.spec.composites import load_composite

FAST = 1.0  # seconds: a refusal costs a parse and a few checks, never the work itself

HEAD = "vitgraph: 1\nname: tiny\ninput: {channels: 3, size: 32}\n"


def tiny(dim: str) -> str:
    """A three-node spec whose patch_embed ``dim`` (line 5, column 57) is ``dim``."""
    return (
        HEAD + "graph:\n"
        f"  - {{id: patch_embed, kind: patch_embed, patch: 8, dim: {dim}}}\n"
        "  - {id: pool, kind: mean_pool}\n"
        "  - {id: head, kind: linear_head, classes: 10}\n"
    )


def refusal(tmp_path: Path, text: str, name: str = "spec.yaml") -> tuple[str, float]:
    """(message with the directory as {dir}, seconds) of loading ``text`` as a file."""
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    start = time.perf_counter()
    with pytest.raises(SpecError) as info:
        vitgraph.load(path).summary()
    seconds = time.perf_counter() - start
    for problem in info.value.problems:  # every problem located in a file, at a line
        assert problem.location.file and problem.location.line > 0
    return str(info.value).replace(str(tmp_path), "{dir}"), seconds


def files_in(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


# ------------------------------------------------------------------ YAML tags


def test_python_object_apply_tag_is_refused_without_running_the_command(tmp_path):
    marker = tmp_path / "pwned"
    message, seconds = refusal(
        tmp_path, tiny(f'!!python/object/apply:os.system ["touch {marker}"]')
    )
    assert message == (
        "{dir}/spec.yaml:5:57: graph.0.dim: YAML tag "
        "'!!python/object/apply:os.system' is not allowed\n"
        "  hint: specs are plain data: remove the tag"
    )
    assert seconds < FAST
    assert not marker.exists() and files_in(tmp_path) == {"spec.yaml"}


def test_python_name_tag_is_refused(tmp_path):
    message, seconds = refusal(tmp_path, tiny("!!python/name:os.system ''"))
    assert message == (
        "{dir}/spec.yaml:5:57: graph.0.dim: YAML tag '!!python/name:os.system' "
        "is not allowed\n  hint: specs are plain data: remove the tag"
    )
    assert seconds < FAST


@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object:bogus_vitgraph_mod.Thing {}",
        "!!python/module:bogus_vitgraph_mod ''",
        "!!python/object/new:bogus_vitgraph_mod.Thing []",
    ],
)
def test_python_tags_naming_a_module_import_nothing(tmp_path, tag):
    before = set(sys.modules)
    message, seconds = refusal(tmp_path, tiny(tag))
    name = tag.split(" ")[0]
    assert message == (
        f"{{dir}}/spec.yaml:5:57: graph.0.dim: YAML tag '{name}' is not "
        "allowed\n  hint: specs are plain data: remove the tag"
    )
    assert seconds < FAST
    assert "bogus_vitgraph_mod" not in sys.modules
    assert not {m for m in set(sys.modules) - before if "bogus" in m}


def test_non_standard_tags_are_refused_each_at_its_value(tmp_path):
    text = tiny("!foo 64").replace("classes: 10", "classes: !!binary aGk=")
    message, seconds = refusal(tmp_path, text)
    assert message == (
        "{dir}/spec.yaml:5:57: graph.0.dim: YAML tag '!foo' is not allowed\n"
        "  hint: specs are plain data: remove the tag\n"
        "{dir}/spec.yaml:7:44: graph.2.classes: YAML tag '!!binary' is not "
        "allowed\n  hint: specs are plain data: remove the tag"
    )
    assert seconds < FAST


# ------------------------------------------------------------- size bombs


def test_billion_laughs_alias_bomb_nested_nine_levels_is_refused_unexpanded(tmp_path):
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 9):
        refs = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"a{level}: &a{level} [{refs}]")
    message, seconds = refusal(tmp_path, HEAD + "\n".join(lines) + "\ngraph: []\n")
    # 10^9 strings plus the lists that hold them; the culprit is the last, largest level
    assert message == (
        "{dir}/spec.yaml:12:5: the document expands to 1,234,567,921 values "
        "through YAML aliases (limit 200,000)\n"
        "  hint: avoid deeply nested YAML aliases"
    )
    assert seconds < FAST


@pytest.mark.parametrize(
    ("text", "col", "message"),
    [
        ('"${10**10**10}"', 57, "exponent 10000000000 is too large (limit 64)"),
        ("\"${'a' * 10**9}\"", 57, "repetition makes 1000000000 elements (limit 10000)"),
        # 10^8 elements through shared inner lists: the size counts nested elements
        (
            '"${len(str([[1] * 10000] * 10000))}"',
            57,
            "repetition makes 100000000 elements (limit 10000)",
        ),
        ('"${' + "9" * 390 + '}"', 57, "result of 390 digits is too large (limit 1e+15)"),
        (
            '"${' + "(" * 150 + "1" + ")" * 150 + ' * 10**16}"',
            57,
            "10**16 is too large (limit 1e+15)",
        ),
        ('"${' + "-" * 391 + '1}"', 57, "input should be greater than 0 (got -1)"),
        ('"${(-8) ** 0.5}"', 57, "result is not a real number"),
        ("\"${int(float('inf'))}\"", 57, "result is not a finite number"),
        ('"${' + "1 + " * 200 + '1}"', 57, "expression is 801 characters long (limit 400)"),
    ],
)
def test_expressions_built_to_explode_are_refused_before_evaluating(tmp_path, text, col, message):
    got, seconds = refusal(tmp_path, tiny(text))
    assert got == f"{{dir}}/spec.yaml:5:{col}: patch_embed.dim: {message}"
    assert seconds < FAST


@pytest.mark.parametrize(("opening", "col"), [("[", 71), ("{a: ", 260)])
def test_yaml_nested_thousands_deep_is_refused_while_scanning(tmp_path, opening, col):
    closing = "]" if opening == "[" else "}"
    text = HEAD + "deep: " + opening * 5000 + "1" + closing * 5000 + "\ngraph: []\n"
    message, seconds = refusal(tmp_path, text)
    assert message == (
        f"{{dir}}/spec.yaml:4:{col}: nesting deeper than 64 levels\n"
        "  hint: specs are shallow: a few levels of mappings and lists"
    )
    assert seconds < FAST


def test_a_huge_spec_file_is_refused_before_parsing(tmp_path):
    text = HEAD + "junk: [" + ", ".join(["1"] * 100_000) + "]\ngraph: []\n"
    message, seconds = refusal(tmp_path, text)
    assert message == (
        "{dir}/spec.yaml:1:1: the spec is longer than the limit of 131,072 "
        "characters\n  hint: a spec lists blocks, not data"
    )
    assert seconds < FAST


def test_a_device_file_as_spec_is_read_with_a_bound():
    start = time.perf_counter()
    with pytest.raises(SpecError) as info:
        vitgraph.load("/dev/zero", text=None)
    assert time.perf_counter() - start < FAST
    assert str(info.value).startswith("/dev/zero")


def test_repeat_of_a_million_is_refused_before_expanding(tmp_path):
    text = (
        HEAD + "graph:\n  - {id: patch_embed, kind: patch_embed, patch: 8, dim: 64}\n"
        "  - {id: blocks, kind: encoder_layer, repeat: 1000000, heads: 4}\n"
        "  - {id: pool, kind: mean_pool}\n  - {id: head, kind: linear_head, classes: 10}\n"
    )
    message, seconds = refusal(tmp_path, text)
    assert message == (
        "{dir}/spec.yaml:6:47: blocks.repeat: repeat must be an integer from 1 "
        "to 1000 (got 1000000)"
    )
    assert seconds < FAST


# ---------------------------------------------------------- billions of params

HUGE = {"dim": 16384, "heads": 16}  # ViT-B/16 at width 16384: 38.7 billion parameters
#: the graph's first entry, where a size problem is located
FIRST = f"vit.yaml:{line_of(shipped_specs()['vit'], '- {id: patch_embed')}:3"
HUGE_MESSAGE = (
    f"{FIRST}: vit_b_16: the model would have 38,689,522,664 parameters, "
    "more than the limit of 2,000,000,000\n"
    "  hint: pass allow_large=True (CLI: --allow-large) if you really mean it"
)


def test_an_override_to_billions_of_params_is_refused_before_any_allocation():
    graph = vitgraph.load("vit_b_16", overrides=HUGE)
    counter = PeakMemory()
    start = time.perf_counter()
    with counter, pytest.raises(SpecError) as info:
        graph.build()
    assert time.perf_counter() - start < 2 * FAST
    assert counter.peak == 0  # counted on the meta device: not one byte allocated
    assert str(info.value).endswith(HUGE_MESSAGE)
    with pytest.raises(SpecError, match="38,689,522,664 parameters"):
        vitgraph.build("vit_b_16", overrides=HUGE)


def test_cli_build_refuses_billions_and_allow_large_lifts_it(capsys):
    args = ["build", "vit_b_16", "--set", "dim=16384", "--set", "heads=16", "--device", "meta"]
    start = time.perf_counter()
    assert main(args) == 2
    assert time.perf_counter() - start < 2 * FAST
    assert capsys.readouterr().err.rstrip("\n").endswith(HUGE_MESSAGE)
    assert main([*args, "--allow-large", "--json"]) == 0  # on meta: nothing allocated
    assert '"params": 38689522664' in capsys.readouterr().out


def test_allow_large_lifts_the_limit_from_python(monkeypatch):
    monkeypatch.setattr("vitgraph.graph.MAX_PARAMS", 100_000)
    graph = vitgraph.load("vit_ti_16", overrides={"depth": 1, "input.size": 32})
    with pytest.raises(SpecError) as info:
        graph.build()
    assert str(info.value).endswith(
        f"{FIRST}: vit_ti_16: the model would have 787,048 "
        "parameters, "
        "more than the limit of 100,000\n  hint: pass "
        "allow_large=True (CLI: --allow-large) if you really "
        "mean it"
    )
    model = graph.build(allow_large=True)
    assert sum(p.numel() for p in model.parameters()) == 787_048


# ------------------------------------------------------------------- extends


def test_extends_an_absolute_path_outside_the_roots_is_refused(tmp_path):
    message, seconds = refusal(tmp_path, "vitgraph: 1\nextends: /etc/passwd.yaml\nname: a\n")
    assert message == (
        "{dir}/spec.yaml:2:10: extends: '/etc/passwd.yaml' is outside the "
        "spec's own directory and the shipped specs\n"
        "  hint: copy the base spec next to this one"
    )
    assert seconds < FAST


def test_extends_a_relative_path_climbing_out_is_refused(tmp_path):
    message, seconds = refusal(
        tmp_path, "vitgraph: 1\nextends: ../../etc/passwd\nname: a\n", "a/b/spec.yaml"
    )
    assert message == (
        "{dir}/a/b/spec.yaml:2:10: extends: no shipped spec named "
        "'../../etc/passwd'\n  hint: name a shipped spec or a .yaml file"
    )
    message, _ = refusal(
        tmp_path, "vitgraph: 1\nextends: ../../base.yaml\nname: a\n", "a/b/spec.yaml"
    )
    assert message == (
        "{dir}/a/b/spec.yaml:2:10: extends: '../../base.yaml' is outside the "
        "spec's own directory and the shipped specs\n"
        "  hint: copy the base spec next to this one"
    )


def test_extends_through_a_symlink_that_escapes_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "base.yaml").write_text("vitgraph: 1\nextends: vit\nname: base\n")
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "base.yaml").symlink_to(outside / "base.yaml")
    message, seconds = refusal(
        tmp_path, "vitgraph: 1\nextends: base.yaml\nname: a\n", "specs/spec.yaml"
    )
    assert message == (
        "{dir}/specs/spec.yaml:2:10: extends: 'base.yaml' is outside the "
        "spec's own directory and the shipped specs\n"
        "  hint: copy the base spec next to this one"
    )
    assert seconds < FAST


def test_an_extends_cycle_is_reported_as_the_cycle(tmp_path):
    (tmp_path / "b.yaml").write_text("vitgraph: 1\nextends: a.yaml\nname: b\n")
    message, seconds = refusal(tmp_path, "vitgraph: 1\nextends: b.yaml\nname: a\n", "a.yaml")
    assert message == (
        "{dir}/b.yaml:2:10: extends: specs extend each other in a cycle: a.yaml -> b.yaml -> a.yaml"
    )
    assert seconds < FAST
    message, _ = refusal(tmp_path, "vitgraph: 1\nextends: self.yaml\nname: s\n", "self.yaml")
    assert message == (
        "{dir}/self.yaml:2:10: extends: specs extend each other in a cycle: self.yaml -> self.yaml"
    )


# ---------------------------------------------------------------- composites


@pytest.fixture
def composites(tmp_path) -> Iterator[Path]:
    """Register composites that include themselves (directly, and through each other),
    then take them out of the registry again."""
    reg = registry()
    texts = {"selfish": "selfish", "ping": "pong", "pong": "ping"}
    for kind, inner in texts.items():
        file = tmp_path / f"{kind}.yaml"
        file.write_text(
            f"composite: {kind}\nparams: {{}}\ngraph:\n  - {{id: inner, kind: {inner}}}\n"
        )
        reg.add_composite(load_composite(file.read_text(), str(file)))
    yield tmp_path
    for kind in texts:
        reg.composites.pop(kind)
        reg._origins.pop(kind)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("selfish", "blk.inner: composite block includes itself: selfish -> selfish"),
        ("ping", "blk.inner.inner: composite block includes itself: ping -> pong -> ping"),
    ],
)
def test_a_composite_that_includes_itself_is_reported_with_the_chain(composites, kind, message):
    text = (
        HEAD + "graph:\n  - {id: patch_embed, kind: patch_embed, patch: 8, dim: 64}\n"
        f"  - {{id: blk, kind: {kind}}}\n"
    )
    got, seconds = refusal(composites, text)
    assert got == f"{{dir}}/spec.yaml:6:21: {message}"
    assert seconds < FAST


# ------------------------------------------------------------------- no eval


#: the one ``exec`` in the core: torch.fx's generated source of our own fx graph (whose
#: targets are node ids, restricted to letters, digits, '_' and '-', see the next test)
FX_CODEGEN = "model/segments.py: exec(compile(code.src,,),namespace)"


def code_lines(file: Path) -> dict[int, str]:
    """Each line's code with string literals emptied and comments dropped."""
    lines: dict[int, list[str]] = {}
    with file.open("rb") as handle:
        for tok in tokenize.tokenize(handle.readline):
            if tok.type in (
                tokenize.COMMENT,
                tokenize.ENCODING,
                tokenize.NL,
                tokenize.NEWLINE,
                tokenize.INDENT,
                tokenize.DEDENT,
            ):
                continue
            text = (
                "" if tok.type == tokenize.STRING or (tok.type >= tokenize.N_TOKENS) else tok.string
            )
            lines.setdefault(tok.start[0], []).append(text)
    return {n: "".join(parts) for n, parts in lines.items()}


def test_the_core_never_unpickles_or_evaluates_spec_text():
    """No pickle, no ``torch.load`` without ``weights_only=True``, no ``eval``/``exec`` of
    anything but fx's generated code, no unsafe YAML loader."""
    root = Path(vitgraph.__file__).parent
    offenders = []
    for file in sorted(root.rglob("*.py")):
        source = file.read_text()
        for code in code_lines(file).values():
            where = f"{file.relative_to(root)}: {code}"
            if re.search(r"\b(pickle|cPickle|dill|marshal|shelve)\b", code):
                offenders.append(where)
            if "torch.load(" in code and "weights_only=True" not in code:
                offenders.append(where)
            if re.search(r"(?<![.\w])(eval|exec)\(", code) and where != FX_CODEGEN:
                offenders.append(where)
            if re.search(
                r"yaml\.(load|unsafe_load|full_load|load_all)\(|UnsafeLoader|"
                r"FullLoader|yaml\.Loader\b",
                code,
            ):
                offenders.append(where)
        assert "__import__" not in source, file
    assert offenders == []
    # the scan sees code (and only code): weights/format.py's one torch.load, safely called
    loads = [c for c in code_lines(root / "weights" / "format.py").values() if "torch.load(" in c]
    assert loads == ["loaded=torch.load(path,map_location=,weights_only=True)"]


def test_a_node_id_that_would_be_code_in_the_generated_forward_is_refused(tmp_path):
    """torch.fx writes a non-identifier submodule name as ``getattr(self, "<id>")``; an id
    with a quote in it would run as code in ``forward``."""
    marker = tmp_path / "pwned"
    ident = (
        r'x",getattr(__import__("os"),"system")("touch\x20'
        + str(marker).replace("/", r"\x2f")
        + r'"),"'
    )
    text = tiny("16").replace("id: patch_embed,", f"id: '{ident}',")
    message, seconds = refusal(tmp_path, text)
    assert message == (
        f"{{dir}}/spec.yaml:5:10: graph[0]: id {ident[:80]!r} must be a "
        "non-empty name of letters, digits, '_' and '-'\n  hint: for "
        "example: blocks, embed, head_dist"
    )
    assert seconds < FAST
    graph = vitgraph.load(tmp_path / "ok.yaml", text=tiny("16"))
    with pytest.raises(SpecError, match="must be a non-empty name of letters"):
        graph.rename("head", 'head",print("x"),"')
    assert not marker.exists()


def test_no_spec_error_path_leaves_files_behind(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = files_in(tmp_path)
    for text in (
        tiny("!!python/object/apply:os.system ['true']"),
        tiny('"${10**10**10}"'),
        HEAD + "graph: []\n",
    ):
        with pytest.raises(SpecError):
            vitgraph.load("x.yaml", text=text).summary()
    assert files_in(tmp_path) == before
