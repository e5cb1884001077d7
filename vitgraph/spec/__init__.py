"""Phases 1-3 of the pipeline: parse (``parse``), schema (``document``), and expand
(``expand``: args, variants, overrides, ``repeat:``, composites), with the catalog of
shipped specs and block kinds (``catalog``), the edit verbs as transforms of source data
(``edits``), ``extends:`` + ``edits:`` (``extends``) and writing a spec back
(``serialize``). Every problem is a ``SpecError`` located at ``file:line:col``."""
