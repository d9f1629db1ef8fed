"""Imports, aliases and calls of a cell, resolved to full dotted names.

A ``Scope`` lives for one notebook and is carried from cell to cell in notebook order, because a
notebook imports in its first cell and plots forty cells later: ``import matplotlib.pyplot as plt``
in cell 1 makes ``plt.plot`` in cell 40 resolve to ``matplotlib.pyplot.plot``. The scope also keeps
what a few well-known factories return (``fig, ax = plt.subplots()`` makes ``ax`` an Axes), what
each variable was assigned from (so ``cm = confusion_matrix(...)`` then ``sns.heatmap(cm)`` is seen
as a heatmap of a confusion matrix), and the functions the notebook defines (their plotting calls
count where they are called).
"""

from __future__ import annotations

import ast
import functools
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

MAX_TEXT = 160
MAX_CALLS_PER_CELL = 2000


def _bounded_walk(node: ast.AST, limit: int):
    """ast.walk, but stops after ``limit`` nodes (arguments can be huge generated expressions).

    The nodes of ``ast.walk``, in its order, without its generator per node (ast.iter_child_nodes)."""
    todo = deque([node])
    seen = 0
    AST = ast.AST
    while todo and seen < limit:
        n = todo.popleft()
        seen += 1
        for name in n._fields:
            value = getattr(n, name, None)
            if isinstance(value, AST):
                todo.append(value)
            elif value.__class__ is list:
                todo.extend([item for item in value if isinstance(item, AST)])
        yield n

# what some calls return, so attribute calls on the result resolve (``ax.scatter``)
AXES = "matplotlib.axes.Axes"
FIGURE = "matplotlib.figure.Figure"
RETURNS: dict[str, str | tuple[str, ...]] = {
    "matplotlib.pyplot.figure": FIGURE,
    "matplotlib.pyplot.gcf": FIGURE,
    "matplotlib.pyplot.subplots": (FIGURE, AXES),
    "matplotlib.pyplot.subplot": AXES,
    "matplotlib.pyplot.axes": AXES,
    "matplotlib.pyplot.gca": AXES,
    "matplotlib.pyplot.subplot2grid": AXES,
    "matplotlib.figure.Figure.add_subplot": AXES,
    "matplotlib.figure.Figure.add_axes": AXES,
    "matplotlib.figure.Figure.gca": AXES,
    "matplotlib.figure.Figure.subplots": AXES,
    "pandas.read_csv": "pandas.DataFrame",
    "pandas.read_parquet": "pandas.DataFrame",
    "pandas.read_table": "pandas.DataFrame",
    "pandas.read_excel": "pandas.DataFrame",
    "pandas.read_json": "pandas.DataFrame",
    "pandas.DataFrame": "pandas.DataFrame",
    "seaborn.FacetGrid": "seaborn.FacetGrid",
    "seaborn.PairGrid": "seaborn.PairGrid",
    "seaborn.JointGrid": "seaborn.JointGrid",
    "plotly.graph_objects.Figure": "plotly.graph_objects.Figure",
    "plotly.subplots.make_subplots": "plotly.graph_objects.Figure",
}
# module aliases that resolve to the canonical module
CANONICAL_MODULES = {
    "plotly.graph_objs": "plotly.graph_objects",
    "pylab": "matplotlib.pyplot",
    "matplotlib.pylab": "matplotlib.pyplot",
    "sklearn.cross_validation": "sklearn.model_selection",
    "sklearn.grid_search": "sklearn.model_selection",
    "tensorflow.keras": "keras",
}


_CANONICAL_ROOTS = frozenset(k.split(".")[0] for k in CANONICAL_MODULES)


# every resolved call name goes through here, and the same few hundred names (pandas methods,
# pyplot functions) come back cell after cell; bounded, as a worker lives for a whole corpus
@functools.lru_cache(maxsize=65_536)
def canonical(name: str) -> str:
    if name.split(".", 1)[0] in _CANONICAL_ROOTS:
        for old, new in CANONICAL_MODULES.items():
            if name == old or name.startswith(old + "."):
                return new + name[len(old):]
    return name


