"""Unit tests of the code analyser on small real snippets, copied unchanged from ../shared/corpus/real
(the notebook and cell they come from are named). No database.
"""

from __future__ import annotations

import pytest

from ingest.understand import analyze_cells
from ingest.understand.calls import CellVisitor, Scope
from ingest.understand.ipython import parse_cell

IMPORTS = (
    "import numpy as np\nimport pandas as pd\nimport matplotlib.pyplot as plt\nimport seaborn as sns\n"
    "import shap\nimport missingno as msno\nimport lightgbm as lgb\n"
    "from sklearn.metrics import confusion_matrix, roc_curve\n"
)


def code(source: str, *, images: int = 1) -> dict:
    outputs = [{"output_type": "display_data", "data": {"image/png": "", "text/plain": "<Figure>"}} for _ in range(images)]
    return {"cell_type": "code", "source": source, "outputs": outputs}


def md(source: str) -> dict:
    return {"cell_type": "markdown", "source": source}


def analyse(source: str, *, prelude: str = IMPORTS, images: int = 1):
    facts = analyze_cells([code(prelude, images=0), code(source, images=images)])
    return facts.cells[1], [p for p in facts.plots if p.cell_position == 1]


def kinds(source: str, **kw) -> list[str]:
    _, plots = analyse(source, **kw)
    assert plots, "the cell has an image output, so it has a plot row"
    return plots[0].plot_kinds


def call_names(source: str, prelude: str = "") -> list[str]:
    scope = Scope()
    for part in (prelude, source):
        tree, error, _ = parse_cell(part)
        assert error is None
        visitor = CellVisitor(scope)
        visitor.visit(tree)
    return [c.name for c in visitor.calls]


# ---- resolution --------------------------------------------------------------------------------

def test_alias_resolution_across_cells():
    # imports in the first cell, plotting forty cells later (script1144: cells 1 and 10)
    names = call_names(
        "plt.figure(figsize=(14,12))\nsns.heatmap(train.astype(float).corr(),linewidths=0.1,vmax=1.0)",
        prelude="import matplotlib.pyplot as plt\nimport seaborn as sns",
    )
    assert "matplotlib.pyplot.figure" in names and "seaborn.heatmap" in names


def test_from_matplotlib_import_pyplot_as_p():
    # mateuszk098 playground_series_s3e15/model.ipynb cell 17 imports pyplot by 'from'; renamed here to p
    names = call_names("fig, ax = p.subplots(1, 1, figsize=(8, 8), tight_layout=True)\np.show()",
                       prelude="from matplotlib import pyplot as p")
    assert names == ["matplotlib.pyplot.subplots", "matplotlib.pyplot.show"]


def test_axes_from_subplots_resolve_to_axes_methods():
    # mateuszk098 playground_series_s3e15/model.ipynb cell 17
    src = (
        "fig, ax = plt.subplots(1, 1, figsize=(8, 8), tight_layout=True)\n"
        "ax.scatter(x=Y_true, y=Y_pred, alpha=0.5, marker=\".\", s=10)\n"
        "ax.plot([-1, 1], [-1, 1])\n"
        "ax.set_aspect(1.0)\n"
    )
    names = call_names(src, prelude="from matplotlib import pyplot as plt")
    assert "matplotlib.axes.Axes.scatter" in names and "matplotlib.axes.Axes.plot" in names
    assert kinds(src) == ["scatter", "line"]


