"""The public names of ``vitgraph`` (DESIGN.md's contract) resolve to what they name, also
after every submodule has been imported (a submodule called like a public function would
otherwise shadow it: ``vitgraph.diff`` the function, not the module)."""

from __future__ import annotations

import importlib
import pkgutil
import types

import vitgraph


def test_every_public_name_is_the_function_or_class_after_all_submodules_are_imported():
    for info in pkgutil.walk_packages(vitgraph.__path__, "vitgraph."):
        importlib.import_module(info.name)
    for name in vitgraph.__all__:
        value = getattr(vitgraph, name)
        assert callable(value), name
        if name != "train":  # the training package is callable: vitgraph.train(...)
            assert not isinstance(value, types.ModuleType), name


def test_the_public_names_are_designs_contract():
    assert set(vitgraph.__all__) == {
        "Graph",
        "SpecError",
        "WeightsError",
        "attention_from_conv",
        "build",
        "create_model",
        "diff",
        "from_hf",
        "from_timm",
        "load",
        "load_weights",
        "optimize",
        "save_weights",
        "train",
    }