@dataclass(slots=True, init=False)
class Call:
    name: str  # resolved dotted name, e.g. matplotlib.pyplot.plot, or <unknown>.plot.hist
    text: str  # the callee as written, e.g. plt.plot
    line: int
    args: list[str] = field(default_factory=list)  # positional arguments as source text (shortened)
    kwargs: dict[str, str] = field(default_factory=dict)
    resolved: bool = True  # False when the receiver's origin is unknown (a DataFrame from elsewhere...)
    via: str | None = None  # the notebook function this call happens in, when reached through it
    origins: list[str] = field(default_factory=list)  # what the argument variables were assigned from
    segment: int = 0  # figure segment of the cell (a new figure / show starts a new one)
    in_def: bool = False  # inside a def/class body of this cell (runs only when called)
    in_assign: bool = False  # its result is stored (``df = df.fillna(0)``), or it works in place
    shapes: tuple[str, ...] | None = field(default=None, repr=False, compare=False)  # memo of plots.shape_of
    # the last part of the name (``plot`` of ``matplotlib.pyplot.plot``): every rule asks for it
    last: str = field(default="", repr=False, compare=False)
    _arg_text: str | None = field(default=None, repr=False, compare=False)

    def __init__(self, name: str, text: str, line: int, args: list[str] | None = None, kwargs: dict[str, str] | None = None,
                 resolved: bool = True, via: str | None = None, origins: list[str] | None = None, segment: int = 0,
                 in_def: bool = False, in_assign: bool = False, shapes: tuple[str, ...] | None = None) -> None:
        # written out: the dataclass __init__ with default factories is a visible share of the analysis
        self.name, self.text, self.line = name, text, line
        self.args = [] if args is None else args
        self.kwargs = {} if kwargs is None else kwargs
        self.resolved, self.via = resolved, via
        self.origins = [] if origins is None else origins
        self.segment, self.in_def, self.in_assign, self.shapes = segment, in_def, in_assign, shapes
        self.last = name[name.rfind(".") + 1:]
        self._arg_text = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "text": self.text, "line": self.line}
        if self.args:
            out["args"] = self.args
        if self.kwargs:
            out["kwargs"] = self.kwargs
        if not self.resolved:
            out["resolved"] = False
        if self.via:
            out["via"] = self.via
        return out

    def arg_text(self) -> str:
        """All argument text plus the origins of argument variables: what rules look into.

        Computed once: the rules ask for it many times, and args/origins are complete by then."""
        text = self._arg_text
        if text is None:
            text = self._arg_text = " ".join([*self.args, *self.kwargs.values(), *self.origins])
        return text


@dataclass
class Import:
    module: str
    name: str | None
    alias: str
    line: int

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"module": self.module, "alias": self.alias, "line": self.line}
        if self.name:
            out["name"] = self.name
        return out

    @property
    def library(self) -> str:
        return self.module.split(".")[0]


@dataclass
class FunctionFacts:
    name: str
    calls: list[Call]


@dataclass
class Scope:
    """Names known so far in the notebook (imports, typed variables, assignment origins, functions)."""

    names: dict[str, str] = field(default_factory=dict)  # alias -> dotted module/object name
    types: dict[str, str] = field(default_factory=dict)  # variable -> dotted type name
    origins: dict[str, str] = field(default_factory=dict)  # variable -> source text it was assigned from
    functions: dict[str, FunctionFacts] = field(default_factory=dict)
    star_modules: list[str] = field(default_factory=list)
    # module_roots() as of the names it was computed from (a copy of ``names``)
    _roots: set[str] = field(default_factory=set, repr=False, compare=False)
    _roots_of: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def module_roots(self) -> set[str]:
        """Top-level modules the names refer to (``plt`` -> matplotlib). Asked for every cell, while
        the names change in a few cells only: comparing two dicts is much cheaper than splitting
        every name again."""
        if self._roots_of != self.names:
            self._roots_of = dict(self.names)
            self._roots = {v.split(".")[0] for v in self.names.values()}
        return self._roots


def _short(text: str) -> str:
    # most texts are one short line: no whitespace to fold (isprintable is False for every whitespace
    # character str.split folds, except the plain space)
    if not (text.isprintable() and "  " not in text and text[:1] != " " and text[-1:] != " "):
        text = " ".join(text.split())
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _src(node: ast.AST) -> str:
    try:
        return _short(ast.unparse(node))
    except Exception:  # unparse of odd nodes (very old ASTs) should never stop the analysis
        return ""


