"""vitgraph's block library: one file per block family, composite blocks as YAML.

Every module here is imported by ``vitgraph.registry.registry()``; each block kind
registers itself with ``@register``.
"""
