"""Report builders: result tables, ``RESULTS.md`` files and plots.

* :mod:`~espnet2_ext.reports.tables`: the one number format (:func:`format_number`),
  markdown tables, CSV and the ``RESULTS.md`` of scoring;
* :mod:`~espnet2_ext.reports.plots`: the SDR and multi-step trace plots;
* :mod:`~espnet2_ext.reports.scores`: the outputs of scoring separated songs;
* :mod:`~espnet2_ext.reports.multistep`: one-step vs multi-step runs side by side.
"""
