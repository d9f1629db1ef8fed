"""The demo corpus: six small notebooks written by the nbatlas project itself.

They look like what the corpus is about: a practitioner exploring data, training a model and
plotting how well it does, with the usual failures. Everything runs on numpy + matplotlib with
fixed seeds, so the same nbatlas version draws the same plots.

Each notebook is a list of ``(cell_type, source)`` pairs; ``ingest.demo`` builds, executes
and writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Cell = tuple[str, str]  # ("markdown" | "code", source)


@dataclass(frozen=True)
class DemoNotebook:
    name: str  # file name without .ipynb
    title: str
    cells: list[Cell]
    nbformat: int = 4  # written to disk in this major version (3 shows the upgrade on ingest)
    ends_in_error: bool = False
    tags: tuple[str, ...] = field(default_factory=tuple)


_DATA = '''\
import numpy as np
import matplotlib.pyplot as plt

rng = np.random.default_rng(42)
n = 600
income = rng.lognormal(mean=10.5, sigma=0.45, size=n)
age = rng.integers(21, 70, size=n)
debt_ratio = rng.beta(2, 5, size=n)
risk = -1.6 - 0.5 * (income / 10_000 - 3.6) + 6.0 * (debt_ratio - 0.28) - 0.02 * (age - 45)
default = (rng.random(n) < 1 / (1 + np.exp(-risk))).astype(int)
X = np.column_stack([income / 10_000, age / 10, debt_ratio])
feature_names = ["income (10k)", "age (decades)", "debt ratio"]
'''

_MODEL = '''\
def standardise(X, mean=None, std=None):
    mean = X.mean(axis=0) if mean is None else mean
    std = X.std(axis=0) if std is None else std
    return (X - mean) / std, mean, std


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def log_loss(y, p):
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))


split = int(0.75 * n)
X_train, X_val, y_train, y_val = X[:split], X[split:], default[:split], default[split:]
X_train, mu, sd = standardise(X_train)
X_val, _, _ = standardise(X_val, mu, sd)

w, b, lr = np.zeros(X.shape[1]), 0.0, 0.5
history = {"train": [], "validation": []}
for epoch in range(60):
    p = sigmoid(X_train @ w + b)
    w -= lr * X_train.T @ (p - y_train) / len(y_train)
    b -= lr * np.mean(p - y_train)
    history["train"].append(log_loss(y_train, sigmoid(X_train @ w + b)))
    history["validation"].append(log_loss(y_val, sigmoid(X_val @ w + b)))
'''

EXPLORE = DemoNotebook(
    name="01_exploring_the_data",
    title="Exploring a credit-default data set",
    cells=[
        ("markdown", "# Exploring a credit-default data set\n\n"
                     "A synthetic stand-in for a Kaggle tabular competition: who defaults on a loan?\n"
                     "We look at the raw features before training anything."),
        ("code", "%matplotlib inline\n" + _DATA),
        ("code", 'print(f"{n} applicants, {default.mean():.1%} defaulted")\n'
                 'print("median income:", round(float(np.median(income))))'),
        ("markdown", "## Distribution of income\n\nIncome is skewed, as incomes are: a log scale would help."),
        ("code", "fig, ax = plt.subplots(figsize=(6, 3.5))\n"
                 "ax.hist(income[default == 0], bins=30, alpha=0.6, label='repaid')\n"
                 "ax.hist(income[default == 1], bins=30, alpha=0.6, label='defaulted')\n"
                 "ax.set_xlabel('income')\nax.set_ylabel('applicants')\nax.set_title('Income by outcome')\n"
                 "ax.legend()\nplt.show()"),
        ("markdown", "## Age against debt ratio\n\nDefaults cluster at high debt ratios."),
        ("code", "fig, ax = plt.subplots(figsize=(5, 4))\n"
                 "sc = ax.scatter(age, debt_ratio, c=default, cmap='coolwarm', s=12, alpha=0.7)\n"
                 "ax.set_xlabel('age')\nax.set_ylabel('debt ratio')\nax.set_title('Applicants')\n"
                 "fig.colorbar(sc, ax=ax, label='defaulted')\nplt.show()"),
        ("code", "np.corrcoef(X.T).round(2)"),
    ],
)

TRAIN = DemoNotebook(
    name="02_training_a_classifier",
    title="Training a logistic regression",
    cells=[
        ("markdown", "# Training a logistic regression\n\n"
                     "Plain gradient descent in numpy, watching the learning curve for over-fitting."),
        ("code", "%matplotlib inline\n" + _DATA),
        ("code", _MODEL),
        ("code", 'print(f"final training loss {history[\'train\'][-1]:.3f}, '
                 'validation loss {history[\'validation\'][-1]:.3f}")'),
        ("markdown", "## Learning curve\n\nBoth losses fall and stay together: no sign of over-fitting yet."),
        ("code", "fig, ax = plt.subplots(figsize=(6, 3.5))\n"
                 "ax.plot(history['train'], label='training')\n"
                 "ax.plot(history['validation'], label='validation', linestyle='--')\n"
                 "ax.set_xlabel('epoch')\nax.set_ylabel('log loss')\nax.set_title('Learning curve')\n"
                 "ax.legend()\nplt.show()"),
        ("code", "dict(zip(feature_names, w.round(3)))"),
    ],
)

EVALUATE = DemoNotebook(
    name="03_evaluating_the_model",
    title="Evaluating the model",
    cells=[
        ("markdown", "# Evaluating the model\n\n"
                     "A confusion matrix, a ROC curve and the weight of each feature: "
                     "the plots reviewers ask for."),
        ("code", "%matplotlib inline\n" + _DATA),
        ("code", _MODEL),
        ("code", "scores = sigmoid(X_val @ w + b)\n"
                 "predicted = (scores >= 0.3).astype(int)  # defaults are rare: a lower threshold\n"
                 "confusion = np.zeros((2, 2), dtype=int)\n"
                 "for truth, guess in zip(y_val, predicted):\n"
                 "    confusion[truth, guess] += 1\n"
                 "confusion"),
        ("markdown", "## Confusion matrix"),
        ("code", "fig, ax = plt.subplots(figsize=(4, 4))\n"
                 "ax.imshow(confusion, cmap='Blues')\n"
                 "for (i, j), count in np.ndenumerate(confusion):\n"
                 "    ax.text(j, i, count, ha='center', va='center', fontsize=14,\n"
                 "            color='white' if count > confusion.max() / 2 else 'black')\n"
                 "ax.set_xticks([0, 1], ['repaid', 'defaulted'])\n"
                 "ax.set_yticks([0, 1], ['repaid', 'defaulted'])\n"
                 "ax.set_xlabel('predicted')\nax.set_ylabel('actual')\nax.set_title('Confusion matrix')\n"
                 "plt.show()"),
        ("markdown", "## ROC curve"),
        ("code", "thresholds = np.linspace(1, 0, 101)\n"
                 "tpr = [((scores >= t) & (y_val == 1)).sum() / max(y_val.sum(), 1) for t in thresholds]\n"
                 "fpr = [((scores >= t) & (y_val == 0)).sum() / max((1 - y_val).sum(), 1) for t in thresholds]\n"
                 "auc = float(np.sum(np.diff(fpr) * (np.add(tpr[1:], tpr[:-1])) / 2))  # trapezoid rule\n"
                 "fig, ax = plt.subplots(figsize=(4.5, 4.5))\n"
                 "ax.plot(fpr, tpr, label=f'model (AUC = {auc:.2f})')\n"
                 "ax.plot([0, 1], [0, 1], color='grey', linestyle=':', label='chance')\n"
                 "ax.set_xlabel('false positive rate')\nax.set_ylabel('true positive rate')\n"
                 "ax.set_title('ROC curve')\nax.legend(loc='lower right')\nplt.show()"),
        ("markdown", "## Feature importance\n\nOn standardised inputs the size of a weight is a fair first look."),
        ("code", "order = np.argsort(np.abs(w))\n"
                 "fig, ax = plt.subplots(figsize=(5, 3))\n"
                 "ax.barh(np.array(feature_names)[order], np.abs(w)[order], color='tab:green')\n"
                 "ax.set_xlabel('|weight|')\nax.set_title('Feature importance')\nplt.show()"),
    ],
)

FAILED = DemoNotebook(
    name="04_a_failed_run",
    title="A run that fails",
    ends_in_error=True,
    cells=[
        ("markdown", "# A run that fails\n\n"
                     "Many shared notebooks stop with an error when someone else runs them: here the "
                     "competition's data file is not where the author had it."),
        ("code", "%matplotlib inline\nimport numpy as np\nimport matplotlib.pyplot as plt\n\n"
                 "rng = np.random.default_rng(7)\nsample = rng.normal(size=200)\n"
                 "fig, ax = plt.subplots(figsize=(5, 3))\nax.hist(sample, bins=20)\n"
                 "ax.set_title('A quick look at a sample')\nplt.show()"),
        ("markdown", "## Loading the training data"),
        ("code", 'train = np.loadtxt("../input/credit-default/train.csv", delimiter=",", skiprows=1)\n'
                 "train.shape"),
    ],
)

LEGACY = DemoNotebook(
    name="05_legacy_nbformat3",
    title="An old notebook (nbformat 3)",
    nbformat=3,
    cells=[
        ("markdown", "# An old notebook (nbformat 3)\n\n"
                     "Saved in the IPython 2 era file format; nbatlas upgrades it to nbformat 4 on ingest."),
        ("code", "%matplotlib inline\nimport numpy as np\nimport matplotlib.pyplot as plt"),
        ("code", "models = ['logistic', 'tree', 'forest', 'boosting']\n"
                 "accuracy = np.array([0.81, 0.77, 0.85, 0.87])\n"
                 "float(accuracy.mean())"),
        ("code", "fig, ax = plt.subplots(figsize=(5, 3))\n"
                 "ax.bar(models, accuracy, color=['tab:blue', 'tab:orange', 'tab:green', 'tab:red'])\n"
                 "ax.set_ylim(0.5, 1)\nax.set_ylabel('validation accuracy')\n"
                 "ax.set_title('Model comparison')\nplt.show()"),
        ("code", "for name, acc in zip(models, accuracy):\n    print(f'{name:>10}: {acc:.2f}')"),
    ],
)

FORMATS = DemoNotebook(
    name="06_figure_formats",
    title="Figures in other formats",
    cells=[
        ("markdown", "# Figures in other formats\n\n"
                     "Notebooks carry plots as PNG, JPEG or SVG. The same figure shown twice is one image "
                     "in nbatlas (images are stored by the SHA-256 of their bytes)."),
        ("code", "%matplotlib inline\nimport numpy as np\nimport matplotlib.pyplot as plt\n\n"
                 "x = np.linspace(0, 4 * np.pi, 200)\n"
                 "def wave():\n"
                 "    fig, ax = plt.subplots(figsize=(5, 2.5))\n"
                 "    ax.plot(x, np.sin(x), label='sin')\n"
                 "    ax.plot(x, np.cos(x), label='cos')\n"
                 "    ax.legend()\n"
                 "    return fig"),
        ("markdown", "## PNG, twice"),
        ("code", "fig = wave()\nplt.show()"),
        ("code", "fig = wave()\nplt.show()"),
        ("markdown", "## SVG"),
        ("code", "%config InlineBackend.figure_formats = ['svg']\n"
                 "plt.rcParams['svg.hashsalt'] = 'nbatlas-demo'  # stable element ids: same figure, same bytes\n"
                 "fig = wave()\nplt.show()"),
        ("markdown", "## JPEG"),
        ("code", "%config InlineBackend.figure_formats = ['jpeg']\n"
                 "fig, ax = plt.subplots(figsize=(4, 4))\n"
                 "ax.imshow(np.outer(np.sin(x[:60]), np.cos(x[:60])), cmap='viridis')\n"
                 "ax.set_title('A heat map as JPEG')\nplt.show()"),
    ],
)

DEMO_NOTEBOOKS: list[DemoNotebook] = [EXPLORE, TRAIN, EVALUATE, FAILED, LEGACY, FORMATS]