def test_axes_in_loops_over_flattened_axes():
    # dalloliogm waveform-inversion: fig, axes = plt.subplots(3, 5); axes = axes.flatten(); axes[i].imshow(...)
    src = "fig, axes = plt.subplots(3, 5, figsize=(10, 6))\naxes= axes.flatten()\nfor i in range(n):\n    axes[i].imshow(sample[i], cmap='gray')\n"
    assert "matplotlib.axes.Axes.imshow" in call_names(src, prelude="import matplotlib.pyplot as plt")
    assert kinds(src) == ["image_grid"]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # adgirish script1074 cell 3: value_counts ... plot.bar on a DataFrame column
        ("reviews['points'].value_counts().sort_index().plot.bar()", ["count"]),
        # adgirish script223 cell 12: .plot(kind='bar') on value_counts
        ("vc = data['sales'].value_counts().plot(kind='bar')\nplt.show()", ["count"]),
        # Carl-McBride-Ellis exploratory-data-analysis-using-pandas-pivot-table cell 10
        ("pivot_table = pd.pivot_table(train_data, index=['OverallQual'], values=['SalePrice'])\npivot_table.plot(kind='bar');", ["bar"]),
        # adgirish script1096 cell 15
        ("df['value'].plot()", ["line"]),
        # dalloliogm playground-series-s5e7 cell 35
        ("numeric_all_data = all_data.select_dtypes(include='number')\nnumeric_all_data.plot(kind='box', title='Boxplot', figsize=(12, 5))", ["box"]),
        # adgirish script164 cell 29: a method chain ending in .plot.pie, inside a with block
        ("with sns.color_palette(\"YlOrBr_d\", 4):\n    plt.figure(figsize=(6,6))\n    plt.title(\"Repayment Interval\")\n"
         "    kiva_loans_df.repayment_interval.value_counts().T.plot.pie(labeldistance=1.1)\n    plt.ylabel('')", ["pie"]),
    ],
)
def test_pandas_method_chains(source, expected):
    assert kinds(source) == expected


# ---- IPython syntax and cells that do not parse -----------------------------------------------------

def test_magics_shell_and_help_are_turned_into_python_by_ipython():
    tree, error, used = parse_cell("%matplotlib inline\n!pip install -q xgboost\ntrain_df?\nimport seaborn as sns")
    assert error is None and used
    cell, _ = analyse("%matplotlib inline\n!pip install -q xgboost\nimport seaborn as sns", images=0)
    assert cell.parsed and cell.ipython_syntax
    assert cell.libraries == ["seaborn"] and cell.stage == "setup"


def test_cell_magic_body_is_analysed():
    # dalloliogm cafa-6 ... cell 6: a %%time cell that draws a count plot and a histogram, one image each
    src = (
        "%%time\nimport matplotlib.pyplot as plt\nimport seaborn as sns\n"
        "plt.figure(figsize=(6,4))\nsns.countplot(x=\"ontology\", data=train_terms)\nplt.show()\n"
        "plt.figure(figsize=(8,4))\nsns.histplot(seq_lengths, bins=50, kde=True)\nplt.show()\n"
    )
    cell, plots = analyse(src, prelude="", images=2)
    assert cell.parsed and cell.ipython_syntax
    assert "seaborn.countplot" in cell.call_names
    assert [p.plot_kinds for p in plots] == [["count"], ["histogram", "density"]]
    assert [p.segment for p in plots] == [0, 1]


def test_python2_cell_is_kept_marked_and_still_classified():
    # donnemartin analyses/churn.ipynb cell 4 (Python 2 print statements)
    src = ('churn_df = pd.read_csv(\'../data/churn.csv\')\ncol_names = churn_df.columns.tolist()\n\n'
           'print "Column names:"\nprint col_names\n')
    cell, _ = analyse(src, images=0)
    assert not cell.parsed and "print" in cell.parse_error
    assert "pandas.read_csv" in cell.call_names and cell.stage == "data_loading"


def test_unparseable_cell_falls_back_to_tokens():
    # adgirish script71 cell 19: not Python at all; then a broken plotting cell made of real lines
    cell, _ = analyse("df.Park Code", images=0)
    assert not cell.parsed and cell.parse_error
    broken = "sns.countplot(x='Survived', data=train\nplt.title('Survived')"  # unclosed parenthesis
    cell, plots = analyse(broken)
    assert not cell.parsed
    assert "seaborn.countplot" in cell.call_names
    assert plots[0].plot_kinds == ["count"]


def test_julia_notebook_is_marked_not_analysed():
    facts = analyze_cells([code("A=block(randn(15,15))\nspy(A_after)")], language="julia")
    assert not facts.cells[0].parsed and "julia" in facts.cells[0].parse_error
    assert facts.plots[0].plot_kinds == ["other"]


# ---- one real snippet per plot kind ---------------------------------------------------------------

