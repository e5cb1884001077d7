"""Training recipes: YAML files of training settings, shipped as ``vitgraph.recipes``."""
