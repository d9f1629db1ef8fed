"""ML pipeline stage of a code cell, from its resolved calls, plot kinds and assignments.

Stages: setup, data_loading, exploration, preprocessing, feature_engineering, modelling, tuning,
evaluation, explanation, prediction, other. A cell often does several things; the rules give the
stage that best describes what the cell is *for*, in a fixed order of precedence (writing a
submission beats fitting; fitting beats the metrics printed after it; loading data beats the
``head()`` that shows it). Markdown cells take the stage of the code they introduce.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from db.vocab import STAGES  # shared with the API, which may not import ingest
from ingest.understand.calls import Call
from ingest.understand.quick import Quick

EVALUATION_KINDS = {"confusion_matrix", "roc_curve", "precision_recall_curve", "learning_curve", "calibration_curve",
                    "residual_plot"}
EXPLANATION_KINDS = {"feature_importance", "shap", "partial_dependence", "tree_diagram"}

LOADERS = Quick(r"^(pandas\.read_\w+|numpy\.(load|loadtxt|genfromtxt|fromfile)|polars\.(read|scan)_\w+"
                     r"|datasets\.load_dataset|sklearn\.datasets\.(load|fetch)_\w+|keras\.datasets\.\w+\.load_data"
                     r"|shap\.datasets\.\w+|torchvision\.datasets\.\w+|tensorflow_datasets\.load|json\.load"
                     r"|pickle\.load|joblib\.load|h5py\.File|scipy\.io\.loadmat|seaborn\.load_dataset"
                     r"|kagglehub\.\w+|cv2\.imread|PIL\.Image\.open|imageio\.imread|pyarrow\.parquet\.read_table"
                     r"|tifffile\.imread|glob\.glob|os\.listdir|zipfile\.ZipFile|dask\.dataframe\.read_\w+)$", needles=('pandas.read_', 'numpy.', 'polars.', 'datasets.', 'load_data', 'tensorflow_datasets.load', 'json.load', 'pickle.load', 'joblib.load', 'h5py.File', 'scipy.io.loadmat', 'kagglehub.', 'cv2.imread', 'PIL.Image.open', 'imageio.imread', 'pyarrow.parquet.read_table', 'tifffile.imread', 'glob.glob', 'os.listdir', 'zipfile.ZipFile', 'dask.dataframe.read_'))
LOADER_METHODS = {"read_csv", "read_parquet", "read_table", "read_excel", "read_json", "load_data", "load_dataset",
                  "read_feather", "read_pickle", "read_sql", "get_word_index"}
EXPLORE_METHODS = {"head", "tail", "info", "describe", "value_counts", "unique", "nunique", "shape", "dtypes",
                   "isnull", "isna", "corr", "sample", "crosstab", "pivot_table", "memory_usage", "columns", "keys"}
PREPROCESS = Quick(r"^sklearn\.(preprocessing|impute|compose|pipeline)\.|train_test_split|^keras\.preprocessing"
                        r"|pad_sequences|^torchtext\.|^nltk\.|^sklearn\.utils\.shuffle|get_tokenizer|^transformers\.\w*Tokenizer", needles=('sklearn.', 'train_test_split', 'keras.preprocessing', 'pad_sequences', 'torchtext.', 'nltk.', 'get_tokenizer', 'transformers.'))
PREPROCESS_METHODS = {"fillna", "dropna", "drop", "drop_duplicates", "get_dummies", "astype", "replace", "map",
                      "fit_transform", "transform", "to_categorical", "merge", "concat", "rename", "set_index",
                      "reset_index", "reshape", "apply", "interpolate", "clip", "to_numeric", "to_datetime",
                      "with_format", "train_test_split", "split", "encode", "build_vocab_from_iterator",
                      "lookup_indices", "set_default_index", "DataLoader", "pad_sequence", "sort_values", "where"}
FEATURE = Quick(r"PolynomialFeatures|TfidfVectorizer|CountVectorizer|HashingVectorizer|^sklearn\.decomposition\."
                     r"|^sklearn\.feature_selection\.|^sklearn\.manifold\.|FeatureHasher|WordBatch|Descriptors|"
                     r"^featuretools|^tsfresh", needles=('PolynomialFeatures', 'Vectorizer', 'sklearn.', 'FeatureHasher', 'WordBatch', 'Descriptors', 'featuretools', 'tsfresh'))
FEATURE_METHODS = {"cut", "qcut", "extract", "transform", "rolling", "shift", "diff", "pct_change", "dt", "cumsum"}
MODEL = re.compile(r"^(sklearn\.(linear_model|ensemble|tree|svm|neighbors|naive_bayes|neural_network|discriminant_analysis"
                   r"|gaussian_process|cluster|mixture|kernel_ridge|dummy|semi_supervised|multiclass|calibration)\."
                   r"|xgboost\.|lightgbm\.|catboost\.|keras\.(models|layers|optimizers|Sequential|Model|losses)"
                   r"|torch\.nn\.(?!utils|functional)|torch\.optim\.|tensorflow\.keras\.(models|layers)|statsmodels\.|pymc|prophet\."
                   r"|transformers\.\w*(Model|For\w+)|mlens\.|pygam\.|interpret\.glassbox|tensorflow_probability)")
MODEL_METHODS = {"fit", "compile", "train", "fit_generator", "partial_fit", "backward", "step", "zero_grad",
                 "fit_transform_model", "add", "sample"}
_FIT_METHODS = MODEL_METHODS - {"add", "sample", "step"}
TUNING = Quick(r"GridSearchCV|RandomizedSearchCV|HalvingGridSearchCV|BayesSearchCV|^optuna\.|^hyperopt\."
                    r"|^keras_tuner|^ray\.tune|^skopt\.|best_params_|best_estimator_|best_score_|\.optimize$"
                    r"|create_study", needles=('SearchCV', 'optuna.', 'hyperopt.', 'keras_tuner', 'ray.tune', 'skopt.', 'best_params_', 'best_estimator_', 'best_score_', '.optimize', 'create_study'))
EVALUATION = Quick(r"^sklearn\.metrics\.|cross_val_score|cross_val_predict|cross_validate|^sklearn\.model_selection\.(learning_curve|validation_curve)"
                        r"|\.evaluate$|classification_report|\.score$|accuracy|rmse|\bmae\b|mean_squared|roc_auc|f1_score", needles=('sklearn.', 'cross_val', '.evaluate', 'classification_report', '.score', 'accuracy', 'rmse', 'mae', 'mean_squared', 'roc_auc', 'f1_score'))
EXPLANATION = Quick(r"^shap\.(?!datasets)|feature_importances_|coef_|permutation_importance|^eli5\.|^lime\.|PartialDependence"
                         r"|partial_dependence|plot_importance|get_booster\(\)\.get_score|feature_importance|^interpret\.", needles=('shap.', 'feature_importance', 'coef_', 'permutation_importance', 'eli5.', 'lime.', 'PartialDependence', 'partial_dependence', 'plot_importance', 'get_booster().get_score', 'interpret.'))
SUBMISSION = re.compile(r"submission|submit|sub\.to_csv|\bsub\b|\.to_csv", re.I)
SETUP = re.compile(r"^(warnings\.|numpy\.random\.seed|random\.seed|torch\.manual_seed|torch\.cuda\.manual_seed|"
                   r"tensorflow\.random\.set_seed|pandas\.set_option|matplotlib\.pyplot\.style|seaborn\.set|"
                   r"matplotlib\.rc|matplotlib\.pyplot\.rc|os\.environ|get_ipython|sys\.path|plotly\.offline\.init_notebook_mode|"
                   r"logging\.|torch\.device|torch\.cuda\.|tensorflow\.config|keras\.__version__|pd\.options|"
                   r"seaborn\.set_\w+|init_notebook_mode|IPython\.core\.pylabtools\.figsize|figsize$|seed_everything)")


@dataclass
class StageResult:
    stage: str
    evidence: list[str]


# pattern id -> {call name: matches}; call names repeat across cells and notebooks, the regexes are the
# cost. Keyed by id: hashing a compiled pattern hashes its whole program, on every lookup.
_MATCHES: dict[int, dict[str, bool]] = {}


def _matches(pattern: re.Pattern | Quick, name: str) -> bool:
    memo = _MATCHES.get(id(pattern))
    if memo is None:
        memo = _MATCHES[id(pattern)] = {}
    hit = memo.get(name)
    if hit is None:
        if len(memo) > 50_000:  # a worker lives for a whole corpus: keep the memo bounded
            memo.clear()
        hit = memo[name] = pattern.search(name) is not None
    return hit


def _has(calls: list[Call], pattern: re.Pattern | Quick) -> Call | None:
    memo = _MATCHES.get(id(pattern))
    if memo is None:
        memo = _MATCHES[id(pattern)] = {}
    for c in calls:
        hit = memo.get(c.name)
        if hit is None:
            hit = _matches(pattern, c.name)
        if hit:
            return c
    return None


def _method(calls: list[Call], names: set[str], *, unresolved_only: bool = False) -> Call | None:
    for c in calls:
        if c.last in names and (not unresolved_only or not c.resolved or c.name.startswith("pandas")):
            return c
    return None


METRIC_WORDS = Quick(r"score|acc|loss|y_pred|proba|\boof|\bmae\b|rmse|auc|evaluat|metric|result|error|precision|recall|\bf1\b", re.I, needles=('score', 'acc', 'loss', 'y_pred', 'proba', 'oof', 'mae', 'rmse', 'auc', 'evaluat', 'metric', 'result', 'error', 'precision', 'recall', 'f1'))
MODEL_BASES = re.compile(r"^(torch\.nn\.Module|keras\.(models\.)?Model|keras\.layers\.Layer|sklearn\.base\.BaseEstimator"
                         r"|tensorflow\.keras\.Model|lightning|pytorch_lightning)")
FEATURE_BASES = re.compile(r"TransformerMixin")


def stage_of_code(
    *,
    source: str,
    calls: list[Call],
    imports: int,
    plot_kinds: list[str],
    assigned_columns: list[tuple[str, str]],
    parsed: bool,
    defines: list[str] | None = None,
    bases: list[str] | None = None,
    deletes: int = 0,
) -> StageResult:
    """Stage of one code cell. ``calls`` are the cell's calls (including those reached through its functions)."""
    if not source.strip():
        return StageResult("other", ["empty cell"])
    if not parsed and not calls:
        return _token_stage(source)
    top = [c for c in calls if not c.in_def and c.via is None]
    live = [c for c in calls if not c.in_def]
    defines, bases = defines or [], bases or []
    if not live and defines:
        # a cell that only defines functions/classes: judge by what they do and what they are called
        live = [c for c in calls if c.in_def]
        if any(MODEL_BASES.search(b) for b in bases):
            return StageResult("modelling", [f"defines a model class ({bases[0]})"])
        if any(FEATURE_BASES.search(b) for b in bases):
            return StageResult("feature_engineering", [f"defines a transformer ({bases[0]})"])
        names = " ".join(defines).lower()
        for word, stage in (("evaluat", "evaluation"), ("metric", "evaluation"), ("score", "evaluation"),
                            ("accuracy", "evaluation"), ("loss", "evaluation"), ("rmse", "evaluation"),
                            ("mae", "evaluation"), ("predict", "prediction"), ("train", "modelling"), ("fit", "modelling"),
                            ("oof", "modelling"), ("model", "modelling"), ("collate", "preprocessing"),
                            ("loader", "preprocessing"), ("token", "preprocessing"), ("clean", "preprocessing"),
                            ("feature", "feature_engineering"), ("plot", "exploration")):
            if word in names:
                return StageResult(stage, [f"defines {defines[0]}"])
    text = source[:20000]  # regexes over the beginning of giant generated cells are enough
    if imports and all(_matches(SETUP, c.name) or c.name in ("print", "len") or c.last in ("__version__",) for c in top):
        return StageResult("setup", ["imports/configuration only"])

    # prediction: writing predictions for the test set / a submission file
    for c in live:
        if c.last == "to_csv" and SUBMISSION.search(c.text + " " + " ".join(c.args)):
            return StageResult("prediction", [f"{c.text}(...) writes a submission"])
    if kinds := EXPLANATION_KINDS.intersection(plot_kinds):
        return StageResult("explanation", [f"plot kind {sorted(kinds)[0]}"])
    if c := _has(live, EXPLANATION):
        return StageResult("explanation", [f"call {c.name}"])
    live_text = " ".join([c.text + " " + c.arg_text() for c in live[:300]])
    if any(word in live_text for word in ("feature_importances_", ".coef_", "shap_values", "explainer")):
        return StageResult("explanation", ["reads feature_importances_/coef_/SHAP values"])
    fit = _method(live, {"fit"})
    if c := _has(live, TUNING) or (fit if fit and TUNING.search(text) else None):
        return StageResult("tuning", [f"call {c.name}" if isinstance(c, Call) else "hyperparameter search"])
    fit_top = _method(top, _FIT_METHODS) or _has(top, MODEL)
    if kinds := EVALUATION_KINDS.intersection(plot_kinds):
        if not (fit_top and fit_top.last in ("fit", "compile", "train")):
            return StageResult("evaluation", [f"plot kind {sorted(kinds)[0]}"])
    if fit_top is not None:
        return StageResult("modelling", [f"call {fit_top.name}"])
    helper = _helper_stage(top)
    if helper is not None:
        return helper
    # (fit_top is None here)
    if (fit_any := _method(live, _FIT_METHODS) or _has(live, MODEL)) is not None:
        return StageResult("modelling", [f"call {fit_any.name} (via {fit_any.via})"])
    if (evaluation := _has(live, EVALUATION)) is not None:
        return StageResult("evaluation", [f"call {evaluation.name}"])
    if "history" in text and ("history.history" in text or "history_dict" in text):
        return StageResult("evaluation", ["reads the training history"])
    if c := _method(live, {"predict", "predict_proba", "predict_classes"}):
        return StageResult("prediction", [f"call {c.text}"])
    if c := _has(live, LOADERS) or _method(live, LOADER_METHODS):
        return StageResult("data_loading", [f"call {c.name}"])

    # MODEL_ARGS matches whole words without spaces: it finds one in the joined arguments exactly
    # when it finds one in some call's
    if (any(word in text for word in _MODEL_TEXT_WORDS) and MODEL_TEXT.search(text)) or \
            MODEL_ARGS.search(" ".join([c.arg_text() for c in top[:300]])):
        return StageResult("modelling", ["builds a model"])
    fe = _feature_votes(live, assigned_columns)
    pre = _preprocess_votes(live, assigned_columns)
    if plot_kinds and plot_kinds != ["other"] and not fe and not any(v.startswith("recodes") for v in pre):
        if METRIC_WORDS.search(" ".join(c.arg_text() + " " + c.text for c in live)):
            return StageResult("evaluation", [f"plot kind {plot_kinds[0]} of scores"])
        return StageResult("exploration", [f"plot kind {plot_kinds[0]}"])
    if deletes and not fe:
        pre.append("deletes columns/variables")
    if fe or pre:
        if len(fe) > len(pre):
            return StageResult("feature_engineering", fe[:3])
        return StageResult("preprocessing", pre[:3])
    if plot_kinds and plot_kinds != ["other"]:
        if METRIC_WORDS.search(" ".join(c.arg_text() + " " + c.text for c in live)):
            return StageResult("evaluation", [f"plot kind {plot_kinds[0]} of scores"])
        return StageResult("exploration", [f"plot kind {plot_kinds[0]}"])
    if c := _method(live, EXPLORE_METHODS) or _method(live, {"groupby", "print", "display", "mean", "sum", "max", "min",
                                                             "median", "std", "count", "len", "sorted", "corr"}):
        if METRIC_WORDS.search(" ".join(c.arg_text() + " " + c.text for c in live)):
            return StageResult("evaluation", [f"shows scores ({c.text})"])
        return StageResult("exploration", [f"call {c.text}"])
    if IMPORTANCE_TEXT.search(source):
        return StageResult("explanation", ["feature importances"])
    if plot_kinds:
        return StageResult("exploration", ["shows a figure"])
    only_setup = imports or all(_matches(SETUP, c.name) or c.name in ("print",) for c in top)
    if only_setup and (imports or _has(live, SETUP) or _only_config(source, live)):
        return StageResult("setup", ["imports/configuration only" if imports else "configuration"])
    if _is_expression_peek(source):
        if METRIC_WORDS.search(source):
            return StageResult("evaluation", ["shows a score"])
        return StageResult("exploration", ["shows a value"])
    return StageResult("other", ["no rule matched"])