KIND_SNIPPETS = [
    # Carl-McBride-Ellis discrimination-threshold... cell 4
    ("cm = confusion_matrix( y_test , predictions )\nplt.figure(figsize = (3,3))\n"
     "sn.heatmap(cm, annot=True, annot_kws={\"size\": 25}, fmt=\"d\", cmap=\"viridis\", cbar=False)\nplt.show()",
     "import seaborn as sn", ["confusion_matrix"]),
    # Carl-McBride-Ellis titanic-in-all-the-confusion cell 11
    ("fpr, tpr, thresholds = roc_curve( perfect['Survived'] , gender['Survived'] )\n"
     "plt.plot(fpr, tpr, color='darkorange', lw=2, label='ROC curve')\nplt.plot([0, 1], [0, 1], color='navy', lw=2, linestyle='--')\n"
     "plt.xlabel('False Positive Rate')\nplt.show()", IMPORTS, ["roc_curve"]),
    # fchollet 3.6-classifying-newswires cell 29
    ("loss = history.history['loss']\nval_loss = history.history['val_loss']\nepochs = range(1, len(loss) + 1)\n"
     "plt.plot(epochs, loss, 'bo', label='Training loss')\nplt.plot(epochs, val_loss, 'b', label='Validation loss')\n"
     "plt.title('Training and validation loss')\nplt.xlabel('Epochs')\nplt.legend()\nplt.show()", IMPORTS, ["learning_curve"]),
    # dalloliogm playground-series-s5e10 cell 14
    ("lgb.plot_importance(final_model, max_num_features=20, importance_type=\"gain\", figsize=(10,6))\n"
     "plt.title(\"Top 20 Feature Importances\")\nplt.show()", IMPORTS, ["feature_importance"]),
    # slundberg shap Exact.ipynb cell 7
    ("shap.plots.waterfall(shap_values[0])", IMPORTS, ["shap"]),
    # mateuszk098 mohs_hardness_note cell 64 (shortened to its plotting call)
    ("fig, axes = plt.subplots(4, 3, figsize=(11.5, 10), tight_layout=True, sharey=True)\n"
     "PartialDependenceDisplay.from_estimator(estimator=lgbm, X=X, features=X.columns.tolist(), kind=\"both\", ax=axes)\nplt.show()",
     IMPORTS + "from sklearn.inspection import PartialDependenceDisplay", ["partial_dependence"]),
    # mateuszk098 mohs_hardness_note cell 45
    ("plt.figure(figsize=(11.5, 5.5), tight_layout=True)\nplot_tree(\n    decision_tree=tree,\n    filled=False,\n    ax=plt.gca(),\n)\n"
     "plt.title(\"Decision Process in Decision Tree (depth = 3)\")\nplt.show()", IMPORTS + "from sklearn.tree import plot_tree", ["tree_diagram"]),
    # adgirish script1144 cell 10
    ("colormap = plt.cm.RdBu\nplt.figure(figsize=(14,12))\nplt.title('Pearson Correlation of Features', y=1.05, size=15)\n"
     "sns.heatmap(train.astype(float).corr(),linewidths=0.1,vmax=1.0, square=True, cmap=colormap, linecolor='white', annot=True)",
     IMPORTS, ["correlation_heatmap"]),
    # dalloliogm ariel-data-challenge cell 14
    ("plt.figure(figsize=(10, 3))\nsns.heatmap(a_signal[1])\nplt.ylabel('spatial dimension')\nplt.show()", IMPORTS, ["heatmap"]),
    # mateuszk098 icr lgbm_baseline cell 9
    ("plt.figure(figsize=(10, 6))\nplt.hist(y_proba_rescaled, bins=50)\nplt.show()", IMPORTS, ["histogram"]),
    # adgirish script1224 cell 15 (distplot draws bars and a KDE)
    ("ax = sns.distplot(train_labels)", IMPORTS, ["histogram", "density"]),
    # dalloliogm cafa-6 ... cell 8 (kdeplot on an Axes)
    ("fig, axes = plt.subplots(1, 2, figsize=(18, 6))\nsns.kdeplot(raw_sample, ax=axes[0], color='red', fill=True)", IMPORTS, ["density"]),
    # dalloliogm stanford-rna-3d-folding cell 4 (one of its box plots)
    ("plt.figure(figsize=(12, 6))\nsns.boxplot(data=validation_named, x=\"submission_name\", y=\"bond_length_violations\")\nplt.show()",
     IMPORTS, ["box"]),
    # adgirish script223 cell 16
    ("plt.figure(figsize=(12,6))\nsns.violinplot(x=var_name, y='number_project', data=data, order=col_order)\nplt.show()", IMPORTS, ["violin"]),
    # CamDavidsonPilon Ch2 cell 132
    ("plt.scatter(alpha_samples, beta_samples, alpha=0.1)\nplt.title(\"Why does the plot look like this?\")", IMPORTS, ["scatter"]),
    # adgirish script1224 cell 20
    ("ax = sns.pairplot(numeric_features_standardized)", IMPORTS, ["pairplot"]),
    # mateuszk098 model.ipynb (ensemble weights) — dalloliogm playground-series-s5e10 cell 6
    ("plt.bar(x + bw, w_opt, width=bw, label='Optuna')\nplt.title('Model Weights Comparison')\nplt.show()", IMPORTS, ["bar"]),
    # dalloliogm cafa-6 ... cell 6 (count plot)
    ("plt.figure(figsize=(6,4))\nsns.countplot(x=\"ontology\", data=train_terms)\nplt.show()", IMPORTS, ["count"]),
    # donnemartin 04.01-Simple-Line-Plots cell 12
    ("plt.plot(x, np.sin(x))\nplt.plot(x, np.cos(x));", IMPORTS, ["line"]),
    # Carl-McBride-Ellis estimate-the-number-of-cheat-sheet-posts cell 3 (pie on an Axes)
    ("fig1, ax1 = plt.subplots()\nax1.pie(sizes, labels=topics, autopct='%1.0f%%')\nax1.axis('equal')\nplt.show()", IMPORTS, ["pie"]),
    # donnemartin 04.13-Geographic-Data-With-Basemap cell 8
    ("fig = plt.figure(figsize=(8, 8))\nm = Basemap(projection='lcc', resolution=None, width=8E6, height=8E6, lat_0=45, lon_0=-100,)\n"
     "m.etopo(scale=0.5, alpha=0.5)", IMPORTS + "from mpl_toolkits.basemap import Basemap", ["map"]),
    # donnemartin keras-tutorial 2.2.1 cell 22
    ("fig = pyplot.figure()\nax = fig.add_subplot(1,1,1)\nimgplot = ax.imshow(X_train[1], cmap=mpl.cm.Greys)\npyplot.show()",
     "from matplotlib import pyplot\nimport matplotlib as mpl", ["image_grid"]),
    # Carl-McBride-Ellis wordcloud-of-gold-medal-winning-notebook-titles cell 1 (end of it)
    ("medal_wc = WordCloud(background_color='white', max_words=200)\nmedal_wc.generate(all_medal_string)\n"
     "plt.figure(figsize = (12,12))\nplt.imshow(medal_wc, interpolation='bilinear')\nplt.axis('off')\nplt.show()",
     IMPORTS + "from wordcloud import WordCloud", ["wordcloud"]),
    # Carl-McBride-Ellis titanic-view-missing-values-with-missingno cell 3
    ("msno.matrix(train_data);", IMPORTS, ["missing_values"]),
    # dalloliogm santa-2025 eazy-optimizer cell 0 (a video thumbnail, not a chart)
    ("from IPython.display import YouTubeVideo\nYouTubeVideo(\"Igxl7YtS1vQ\", width=600, height=350)", IMPORTS, ["other"]),
]


