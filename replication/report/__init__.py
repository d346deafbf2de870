"""The report: tables beside the paper's numbers, the report page, the figures and the study's outputs.

Read from run directories only; nothing here trains or writes into ``runs/``.

* :mod:`~replication.report.statistics` — mean ± std, paired differences, t CIs, verdicts, the paper's claims;
* :mod:`~replication.report.paper_table` — the paper's published numbers (``tables/paper/*.csv``);
* :mod:`~replication.report.plots` — the Matplotlib figures (loaded only when one is drawn);
* :mod:`~replication.report.gallery` — the sample/label gallery figure (a pipeline step draws it);
* :mod:`~replication.report.table` — the table model: our results per row and seed beside the paper's;
* :mod:`~replication.report.formats` — Markdown, CSV and LaTeX, and the number formats the study shares;
* :mod:`~replication.report.figures` — the table's mAP, Δ mAP and λ figures;
* :mod:`~replication.report.page` — the report page: quality, images, figures, time per step;
* :mod:`~replication.report.render` — writing a table's outputs (``spl tables render``);
* :mod:`~replication.report.study` — the study's Δ mAP against N, its table, CSV and figure (``spl study render``).

The first four sit on lower layers than the rest (docs/architecture.md); nothing is re-exported here.
"""
