"""Pictures and the report: figure helpers (`figures`), MAE reconstructions
(`reconstruction`), segmentation grids (`segmentation`), attention maps (`attention`), the
severity curves and examples of `vitmae robustness` (`robustness`), and the
self-contained HTML report (`report`, curves in `report_curves`). Figures are drawn with
matplotlib's pyplot-free `Figure` API, so no process-wide backend is switched.
"""