MODEL_TEXT = re.compile(r"^\s*model\w*\s*=|^\s*model\.\w+(\.\w+)*\s*=|\bmodel\.(to|cuda|load_state_dict)\(|^\s*\w*_params\s*=\s*\{"
                        r"|^\s*(optimizer|criterion)\s*=", re.M)
# every branch of MODEL_TEXT contains one of these words: a cheap scan rules most cells out
_MODEL_TEXT_WORDS = ("model", "_params", "optimizer", "criterion")
MODEL_ARGS = Quick(r"Classifier\b|Regressor\b|\bSVC\b|\bXGB|\bLGBM|CatBoost", needles=('Classifier', 'Regressor', 'SVC', 'XGB', 'LGBM', 'CatBoost'))
IMPORTANCE_TEXT = Quick(r"importance", re.I, needles=("importance",))
HELPER_WORDS = (("submi", "prediction"), ("predict", "prediction"), ("infer", "prediction"), ("evaluat", "evaluation"),
                ("score", "evaluation"), ("metric", "evaluation"), ("accuracy", "evaluation"), ("plot_roc", "evaluation"),
                ("confusion", "evaluation"), ("importance", "explanation"), ("train", "modelling"), ("fit", "modelling"),
                ("oof", "modelling"), ("load", "data_loading"), ("read", "data_loading"), ("clean", "preprocessing"),
                ("preprocess", "preprocessing"), ("feature", "feature_engineering"))


