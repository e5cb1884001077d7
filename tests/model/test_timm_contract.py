"""timm's model checks (its tests/test_models.py: forward, backward with 42 classes,
default-cfg consistency, forward_intermediates, features_only, torchvision's fx feature
extraction forward and backward) on vitgraph's twins of timm models, driven by the family
table (``tests/model/timm_contract.py`` holds the checks and says how the twins are made).
Skipped: test_model_forward_torchscript (TorchScript is refused, with one message naming
torch.export: tests/model/test_api.py).

``make test`` runs every check on one reduced twin per kind of model (a plain ViT with
register tokens, CaiT's class attention, Swin's NHWC stages, PiT's distilled pooling
stages, LeViT's BatchNorm stages); the ``slow`` sweep runs them on every timm model of
every family the table checks against timm (108 names, reduced), and on twins of timm
models created with ``dynamic_img_size`` (and ``dynamic_img_pad``) at timm's per-check
sizes (224/518 declared; 384, 128 and 96 px run).
"""

from __future__ import annotations

import warnings

import pytest
import torch

from tests.model.timm_contract import CHECKS, DYNAMIC, timm_names

FAST = (
    "vit_small_patch14_reg4_dinov2",
    "cait_xxs24_224",
    "swin_tiny_patch4_window7_224",
    "pit_ti_distilled_224",
    "levit_128s",
)


@pytest.fixture(autouse=True)
def _quiet_and_one_thread():
    """The twins are tiny: one thread is faster on a shared machine; timm warns about
    the reduced sizes it is asked for."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize("name", FAST)
def test_timms_model_check_passes_on_the_twin(name, check):
    pytest.importorskip("timm")
    CHECKS[check](name)


@pytest.mark.slow
@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize("name", [n for n in timm_names() if n not in FAST])
def test_timms_model_check_passes_on_every_twin(name, check):
    pytest.importorskip("timm")
    CHECKS[check](name)


@pytest.mark.slow
@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize("name", list(DYNAMIC))
def test_timms_model_check_passes_on_a_dynamic_size_twin_at_timms_sizes(name, check):
    pytest.importorskip("timm")
    CHECKS[check](name)