@pytest.mark.parametrize(("source", "prelude", "expected"), KIND_SNIPPETS, ids=[s[2][0] for s in KIND_SNIPPETS])
def test_plot_kind_of_real_snippet(source, prelude, expected):
    assert kinds(source, prelude=prelude) == expected


def test_evidence_names_the_call_and_the_rule():
    _, plots = analyse(KIND_SNIPPETS[0][0], prelude="import seaborn as sn\nimport matplotlib.pyplot as plt\n"
                                                   "from sklearn.metrics import confusion_matrix")
    (ev,) = plots[0].evidence
    assert ev["kind"] == "confusion_matrix" and ev["call"] == "seaborn.heatmap" and "confusion" in ev["rule"]
    assert "seaborn.heatmap" in plots[0].plot_calls


def test_notebook_helper_functions_count_where_they_are_called():
    # donnemartin analyses/churn.ipynb cell 19: plot_roc is defined and called in the same cell
    src = (
        "def plot_roc(X, y, clf_class, **kwargs):\n"
        "    fpr, tpr, thresholds = roc_curve(y[test_index], probas_[:, 1])\n"
        "    plt.plot(fpr, tpr, lw=1, label='ROC fold %d (area = %0.2f)' % (i, roc_auc))\n"
        "    plt.xlabel('False Positive Rate')\n"
        "    plt.show()\n"
        "plot_roc(X,y,SVC,probability=True)\n"
        "plot_roc(X,y,RF,n_estimators=18)\n"
    )
    cell, plots = analyse(src, images=2)
    assert [p.plot_kinds for p in plots] == [["roc_curve"], ["roc_curve"]]
    assert any(c.get("via") == "plot_roc" for c in cell.calls)
    assert cell.stage == "evaluation"