def dotted(node: ast.AST) -> list[str] | None:
    """``a.b.c`` -> ['a','b','c']; a call in the chain becomes '()' (``df['x'].value_counts().plot``)."""
    parts: list[str] = []
    while True:
        if isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Name):
            parts.append(node.id)
            return parts[::-1]
        elif isinstance(node, ast.Call):
            parts.append("()")
            node = node.func
        elif isinstance(node, ast.Subscript):
            parts.append("[]")
            node = node.value
        else:
            return None


_DISPATCH: dict[type, Any] = {}


def _visit_nothing(visitor: Any, node: Any) -> None:
    return None

# nodes that hold nothing the analyser needs (contexts, operators, names, constants)
_LEAVES = frozenset({ast.Load, ast.Store, ast.Del, ast.Name, ast.Constant, ast.Add, ast.Sub, ast.Mult, ast.Div,
                     ast.Mod, ast.Pow, ast.FloorDiv, ast.BitAnd, ast.BitOr, ast.BitXor, ast.USub, ast.UAdd, ast.Not,
                     ast.Invert, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Is, ast.IsNot, ast.In,
                     ast.NotIn, ast.And, ast.Or, ast.MatMult, ast.LShift, ast.RShift, ast.alias})


# fields that hold identifiers, flags or operators, never a node worth visiting
_SCALAR_FIELDS = frozenset({"ctx", "op", "id", "attr", "arg", "name", "type_comment", "kind", "level", "module",
                            "conversion", "simple", "is_async"})
_CHILD_FIELDS: dict[type, tuple[str, ...]] = {}


