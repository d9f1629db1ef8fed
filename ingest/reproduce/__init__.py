"""Reproduce notebooks: re-execute them in a sandbox, store the outputs beside the originals, score them.

``execute`` runs inside the sandbox; ``docker_backend`` / ``local_backend`` run it; ``jobs`` spreads
runs over workers with Procrastinate; ``record`` and ``scoring`` turn an outcome into rows.
"""

# The Jupyter docker-stacks data-science image, pinned by digest so every machine runs the same
# bytes: the build tagged 2025-07-14 (quay.io/jupyter/datascience-notebook:2025-07-14). The digest
# was read from a public record of that repository's tags (the registry is unreachable here);
# each run also records the digest (or image id) the engine actually used, in run.image_digest.
DEFAULT_IMAGE = (
    "quay.io/jupyter/datascience-notebook"
    "@sha256:20be99bdec2d0ae0c17845e1805a152e3d6629a38aee5a6bf1348bfcf2c12231"
)
DEFAULT_TIMEOUT_S = 600.0