def test_visualisation_cell_without_image_output():
    cell, plots = analyse("plt.plot(x, np.sin(x))", images=0)
    assert cell.is_visualisation and cell.plot_kinds == ["line"] and plots == []


def test_interactive_output_is_a_figure():
    facts = analyze_cells([
        code(IMPORTS + "import plotly.express as px", images=0),
        {"cell_type": "code", "source": "fig = px.histogram(train, x=\"Hardness\")\nfig.show()",
         "outputs": [{"output_type": "display_data", "data": {"application/vnd.plotly.v1+json": {}, "text/html": ""}}]},
    ])
    (plot,) = facts.plots
    assert plot.interactive and plot.mime == "application/vnd.plotly.v1+json" and plot.plot_kinds == ["histogram"]


def test_context_is_the_markdown_around_the_plot_and_markdown_takes_the_next_stage():
    facts = analyze_cells([
        code(IMPORTS, images=0),
        md("## ROC Plots & AUC\n\nAnother important metric to consider is ROC plots."),
        code("x = 1", images=0),
        code("fpr, tpr, _ = roc_curve(y, p)\nplt.plot(fpr, tpr)\nplt.show()"),
        md("## Feature Importance"),
    ])
    (plot,) = facts.plots
    assert plot.context_before.startswith("## ROC Plots") and plot.context_after == "## Feature Importance"
    assert facts.cells[1].stage == facts.cells[2].stage
    assert facts.cells[3].stage == "evaluation"


@pytest.mark.parametrize(
    ("source", "stage"),
    [
        ("import numpy as np\nimport pandas as pd", "setup"),  # most notebooks' first cell
        ("train_df = pd.read_csv('../input/train.csv')\ntest_df = pd.read_csv('../input/test.csv')", "data_loading"),  # titanic cell 4
        ("train_df.describe()", "exploration"),  # titanic cell 14
        ("for dataset in combine:\n    dataset['Sex'] = dataset['Sex'].map( {'female': 1, 'male': 0} ).astype(int)\ntrain_df.head()",
         "preprocessing"),  # titanic cell 42
        ("for dataset in combine:\n    dataset['FamilySize'] = dataset['SibSp'] + dataset['Parch'] + 1", "feature_engineering"),  # titanic cell 56
        ("random_forest = RandomForestClassifier(n_estimators=100)\nrandom_forest.fit(X_train, Y_train)", "modelling"),  # titanic cell 95
        ("forest_rnd_search = RandomizedSearchCV(forest_clf, param_dist, n_iter=10, cv=5)\nforest_rnd_search.fit(X, y);", "tuning"),  # spaceship 111
        ("from sklearn.metrics import roc_auc_score\nforest_auc_score = roc_auc_score(train_labels, forest_roc_scores)", "evaluation"),  # spaceship 136
        ("shap.plots.beeswarm(shap_values[...,1])", "explanation"),  # shap custom.ipynb cell 1
        ("submission = pd.DataFrame({\"PassengerId\": test_df[\"PassengerId\"], \"Survived\": Y_pred})\n"
         "submission.to_csv('submission.csv', index=False)", "prediction"),  # titanic cell 98
    ],
)
def test_stage_of_real_snippet(source, stage):
    prelude = IMPORTS + ("from sklearn.ensemble import RandomForestClassifier\n"
                         "from sklearn.model_selection import RandomizedSearchCV\n")
    cell, _ = analyse(source, prelude=prelude, images=0)
    assert cell.stage == stage, cell.stage_evidence


# ---- what the speed-ups must not change ---------------------------------------------------------

