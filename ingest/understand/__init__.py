"""Understanding the code of a notebook: imports, resolved calls, libraries, plot kinds, ML stages, context.

Pure functions over a parsed notebook (no database): the ingest workers run them per notebook, the
``analyze`` job re-runs them over stored cells. ``analyze_notebook`` is the entry point.
"""

from ingest.understand.analyzer import ANALYZER_VERSION, NotebookFacts, analyze_cells, analyze_notebook

__all__ = ["ANALYZER_VERSION", "NotebookFacts", "analyze_cells", "analyze_notebook"]
