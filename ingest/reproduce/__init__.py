"""Reproduce notebooks: re-execute them in a sandbox, store the outputs beside the originals, score them.

``execute`` runs inside the sandbox; ``docker_backend`` / ``local_backend`` run it; ``jobs`` spreads
runs over workers with Procrastinate; ``record`` and ``scoring`` turn an outcome into rows.
"""

# The Jupyter docker-stacks data-science image, pinned by its date tag (the build of 2026-09-01).
# A registry digest could not be looked up where this was written (no registry reachable); each
# run records the digest (or image id) the engine actually used, in run.image_digest.
DEFAULT_IMAGE = "quay.io/jupyter/datascience-notebook:2026-09-01"
DEFAULT_TIMEOUT_S = 600.0