# texts that match the rule expressions through each of their branches, and near misses
QUICK_SAMPLES = (
    "history.history['val_loss']", "plt.plot(epochs, train_acc)", "evals_result", "learning curve", "n_iteration",
    "cost_history", "errors_", "fpr, tpr", "False Positive Rate", "Receiver Operating", "roc", "precision_recall_curve(y, p)",
    "Recall vs Precision curve", "calibration_curve", "cm", "cm_norm", "conf_mat", "Confusion", "df.corr()", "np.corrcoef(x)",
    "Correlation", "corr_", "isnull().sum()", "isna()", "Missing values", "null", "feature_importances_", "model.coef_",
    "coefs", "mutual_info", "residuals", "stats.norm.pdf(x)", "gaussian_kde", "KDE", "Density", "WordCloud", "wc",
    "word_cloud", "partial_dependence", "PDP", "value_counts()", "df.groupby('a').size()", "df.count()", "countplot",
    "Score", "ACC", "y_pred", "predict_proba", "oof_preds", "MAE", "rmse", "AUC", "evaluate", "metrics", "results",
    "Error", "f1", "RandomForestClassifier", "GradientBoostingRegressor", "SVC", "XGBClassifier", "LGBMRegressor",
    "CatBoostClassifier", "GridSearchCV", "optuna.create_study", "hyperopt.fmin", "keras_tuner.Hyperband", "ray.tune.run",
    "skopt.gp_minimize", "search.best_params_", "best_estimator_", "best_score_", "study.optimize", "df.describe()",
    "sklearn.decomposition.PCA", "PolynomialFeatures", "TfidfVectorizer", "sklearn.feature_selection.SelectKBest",
    "sklearn.manifold.TSNE", "FeatureHasher", "WordBatch", "Descriptors", "featuretools.dfs", "tsfresh.extract_features",
    "sklearn.metrics.accuracy_score", "cross_val_score", "cross_validate", "sklearn.model_selection.learning_curve",
    "model.evaluate", "classification_report", "model.score", "mean_squared_error", "roc_auc_score", "f1_score",
    "shap.TreeExplainer", "shap.datasets.adult", "permutation_importance", "eli5.show_weights", "lime.lime_tabular",
    "PartialDependenceDisplay", "plot_importance", "model.get_booster().get_score", "interpret.glassbox",
    "sklearn.preprocessing.StandardScaler", "train_test_split", "keras.preprocessing.text", "pad_sequences",
    "torchtext.data", "nltk.word_tokenize", "sklearn.utils.shuffle", "get_tokenizer", "transformers.AutoTokenizer",
    "pandas.read_csv", "numpy.load", "polars.read_parquet", "datasets.load_dataset", "sklearn.datasets.load_iris",
    "keras.datasets.mnist.load_data", "torchvision.datasets.MNIST", "tensorflow_datasets.load", "json.load",
    "pickle.load", "joblib.load", "h5py.File", "scipy.io.loadmat", "seaborn.load_dataset", "kagglehub.dataset_download",
    "cv2.imread", "PIL.Image.open", "imageio.imread", "pyarrow.parquet.read_table", "tifffile.imread", "glob.glob",
    "os.listdir", "zipfile.ZipFile", "dask.dataframe.read_csv", "df.fillna(0)", "s.map({'a': 1})", "x.astype(int)",
    "x.replace('a', 'b')", "LabelEncoder()", "enc.fit_transform(x)", "pd.to_numeric(x)", "np.where(x > 0, 1, 0)",
    "importance", "plt.show()", "x = 1", "",
)


def test_quick_expressions_find_what_their_regular_expressions_find():
    from ingest.understand import plots, stages
    from ingest.understand.quick import Quick

    quick = [v for m in (plots, stages) for v in vars(m).values() if isinstance(v, Quick)]
    assert len(quick) >= 20
    # non-ASCII texts: letters re.I matches to ASCII ones, which lower() turns into them (the Kelvin
    # sign) or not (ſ, ı, İ), and others
    texts = [t for s in QUICK_SAMPLES for t in (s, s.upper(), s.lower(), f"x = {s} + 1", f"é {s}", s.replace("s", "ſ"),
                                                 s.replace("i", "ı"), s.replace("i", "İ"), s.upper().replace("I", "İ"),
                                                 s.replace("k", "\u212a"), f"# ── 📊 {s.upper()}")]
    texts.append(" ".join(QUICK_SAMPLES))
    for q in quick:
        hits = 0
        for text in texts:
            want, got = q.pattern.search(text), q.search(text)
            assert (want and (want.span(), want.group(0))) == (got and (got.span(), got.group(0))), (q, text)
            hits += want is not None
        assert hits, f"no sample exercises {q}"