class CellVisitor(ast.NodeVisitor):
    """Collects imports and calls of one cell, updating the notebook scope as it goes (in source order)."""

    def __init__(self, scope: Scope, text: str | None = None):
        self.scope = scope
        self._text = text
        self._lines: list[str] | None = None  # split on the first src()
        self._ascii = False  # the whole text is ASCII (known with the lines)
        self.imports: list[Import] = []
        self.calls: list[Call] = []
        self.segment = 0
        self._segment_has_plot = False
        self._def_depth = 0
        self._def_name: str | None = None
        self.assigned_columns: list[tuple[str, str]] = []  # (target text, value text) of df['x'] = ...
        self.defines: list[str] = []
        self.bases: list[str] = []  # resolved base classes of classes defined here (torch.nn.Module...)
        self.deletes = 0
        self.truncated = False
        self._assign_depth = 0
        self.tail_names: set[str] | None = None  # names used in the unanalysed rest of a long cell
        # callee -> resolve() of it, as visit_Call found it: ``x = f(...)`` asks again for its type,
        # and nothing inside an expression changes the scope
        self._resolved: dict[ast.Call, tuple[str | None, bool]] = {}

    def visit(self, node: ast.AST) -> None:
        # NodeVisitor.visit builds a method name per node; a per-class cache is much faster on big cells
        if self.truncated:
            return
        (_DISPATCH.get(node.__class__) or self._method(node.__class__))(self, node)

    def generic_visit(self, node: ast.AST) -> None:
        # ast.iter_child_nodes, without its generators and without fields that never hold a node
        # (identifiers, contexts, operators): the visitor's hottest loop
        fields = _CHILD_FIELDS.get(node.__class__)
        if fields is None:
            fields = _CHILD_FIELDS[node.__class__] = tuple(f for f in node._fields if f not in _SCALAR_FIELDS)
        if self.truncated:
            return
        for name in fields:
            value = getattr(node, name, None)
            if value.__class__ is list:
                for item in value:
                    cls = item.__class__
                    if cls not in _LEAVES:
                        (_DISPATCH.get(cls) or self._method(cls))(self, item)
            elif value.__class__ not in _LEAVES:
                (_DISPATCH.get(value.__class__) or self._method(value.__class__))(self, value)

    @classmethod
    def _method(cls, node_class: type):
        if issubclass(node_class, ast.AST):
            method = getattr(cls, "visit_" + node_class.__name__, None) or cls.generic_visit
        else:  # identifiers in lists (global names), None
            method = _visit_nothing
        _DISPATCH[node_class] = method
        return method

    # the commonest nodes, without generic_visit's loop over their fields
    def visit_Attribute(self, node: ast.Attribute) -> None:
        value = node.value
        if value.__class__ is not ast.Name:
            (_DISPATCH.get(value.__class__) or self._method(value.__class__))(self, value)

    def visit_Expr(self, node: ast.Expr) -> None:
        value = node.value
        (_DISPATCH.get(value.__class__) or self._method(value.__class__))(self, value)

    visit_keyword = visit_Expr  # type: ignore[assignment]

    def visit_BinOp(self, node: ast.BinOp) -> None:
        for value in (node.left, node.right):
            if value.__class__ not in _LEAVES:
                (_DISPATCH.get(value.__class__) or self._method(value.__class__))(self, value)

    def src(self, node: ast.AST) -> str:
        """Source text of a node, sliced from the cell (much cheaper than ast.unparse)."""
        if node.__class__ is ast.Name and node.id.isascii():  # an ASCII name is its own text
            return node.id
        lines = self._lines
        if lines is None and self._text is not None:
            lines = self._lines = self._text.splitlines(keepends=True)
            self._ascii = self._text.isascii()
        try:
            l0, l1 = node.lineno - 1, node.end_lineno - 1  # type: ignore[attr-defined]
            c0, c1 = node.col_offset, node.end_col_offset  # type: ignore[attr-defined]
        except AttributeError:
            return _src(node)
        if lines is None or l1 >= len(lines) or l0 < 0 or l1 < l0:
            return _src(node)
        if l0 == l1:
            line = lines[l0]
            if self._ascii or line.isascii():  # (columns are UTF-8 byte offsets)
                text = line[c0:c1]
                # the commonest text: a short piece of one line, printable, without runs of spaces
                # (what _short would return unchanged)
                if c1 - c0 <= MAX_TEXT and text.isprintable() and "  " not in text and text[:1] != " " and text[-1:] != " ":
                    return text
            else:
                text = line.encode()[c0:c1].decode(errors="replace")
        else:
            first = lines[l0]
            head = first[c0:] if first.isascii() else first.encode()[c0:].decode(errors="replace")
            if l1 - l0 > 8:
                # a long expression (a literal, a chained call over many lines), sliced again for every
                # call inside it: its first lines usually give the whole shortened text. Whitespace
                # folding of a prefix is a prefix of the folding of the whole, so once the prefix folds
                # to more than MAX_TEXT characters the shortened text is the same.
                prefix = " ".join((head + "".join(lines[l0 + 1:l0 + 8])).split())
                if len(prefix) > MAX_TEXT:
                    return prefix[: MAX_TEXT - 1] + "…"
            last = lines[l1]
            tail = last[:c1] if last.isascii() else last.encode()[:c1].decode(errors="replace")
            text = head + "".join(lines[l0 + 1:l1]) + tail
        return _short(text)

    # leaves and data literals hold no calls: skipping them is most of the speed on generated cells
    def visit_Constant(self, node: ast.Constant) -> None:
        return None

    def visit_Name(self, node: ast.Name) -> None:
        return None

    def _literal(self, elts: list) -> bool:
        return len(elts) > 20 and all(isinstance(e, (ast.Constant, ast.UnaryOp)) for e in elts[:20]) and \
            all(isinstance(e, (ast.Constant, ast.UnaryOp)) for e in elts)

    def visit_List(self, node: ast.List) -> None:
        if not self._literal(node.elts):
            self.generic_visit(node)

    visit_Tuple = visit_List  # type: ignore[assignment]
    visit_Set = visit_List  # type: ignore[assignment]

    def visit_Dict(self, node: ast.Dict) -> None:
        if not self._literal(node.values):
            self.generic_visit(node)

    # imports ------------------------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            module = canonical(alias.name)
            if alias.asname:
                self.scope.names[alias.asname] = module
                self.imports.append(Import(module, None, alias.asname, node.lineno))
            else:
                top = alias.name.split(".")[0]
                self.scope.names[top] = canonical(top)
                self.imports.append(Import(module, None, top, node.lineno))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:  # relative import: a local module
            module = "." * node.level + (node.module or "")
        else:
            module = canonical(node.module or "")
        for alias in node.names:
            if alias.name == "*":
                self.scope.star_modules.append(module)
                self.imports.append(Import(module, "*", "*", node.lineno))
                continue
            full = canonical(f"{module}.{alias.name}") if module else alias.name
            name = alias.asname or alias.name
            self.scope.names[name] = full
            self.imports.append(Import(module, alias.name, name, node.lineno))

    # definitions --------------------------------------------------------------------------
    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        if self._def_depth == 0:
            self.defines.append(node.name)
        start = len(self.calls)
        outer, self._def_name = self._def_name, node.name if self._def_depth == 0 else self._def_name
        self._def_depth += 1
        saved = dict(self.scope.types), dict(self.scope.origins)
        for stmt in node.body:
            self.visit(stmt)
        # local variables of the function do not leak into the notebook scope
        self.scope.types, self.scope.origins = saved
        self._def_depth -= 1
        self._def_name = outer
        if self._def_depth == 0:
            self.scope.functions[node.name] = FunctionFacts(node.name, [c for c in self.calls[start:] if c.in_def])

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        if self._def_depth == 0:
            self.defines.append(node.name)
        for base in node.bases:
            name, ok = self.resolve(base)
            if name and ok:
                self.bases.append(name)
            self.visit(base)
        self._def_depth += 1
        outer, self._def_name = self._def_name, self._def_name or node.name
        for stmt in node.body:
            self.visit(stmt)
        self._def_depth -= 1
        self._def_name = outer

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.visit(node.body)

    # assignments: remember types and origins -----------------------------------------------
    def visit_Delete(self, node: ast.Delete) -> None:
        if self._def_depth == 0:
            self.deletes += 1
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        self._assign_depth += 1
        self.visit(node.value)
        self._assign_depth -= 1
        for i, target in enumerate(node.targets):
            if i:  # ``a = b = f()``: binding ``a`` may have changed what ``f`` resolves to
                self._resolved.pop(node.value, None)
            self._bind(target, node.value)
            if target.__class__ is not ast.Name:  # a plain name holds no call
                self.visit(target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
            self._bind(node.target, node.value)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.visit(node.value)
        if isinstance(node.target, ast.Name):
            prev = self.scope.origins.get(node.target.id, "")
            self.scope.origins[node.target.id] = _short(prev + " " + self.src(node.value))

    def visit_For(self, node: ast.For) -> None:
        self.visit(node.iter)
        # ``for ax in axes.flat`` / ``for i, ax in enumerate(axes)``: the loop variable is an Axes too
        it_type = self._type_of(node.iter)
        text = None
        for name in ast.walk(node.target):
            if isinstance(name, ast.Name):
                if it_type == AXES:
                    self.scope.types[name.id] = AXES
                if text is None:
                    text = self.src(node.iter)
                self.scope.origins[name.id] = text
        for stmt in node.body + node.orelse:
            self.visit(stmt)

    def visit_With(self, node: ast.With) -> None:
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self._bind(item.optional_vars, item.context_expr)
        for stmt in node.body:
            self.visit(stmt)

    def _type_of(self, node: ast.AST) -> str | None:
        """Dotted type of an expression, for the few types that matter (Axes, Figure, DataFrame...)."""
        if isinstance(node, ast.Name):
            return self.scope.types.get(node.id)
        if isinstance(node, ast.Subscript):  # axes[0], axes[i, j]
            return self._type_of(node.value)
        if isinstance(node, ast.Attribute):
            base = self._type_of(node.value)
            if base == AXES and node.attr in ("flat", "flatten", "ravel", "T"):
                return AXES
            if base == "seaborn.FacetGrid" and node.attr in ("ax", "axes"):
                return AXES
            return None
        if isinstance(node, ast.Call):
            # axes.flatten(), enumerate(axes), zip(x, axes)
            if isinstance(node.func, ast.Attribute) and node.func.attr in ("flatten", "ravel") and self._type_of(node.func.value) == AXES:
                return AXES
            if isinstance(node.func, ast.Name) and node.func.id in ("enumerate", "zip", "list", "iter") and any(
                self._type_of(a) == AXES for a in node.args
            ):
                return AXES
            found = self._resolved.get(node)
            name = (found or self.resolve(node.func))[0]
            ret = RETURNS.get(name) if name else None
            if isinstance(ret, tuple):
                return ret[-1]
            if ret:
                return ret
            if name and name.endswith(".twinx") or name and name.endswith(".twiny"):
                return AXES
        return None

    def _bind(self, target: ast.AST, value: ast.AST) -> None:
        cls = target.__class__
        if cls is ast.Attribute or cls is ast.Starred:  # ``self.x = ...``: nothing of the notebook's to bind
            return
        text = self.src(value)
        if cls is ast.Name:
            self.scope.origins[target.id] = text
            typ = self._type_of(value)
            if typ:
                self.scope.types[target.id] = typ
            else:
                self.scope.types.pop(target.id, None)
            # ``p = plt`` / ``sk = sklearn.metrics``: an alias made by assignment
            res, ok = self.resolve(value) if isinstance(value, (ast.Name, ast.Attribute)) else (None, False)
            if ok and res and not isinstance(value, ast.Call) and res.split(".")[0] in _KNOWN_ROOTS:
                self.scope.names[target.id] = res
        elif isinstance(target, (ast.Tuple, ast.List)):
            ret = None
            if isinstance(value, ast.Call):
                found = self._resolved.get(value)
                name = (found or self.resolve(value.func))[0]
                ret = RETURNS.get(name or "")
            for i, elt in enumerate(target.elts):
                for n in ast.walk(elt):
                    if isinstance(n, ast.Name):
                        self.scope.origins[n.id] = text
                        if isinstance(ret, tuple):
                            self.scope.types[n.id] = ret[min(i, len(ret) - 1)]
        elif isinstance(target, ast.Subscript):
            self.assigned_columns.append((self.src(target), text))

    # calls --------------------------------------------------------------------------------
    def resolve(self, func: ast.AST) -> tuple[str | None, bool]:
        """Full dotted name of a callee and whether its root is known."""
        # most callees are ``f`` or ``x.f``: no list to build and reverse for them
        cls = func.__class__
        if cls is ast.Attribute and func.value.__class__ is ast.Name:  # type: ignore[attr-defined]
            root, rest = func.value.id, [func.attr]  # type: ignore[attr-defined]
        elif cls is ast.Name:
            root, rest = func.id, []  # type: ignore[attr-defined]
        else:
            parts = dotted(func)
            if not parts:
                return None, False
            root, rest = parts[0], parts[1:]
        scope = self.scope
        base = scope.names.get(root)  # the scope's values are never None
        if base is None:
            base = scope.types.get(root)
        if base is None:
            known = root in scope.functions or root in _BUILTINS
            if not rest:
                return root, known
            return ".".join([root if known else "<" + root + ">", *rest]), known
        # a typed call result in the chain: plt.figure().add_subplot -> Figure.add_subplot
        if len(rest) == 1 and rest[0] != "()" and rest[0] != "[]":
            return canonical(base + "." + rest[0]), True
        name = base
        for part in rest:
            if part == "()":
                ret = RETURNS.get(name)
                if isinstance(ret, tuple):
                    ret = ret[-1]
                name = ret or name + "()"
            elif part == "[]":
                if name in (AXES,):
                    continue
                name = name + "[]"
            else:
                name = name + "." + part
        return canonical(name), True

    def visit_Call(self, node: ast.Call) -> None:
        if len(self.calls) >= MAX_CALLS_PER_CELL:
            # generated cells (thousands of pl.col(...) calls): the first ones tell what the cell does
            self.truncated = True
            return
        func = node.func
        name, ok = self._resolved[node] = self.resolve(func)
        if name is None:
            name, ok = "<expr>." + (func.attr if func.__class__ is ast.Attribute else "?"), False
        # subscript chains on unknown roots: df['x'].value_counts().plot -> <df>[].value_counts().plot
        src = self.src
        # many calls have no arguments or no keywords (df.head(), plt.show()): no comprehension then
        args, keywords = node.args, node.keywords
        in_def = self._def_depth > 0
        kwargs = {kw.arg: src(kw.value) for kw in keywords if kw.arg} if keywords else None
        call = Call(
            name,
            src(func),  # text
            node.lineno,
            [src(a) for a in args[:4]] if args else None,
            kwargs,
            ok,  # resolved
            self._def_name if in_def else None,  # via
            None,  # origins
            self.segment,
            in_def,
            self._assign_depth > 0 or (kwargs is not None and "inplace" in kwargs),  # in_assign
        )
        plots = bool(shape_of(call))
        # what argument variables were assigned from matters only to plot-kind rules
        if plots or call.last in ("heatmap", "imshow", "plot"):
            call.origins = self._arg_origins(node)
        if not in_def and self._segment_has_plot and starts_figure(call):
            self.segment += 1
            self._segment_has_plot = False
            call.segment = self.segment
        self.calls.append(call)
        # the callee's own receiver/arguments may hold calls (df.groupby(...).mean().plot(...));
        # visited as generic_visit would (func, args, keywords), without its loop over the fields
        children = (func, *args, *[kw.value for kw in keywords]) if keywords else (func, *args) if args else (func,)
        for child in children:
            if child.__class__ not in _LEAVES:
                if self.truncated:
                    return
                (_DISPATCH.get(child.__class__) or self._method(child.__class__))(self, child)
        if not in_def:
            if plots:
                self._segment_has_plot = True
            # a notebook function called here: its calls happen here (recursively, once each)
            fn = self.scope.functions.get(name) if ok else None
            if fn is not None:
                self._inline(fn, seen={fn.name})
            # FacetGrid.map(plt.hist, ...) / g.map_diag(sns.kdeplot): the mapped function is called
            if call.last in ("map", "map_diag", "map_offdiag", "map_upper", "map_lower", "map_dataframe") and node.args:
                mapped, mok = self.resolve(node.args[0])
                if mapped and mok:
                    self.calls.append(Call(name=mapped, text=self.src(node.args[0]), line=call.line, resolved=True,
                                           via=call.text, segment=self.segment))
                    self._segment_has_plot = True
            if ends_figure(call):
                if self._segment_has_plot:
                    self.segment += 1
                self._segment_has_plot = False

    def _inline(self, fn: FunctionFacts, seen: set[str]) -> None:
        for inner in fn.calls:
            copy = Call(inner.name, inner.text, inner.line, inner.args, inner.kwargs, inner.resolved, fn.name,
                        inner.origins, self.segment, False, inner.in_assign, inner.shapes)
            copy._arg_text = inner._arg_text  # the same arguments and origins: the same text, if known yet
            self.calls.append(copy)
            if is_plot_call(copy):
                self._segment_has_plot = True
            nested = self.scope.functions.get(inner.name)
            if nested is not None and nested.name not in seen:
                self._inline(nested, seen | {nested.name})

    def _arg_origins(self, node: ast.Call) -> list[str]:
        out: list[str] = []
        for arg in [*node.args[:4], *[k.value for k in node.keywords[:8]]]:
            for n in _bounded_walk(arg, 40):
                if isinstance(n, ast.Name) and n.id in self.scope.origins:
                    origin = self.scope.origins[n.id]
                    if origin not in out:
                        out.append(origin)
                if len(out) >= 4:
                    return out
        # method receivers carry meaning too: cm_df.plot(...) / importances.plot.barh()
        recv = node.func
        while isinstance(recv, (ast.Attribute, ast.Call, ast.Subscript)):
            recv = recv.value if not isinstance(recv, ast.Call) else recv.func
        if isinstance(recv, ast.Name) and recv.id in self.scope.origins and recv.id not in self.scope.names:
            origin = self.scope.origins[recv.id]
            if origin not in out:
                out.append(origin)
        return out


_KNOWN_ROOTS = frozenset({
    "matplotlib", "seaborn", "plotly", "pandas", "numpy", "sklearn", "shap", "bokeh", "altair", "missingno",
    "wordcloud", "folium", "xgboost", "lightgbm", "catboost", "yellowbrick", "keras", "tensorflow", "torch",
})
_BUILTINS = frozenset({"print", "display", "len", "range", "enumerate", "zip", "list", "dict", "set", "sorted", "sum",
                       "min", "max", "open", "round", "int", "float", "str", "map", "filter", "abs", "isinstance",
                       "type", "tuple", "any", "all", "next", "iter", "super", "getattr", "setattr", "hasattr"})


def top_library(name: str) -> str | None:
    """Top-level library of a resolved call name, or None for builtins/unknown receivers."""
    if not name or name.startswith("<") or name.startswith("."):
        return None
    root = name.split(".")[0]
    if root in _BUILTINS or root == "()":
        return None
    return root


def repair_python2(source: str) -> str | None:
    """Python 2 ``print x`` statements rewritten as calls, using the tokenizer (not regexes).

    Old notebooks (nbformat 3, Python 2 kernels) fail to parse only because of these; repairing them
    keeps their imports and calls visible. Returns None when there is nothing to repair.
    """
    import io
    import tokenize

    if "print" not in source:  # nothing to repair, without tokenizing the cell
        return None
    lines = source.splitlines(keepends=True)
    edits: list[tuple[int, int, int]] = []  # (row, col of 'print' end, col of logical line end) ...
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    at_line_start = True
    for i, tok in enumerate(tokens):
        if tok.type in (tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.COMMENT):
            at_line_start = tok.type != tokenize.COMMENT or at_line_start
            continue
        if at_line_start and tok.type == tokenize.NAME and tok.string == "print":
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            if nxt is not None and nxt.type not in (tokenize.NEWLINE, tokenize.OP) or (
                nxt is not None and nxt.type == tokenize.OP and nxt.string not in ("(", "=", ".", ")")
            ):
                # find the end of the logical line
                j = i + 1
                while j < len(tokens) and tokens[j].type not in (tokenize.NEWLINE, tokenize.ENDMARKER):
                    j += 1
                end = tokens[j - 1].end
                if end[0] == tok.start[0]:
                    edits.append((tok.start[0], tok.end[1], end[1]))
        at_line_start = False
    if not edits:
        return None
    for row, start, end in reversed(edits):
        line = lines[row - 1]
        body = line[start:end].strip().rstrip(",")
        lines[row - 1] = line[: start - len("print")] + "print(" + body + ")" + line[end:]
    return "".join(lines)


def token_calls(source: str, scope: Scope) -> list[Call]:
    """Calls seen by the tokenizer alone, for cells that do not parse: ``a.b.c(`` sequences, resolved via the scope."""
    import io
    import tokenize

    calls: list[Call] = []
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError) as exc:
        tokens = getattr(exc, "tokens", []) or []
        if not tokens:  # keep what tokenized before the error
            out = []
            try:
                for tok in tokenize.generate_tokens(io.StringIO(source).readline):
                    out.append(tok)
            except Exception:
                pass
            tokens = out
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.type == tokenize.NAME and (i == 0 or tokens[i - 1].string != "."):
            parts = [tok.string]
            j = i + 1
            while j + 1 < len(tokens) and tokens[j].string == "." and tokens[j + 1].type == tokenize.NAME:
                parts.append(tokens[j + 1].string)
                j += 2
            if j < len(tokens) and tokens[j].string == "(":
                # argument text: up to the matching parenthesis on the same tokens
                depth, k = 0, j
                while k < len(tokens):
                    if tokens[k].string in "([{":
                        depth += 1
                    elif tokens[k].string in ")]}":
                        depth -= 1
                        if depth == 0:
                            break
                    k += 1
                arg_text = " ".join(t.string for t in tokens[j + 1:k])
                root = parts[0]
                if root in scope.names:
                    name, ok = canonical(".".join([scope.names[root], *parts[1:]])), True
                elif root in scope.types:
                    name, ok = ".".join([scope.types[root], *parts[1:]]), True
                else:
                    name, ok = (".".join(["<" + root + ">", *parts[1:]]) if len(parts) > 1 else root), len(parts) == 1
                kwargs = {}
                for m in re.finditer(r"(\w+) = ([^,]+)", arg_text):
                    kwargs[m.group(1)] = m.group(2).strip()
                calls.append(Call(name=name, text=".".join(parts), line=tok.start[0], args=[_short(arg_text)],
                                  kwargs=kwargs, resolved=ok))
            i = j
        else:
            i += 1
    return calls


# imported at the end: plots imports Call and AXES from this module, which is always loaded first
# (ingest.understand's __init__ imports analyzer, which imports this module before plots)
from ingest.understand.plots import ends_figure, is_plot_call, shape_of, starts_figure  # noqa: E402
