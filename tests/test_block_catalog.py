"""The shipped block catalog (vitgraph/block_catalog.json) is current, and the commands
that need no model answer from it without importing torch."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from vitgraph.block_catalog import (
    CATALOG_PATH,
    REFERENCE_PATH,
    catalog_text,
    first_sentence,
    reference_markdown,
)


def test_committed_block_catalog_matches_the_registry():
    assert CATALOG_PATH.read_text(encoding="utf-8") == catalog_text(), (
        "regenerate it: vitgraph schema --write"
    )


def test_the_site_s_block_reference_matches_the_registry():
    assert REFERENCE_PATH.read_text(encoding="utf-8") == reference_markdown(), (
        "regenerate it: vitgraph schema --write"
    )


def test_the_block_reference_has_every_kind_with_its_params_defaults_and_paper_section():
    text = REFERENCE_PATH.read_text(encoding="utf-8")
    rows = json.loads(CATALOG_PATH.read_text(encoding="utf-8"))
    assert re.findall(r"^### (\S+)$", text, re.M) == [
        *(r["kind"] for r in rows if not r["composite"]),
        *(r["kind"] for r in rows if r["composite"]),
    ]
    swin = text.partition("### swin_layer\n")[2].partition("\n### ")[0]
    assert "**Paper:** Swin Transformer block (arXiv:2103.14030 §3.2 Eq. 3)" in swin
    assert "| `window` | int > 0 \\| null | 7 | " in swin
    assert "| `heads` | int > 0 \\| null | required | Attention heads. |" in swin
    mhsa = text.partition("### mhsa\n")[2].partition("\n### ")[0]
    assert "| `heads` | int > 0 | required | Number of heads. |" in mhsa
    # a kind whose own doc cites no paper takes its family module's citation, so marked
    assert "**Paper:** (its family, `vitgraph.blocks.attention`)" in mhsa


def test_every_kind_of_the_catalog_has_its_params_with_docs():
    rows = json.loads(CATALOG_PATH.read_text(encoding="utf-8"))
    mhsa = next(r for r in rows if r["kind"] == "mhsa")
    heads = next(p for p in mhsa["params"] if p["name"] == "heads")
    assert heads == {
        "name": "heads",
        "type": "int > 0",  # PosInt: its bound, which pydantic keeps in the field's metadata
        "required": True,
        "default": None,
        "doc": "Number of heads.",
    }
    assert mhsa["role"] == "attention" and not mhsa["composite"]


@pytest.mark.parametrize(
    "command",
    [
        ["--help"],
        ["list"],
        ["list", "blocks"],
        ["schema"],
        ["list", "--json"],
        ["list", "blocks", "--json"],
        ["show", "mhsa"],
    ],
)
def test_commands_that_need_no_model_do_not_import_torch(command):
    code = (
        "import sys\n"
        "from vitgraph.cli import main\n"
        "try:\n"
        f"    main({command!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "sys.stdout.flush()\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO TORCH', file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stderr.strip().splitlines()[-1] == "NO TORCH", done.stderr


def test_a_first_sentence_is_never_cut_after_an_abbreviation():
    doc = "Self-attention (Vaswani et al. 2017; ViT §3.1 Eq. 2). One fused qkv projection."
    assert first_sentence(doc) == "Self-attention (Vaswani et al. 2017; ViT §3.1 Eq. 2)."


def test_list_blocks_shows_brackets_in_docs():
    done = subprocess.run(
        [sys.executable, "-m", "vitgraph.cli", "list", "blocks"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "400", "PATH": ""},
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(CATALOG_PATH.read_text(encoding="utf-8"))
    bracketed = [r for r in rows if "[" in first_sentence(r["doc"])]
    assert len(bracketed) >= 2  # resize_image's [height, width], class_attention_layer's
    for row in bracketed:  # rich would eat "[h, w]" as markup without escaping
        assert first_sentence(row["doc"]).split("[")[1].split("]")[0] in done.stdout


def test_show_prints_a_kind_whole_with_each_param_type_default_and_meaning(capsys):
    from vitgraph.cli import main

    assert main(["show", "encoder_layer"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("encoder_layer (composite; vitgraph/blocks/encoder_layer.yaml)\n")
    assert "null leaves them out." in out  # the doc's last sentence: whole
    assert "  mlp_ratio         float > 0 | null, default 4.0\n" in out
    assert "MLP hidden width over the token width." in out
    assert main(["show", "encodr_layer"]) == 2
    assert "no block kind 'encodr_layer' (did you mean 'encoder_layer'?)" in capsys.readouterr().err