def _helper_stage(top: list[Call]) -> StageResult | None:
    """A cell that calls the notebook's own helper: the helper's name says what the cell is for."""
    for c in top:
        if c.resolved and "." not in c.name and c.name not in ("print", "display", "len", "range", "list", "dict"):
            low = c.name.lower()
            for word, stage in HELPER_WORDS:
                if word in low:
                    return StageResult(stage, [f"calls the notebook's {c.name}()"])
    return None


_RECODE_CALL = Quick(r"\.fillna\(|\.map\(\{|\.astype\(|\.replace\(|LabelEncoder|\.fit_transform\(",
                     needles=(".fillna(", ".map({", ".astype(", ".replace(", "LabelEncoder", ".fit_transform("))
_DERIVED = re.compile(r"[+\-*/]|\.apply\(|\.str\.|\.transform\(|\.cut\(|\.qcut\(|\.map\(|np\.|len\(|\.sum\(|\.mean\(|\.dt\.")
_SUMMARY = Quick(r"isnull\(\)|isna\(\)|value_counts|describe\(", needles=('isnull()', 'isna()', 'value_counts', 'describe('))
_RECODE = Quick(r"\.fillna\(|\.map\(|\.astype\(|\.replace\(|LabelEncoder|\.fit_transform\(|to_numeric|np\.where",
                needles=(".fillna(", ".map(", ".astype(", ".replace(", "LabelEncoder", ".fit_transform(", "to_numeric", "np.where"))
