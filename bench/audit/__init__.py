"""``leukobench audit``: find duplicates, acquisition shortcuts, source confounding and split
leakage in a dataset before anyone trains on it (docs/audit.md).

Modules: ``properties`` (acquisition properties per file, cached by digest),
``duplicates`` (exact, perceptual and feature near-duplicates), ``evaluation``
(grouped CV + cluster-bootstrap CIs), ``shortcut`` (the acquisition test),
``source_check`` (``--against``), ``leakage`` (leaky vs grouped Model 1),
``backbone_features`` (cached features), ``card`` (report card), ``pipeline``
(``run_audit``), ``tables``/``render``/``html`` (output).
"""
