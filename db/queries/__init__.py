"""SQL lives here, one module per subject; every function takes its session (and ids) as keywords.

Batch functions have the shape ``f(*, session, ids)`` so API DataLoaders and CLI jobs share them.
"""