_CONSTANT_LINE = re.compile(r"^[A-Za-z_][\w, ]*\s*=\s*[-\w.'\"\[\]\(\){}:,/ ]+$")


def _feature_votes(calls: list[Call], assigned: list[tuple[str, str]]) -> list[str]:
    votes: list[str] = []
    memo = _MATCHES.setdefault(id(FEATURE), {})
    for c in calls:
        # _matches, with its memo looked up here (as _has does): one look-up per call in the common case
        hit = memo.get(c.name)
        if hit is None:
            hit = _matches(FEATURE, c.name)
        if not hit:
            hit = memo.get(c.text)
            if hit is None:
                hit = _matches(FEATURE, c.text)
        if hit:
            votes.append(f"call {c.name}")
        elif c.last in ("cut", "qcut"):
            votes.append(f"call {c.text}")
        elif c.last == "extract" and ".str" in c.text:
            votes.append(f"call {c.text}")
    for target, value in assigned:
        # a new column df['x'] (the target, cheap to check, first) set to something derived
        if target.count("[") != 1 or not target.endswith(("']", '"]')):
            continue
        if value[:1].isdecimal() or value[:1] in ("'", '"') or _RECODE_CALL.search(value):
            continue
        if _DERIVED.search(value):
            votes.append(f"new column {target}")
    return votes


