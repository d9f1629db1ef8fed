"""The vocabularies of code understanding: plot kinds and ML pipeline stages.

They live in ``db`` because both sides need them and neither may import the other: the analyser
(``ingest.understand``) writes these words into the database, and the API validates filters
against them and lists them for clients.
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