def test_generated_cell_is_analysed_from_its_beginning_and_its_rest_still_names_libraries():
    rows = "".join(f"    df['f{i}'] = df['a'] * {i} + df['b'] ** 2 - np.log1p(df['c{i}'])\n" for i in range(900))
    source = "def features(df):\n" + rows + "    import polars as pl\n    return pl.from_pandas(df)\n"
    assert len(source) > 40_000
    cell, _ = analyse(source, prelude="import numpy as np\n", images=0)
    assert cell.parsed and cell.parse_error.startswith("analysed its first")
    assert "numpy.log1p" in cell.call_names and "polars" in cell.libraries
    assert any(i["module"] == "polars" for i in cell.imports)
    assert cell.stage == "feature_engineering"


def test_generated_cell_whose_beginning_does_not_parse_alone_is_analysed_whole():
    # one giant literal: no line inside it starts a statement, so the whole cell is parsed
    source = "data = [\n" + "".join(f"    {i},\n" for i in range(9000)) + "]\nplt.plot(data)\n"
    assert len(source) > 40_000
    cell, plots = analyse(source)
    assert cell.parsed and cell.parse_error is None
    assert "matplotlib.pyplot.plot" in cell.call_names and plots[0].plot_kinds == ["line"]


IPYTHON_EDGE_CASES = (
    "%matplotlib inline", "%matplotlib inline\nimport x\n!ls\n", "!pip install x\n    y = 1\n", "%time x = %who\n",
    "%timeit?\n", "!ls (\n)\n", "%%time\nx = 1\n", "\n\n%matplotlib inline\nx=1", "  %matplotlib inline\n  x = 1\n",
    "%env A=1\nprint(1)\nx?\n", "!echo hi\n!echo there\nfiles = !ls\n", "%matplotlib inline \\\nfoo\nbar\n",
    "%load_ext autoreload\n%autoreload 2\n/print 1\n", ">>> x = 1\n... y\n", "In [1]: x = 1\n", "%pwd\n,f a b\n",
    "!ls\n;f a\n", "%timeit f(x) # (\ny = (1,\n2)\n", "%timeit np.sum(a)\nx = [\n%who\n]\n", "x = 1\ny = \\\n!ls\n",
    "print 'x'\n%matplotlib inline\n", "s = '''\n%notmagic\n'''\n%matplotlib inline\n", "if x:\n    %time f()\n",
    "%matplotlib inline\nprint x\n", "a = 5 % 3\nb = a != 2\n",
)


@pytest.mark.filterwarnings("ignore::SyntaxWarning", "ignore::DeprecationWarning")
def test_magics_are_rewritten_exactly_as_ipython_rewrites_them():
    import ast

    from IPython.core.inputtransformer2 import TransformerManager

    from ingest.parse import decode_json, to_v4
    from ingest.understand.ipython import to_python
    from tests.conftest import real_notebooks

    # every real cell that needs the transformer (it does not parse as Python), and edge cases
    sources = list(IPYTHON_EDGE_CASES)
    for path in real_notebooks():
        nb, _ = to_v4(decode_json(path.read_bytes())[0])
        for cell in nb["cells"]:
            text = cell.get("source") or ""
            text = "".join(text) if isinstance(text, list) else text
            if cell.get("cell_type") == "code":
                try:
                    ast.parse(text)
                except (SyntaxError, ValueError):
                    sources.append(text)
    assert len(sources) > 150
    manager = TransformerManager()
    for text in sources:
        assert to_python(text) == manager.transform_cell(text), text


def test_code_cell_line_is_the_generic_renderers():
    """The written-out code-cell line (the ingest's fast path) is byte for byte what the generic COPY
    renderer makes, on the values that need escaping: NUL, a lone surrogate, quotes, tabs, None."""
    from db.queries.understand import render_cell_rows, render_code_cell_row

    rows = [
        (0, 2, True, None, False, None, None, [], [], "other", ["empty cell"], False, []),
        (3, 2, False, "SyntaxError: bad\tinput\x00 (line 1)", True, [{"module": "a\\b", "alias": 'q"', "line": 1}],
         [{"name": "plt.plot", "text": "p\ud800", "line": 2, "args": ["x\ny"]}], ['a"b', "c\\d", "e,f"],
         ["matplotlib"], "exploration", ["call x\x00"], True, ["line", "other"]),
    ]
    for row in rows:
        assert render_code_cell_row(*row).encode("utf-8", "replace") == render_cell_rows([row])