def _preprocess_votes(calls: list[Call], assigned: list[tuple[str, str]]) -> list[str]:
    votes: list[str] = []
    for c in calls:
        if _matches(PREPROCESS, c.name):
            vote = f"call {c.name}"
        elif c.last in PREPROCESS_METHODS and c.last not in ("apply", "map", "split", "where", "sort_values", "reshape") \
                and c.in_assign:
            vote = f"call {c.text}"
        else:
            continue
        # a call on a summary (df.isnull().sum(), value_counts) looks at the data, it does not change it
        # (asked only of the calls that would vote: most do not)
        if not _SUMMARY.search(c.arg_text() + c.text):
            votes.append(vote)
    for target, value in assigned:
        if _RECODE.search(value):
            votes.append(f"recodes {target}")
    if not votes and any(c.last in ("apply", "map", "reshape", "where", "split") and c.in_assign for c in calls):
        votes.append("transforms values")
    return votes


def _only_config(source: str, calls: list[Call]) -> bool:
    """Cells that only set constants, seeds or options."""
    code = [l for l in source.splitlines() if l.strip() and not l.strip().startswith("#")]
    if not code:
        return False
    simple = sum(bool(_CONSTANT_LINE.match(l.strip())) for l in code)
    return simple == len(code) and len(calls) <= 1


