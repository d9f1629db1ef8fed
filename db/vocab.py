"""Closed vocabularies: plot kinds and ML pipeline stages (code understanding), failure classes (reproduction).

They live in ``db`` because both sides need them and neither may import the other: ``ingest``
(the analyser, the reproduction classifier) writes these words into the database, and the API
validates filters against them and lists them for clients.
"""

from __future__ import annotations

# in the order the analyser reports them (specific kinds first, "other" last)
PLOT_KINDS: tuple[str, ...] = (
    "confusion_matrix", "roc_curve", "precision_recall_curve", "learning_curve", "calibration_curve",
    "residual_plot", "feature_importance", "shap", "partial_dependence", "tree_diagram", "correlation_heatmap",
    "heatmap", "histogram", "density", "box", "violin", "scatter", "pairplot", "bar", "count", "line", "pie",
    "map", "image_grid", "wordcloud", "missing_values", "other",
)

# in pipeline order
STAGES: tuple[str, ...] = (
    "setup", "data_loading", "exploration", "preprocessing", "feature_engineering", "modelling", "tuning",
    "evaluation", "explanation", "prediction", "other",
)

# why a reproduction run failed (ingest.reproduce.failures decides which; the API filters on them)
FAILURE_CLASSES: tuple[str, ...] = (
    "missing_module", "missing_data_file", "out_of_order", "name_error", "python2", "syntax_error",
    "library_api_change", "network", "timeout", "memory", "killed", "unsupported_language", "infrastructure",
    "exception",
)
