"""``vitgraph graph``: Mermaid and DOT pictures, shapes on the edges, SVG via Graphviz."""

from __future__ import annotations

import shutil

import pytest

import vitgraph
from vitgraph import pictures
from vitgraph.cli import main


def test_mermaid_collapses_the_repeat_group_and_labels_edges_with_shapes():
    text = pictures.mermaid(vitgraph.load("deit_s_distilled"))
    assert text.startswith("flowchart TD\n")
    assert '  n5["blocks ×12<br/><small>encoder_layer · 21,293,568 params</small>"]' in text
    assert '  n3 -->|"198×384"| n4' in text  # dist_token -> pos_embed: 198 tokens
    assert '  n6 -->|"198×384"| n9' in text  # norm -> head_dist (its second input)
    assert text.count("-->") == 11


def test_expand_draws_every_node():
    graph = vitgraph.load("vit_ti_16", overrides={"depth": 2})
    collapsed = pictures.layout(graph)[0]
    expanded = pictures.layout(graph, expand=True)[0]
    assert [b.id for b in collapsed][:6] == [
        "input",
        "patch_embed",
        "cls_token",
        "pos_embed",
        "pos_drop",
        "blocks",
    ]
    assert len(expanded) == len(graph.nodes) + 2  # + input and output
    assert sum(b.params for b in expanded) == graph.summary().params


def test_dot_is_a_digraph_with_the_same_boxes():
    text = pictures.dot(vitgraph.load("vit_s_16"))
    assert text.startswith('digraph "vit / vit_s_16" {')
    assert '  "blocks" [label="blocks ×12\\nencoder_layer · 21,293,568 params"];' in text
    assert '  "pool" -> "head" [label="384"];' in text


def test_svg_without_graphviz_says_how_to_get_it(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt-get install graphviz"):
        pictures.render(vitgraph.load("vit_ti_16"), "svg")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_svg_through_graphviz(tmp_path):
    out = tmp_path / "vit.svg"
    assert main(["graph", "vit_ti_16", "--format", "svg", "--out", str(out)]) == 0
    text = out.read_text()
    assert "<svg" in text and "blocks ×12" in text and "197×192" in text  # collapsed, shapes


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_png_through_graphviz(tmp_path):
    out = tmp_path / "vit.png"
    assert main(["graph", "vit_ti_16", "--format", "png", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_prints_mermaid_by_default(capsys):
    assert main(["graph", "vit_ti_16", "--set", "depth=2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("flowchart TD") and "blocks ×2" in out