def _is_expression_peek(source: str) -> bool:
    code = [l for l in source.splitlines() if l.strip() and not l.strip().startswith("#")]
    return len(code) <= 2 and bool(code) and not any("=" in l and "==" not in l for l in code)


TOKEN_RULES = (
    ("prediction", re.compile(r"to_csv\(.*sub|submission", re.I)),
    ("explanation", re.compile(r"shap\.|feature_importances_|permutation_importance")),
    ("tuning", re.compile(r"GridSearchCV|RandomizedSearchCV|optuna|best_params_")),
    ("modelling", re.compile(r"\.fit\(|\.compile\(|Sequential\(|Classifier\(|Regressor\(")),
    ("evaluation", re.compile(r"accuracy_score|confusion_matrix|roc_curve|classification_report|\.evaluate\(|\.score\(")),
    ("data_loading", re.compile(r"read_csv|read_parquet|load_data|loadtxt|load_dataset")),
    ("preprocessing", re.compile(r"fillna|dropna|get_dummies|StandardScaler|train_test_split|LabelEncoder")),
    ("exploration", re.compile(r"\.head\(|\.describe\(|\.info\(|value_counts|plt\.|sns\.|\.plot\(|print")),
    ("setup", re.compile(r"^\s*(import|from)\s|^\s*(pip|conda)\s+install", re.M)),
)


def _token_stage(source: str) -> StageResult:
    """Fallback for cells that do not parse (Python 2, broken code): keyword rules over the text."""
    for stage, pattern in TOKEN_RULES:
        if m := pattern.search(source):
            return StageResult(stage, [f"token {m.group(0).strip()!r} (cell does not parse)"])
    return StageResult("other", ["cell does not parse"])
