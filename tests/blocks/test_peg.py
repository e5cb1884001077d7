"""CPVT (arXiv:2102.10882): the PEG block and the cpvt specs (the paper's MACs:
tests/families.py).

Counts are derived from DeiT's (the same graph minus the position table, plus one PEG,
minus the class token for the GAP twins), and the PEG computes timm's ``PosConv``.
"""

from __future__ import annotations

import pytest
import torch

import vitgraph
from tests.families import FAMILIES
from tests.helpers import redraw_

WIDTH = {"ti": 192, "s": 384, "b": 768}


@pytest.mark.parametrize("variant", FAMILIES["cpvt"].variants)
def test_cpvt_count_is_deit_minus_the_position_table_plus_one_peg(variant):
    size = variant.split("_")[1]
    dim = WIDTH[size]
    deit = vitgraph.load(f"deit_{size}").summary().params
    table = (14 * 14 + 1) * dim
    peg = dim * 3 * 3 + dim  # depthwise 3x3 weights + bias
    cls = dim if variant.endswith("_gap") else 0
    assert vitgraph.load(variant).summary().params == deit - table + peg - cls


def test_peg_sits_after_the_first_layer_and_no_position_table_exists():
    model = vitgraph.load("cpvt_ti", overrides={"depth": 3, "image_size": 32}).build()
    keys = list(model.state_dict())
    assert "pos_embed" not in keys
    assert "pos_block.proj.0.weight" in keys and "pos_block.proj.0.bias" in keys
    code = model.code
    assert code.index("pos_block = self.pos_block(blocks_0_") < code.index("blocks_1_norm1")


def test_peg_equals_timm_posconv_on_a_non_square_grid_and_skips_the_class_token():
    twins = pytest.importorskip("timm.models.twins")
    reference = redraw_(twins.PosConv(32, 32)).eval()
    spec = {
        "vitgraph": 1,
        "name": "peg",
        "input": {"channels": 3, "size": [24, 40]},
        "graph": [
            {"id": "embed", "kind": "patch_embed", "patch": 8, "dim": 32},
            {"id": "cls", "kind": "cls_token"},
            {"id": "pos_block", "kind": "peg"},
        ],
    }
    import yaml

    model = vitgraph.load("<peg>", text=yaml.safe_dump(spec)).build()
    model.get_submodule("pos_block").load_state_dict(reference.state_dict())
    x = torch.randn(2, 3, 24, 40)
    with torch.no_grad():
        tokens = model.get_submodule("embed")(x)  # (2, 15, 32) on a 3x5 grid
        ours = model(x)
        expected = reference(tokens, (3, 5))
    assert torch.equal(ours[:, 0], model.get_parameter("cls").expand(2, 1, 32)[:, 0])
    torch.testing.assert_close(ours[:, 1:], expected, rtol=0, atol=1e-5)
