"""Training vitgraph models: data, objectives, the loop, checkpoints and DDP.

``vitgraph.train(spec, ...)`` (and ``vitgraph train SPEC``) trains a spec on an image
folder or scikit-learn's digits; see :mod:`vitgraph.train.loop`.
"""
