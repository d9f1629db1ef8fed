"""Build the runner image locally, for machines whose engine cannot pull from a registry.

The recipe: a Debian root file system made with ``debootstrap`` (or any local image given as
``--base``), imported into the engine, plus one Dockerfile layer that creates a virtualenv
with nbclient, ipykernel and the usual plotting stack from wheels downloaded *on the host*
(the build container gets no network: ``pip install --no-index``), and an unprivileged user.

Everything slow is cached under a cache directory, keyed by the recipe: the root file system
tarball, the wheelhouse, and the finished image (``docker save``), so a second build on the
same machine, or a CI rerun with the cache kept, is a ``docker load`` of a few seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

RUNNER_TAG = "nbatlas-runner:latest"
RUNNER_UID = 1000
RUNNER_GID = 100  # Debian's and Jupyter docker-stacks' "users" group
LABEL = "org.nbatlas.runner"

# what a run needs: the executor, the kernel, and the plotting stack most notebooks import
DEFAULT_REQUIREMENTS = (
    "nbclient>=0.10,<1",
    "nbformat>=5.10,<6",
    "ipykernel>=6.29,<8",
    "numpy>=1.26,<3",
    "pandas>=2.1,<3",
    "matplotlib>=3.8,<4",
)

DOCKERFILE = """\
FROM {base}
USER root
COPY wheels /tmp/nbatlas-wheels
RUN set -e; \\
    python3 -m venv /opt/nbatlas-runner; \\
    /opt/nbatlas-runner/bin/pip install --no-index --no-cache-dir --disable-pip-version-check \\
        --find-links /tmp/nbatlas-wheels {requirements}; \\
    rm -rf /tmp/nbatlas-wheels; \\
    (getent group {gid} >/dev/null || groupadd -g {gid} runners); \\
    (id -u {uid} >/dev/null 2>&1 || useradd -u {uid} -g {gid} -M -d /tmp/home -s /bin/sh runner); \\
    mkdir -p /kaggle/input /kaggle/working /nbatlas; \\
    MPLCONFIGDIR=/opt/nbatlas-runner/mplconfig /opt/nbatlas-runner/bin/python -c "import matplotlib.pyplot" || true
# matplotlib's font cache, built once here: each run copies it into its empty /tmp (execute.py)
ENV PATH=/opt/nbatlas-runner/bin:/usr/local/bin:/usr/bin:/bin \\
    HOME=/tmp/home PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \\
    NBATLAS_MPLCONFIG_SEED=/opt/nbatlas-runner/mplconfig
USER {uid}:{gid}
WORKDIR /kaggle/working
LABEL {label}="1" {label}.recipe="{recipe_key}"
"""


class RunnerImageError(RuntimeError):
    """The runner image could not be built; the message says which step and why."""


def default_cache_dir() -> Path:
    """Where built artefacts are kept: $NBATLAS_RUNNER_CACHE, else /var/cache/nbatlas-ci when
    writable (CI), else the user's cache directory."""
    given = os.environ.get("NBATLAS_RUNNER_CACHE")
    if given:
        return Path(given)
    ci = Path("/var/cache/nbatlas-ci")
    if ci.is_dir() and os.access(ci, os.W_OK):
        return ci / "runner"
    import platformdirs

    return Path(platformdirs.user_cache_dir("nbatlas", appauthor=False)) / "runner"


@dataclass(frozen=True)
class Recipe:
    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    debs: tuple[str, ...] = ("python3", "python3-pip", "python3-venv")
    requirements: tuple[str, ...] = DEFAULT_REQUIREMENTS
    python_version: str = "3.11"  # bookworm's python3; the wheels are fetched for it
    base_image: str | None = None  # a local image to build on instead of debootstrap
    extra: tuple[str, ...] = field(default_factory=tuple)

    def _digest(self, *parts: object) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @property
    def rootfs_key(self) -> str:
        return self._digest("rootfs", self.suite, self.mirror, sorted(self.debs))

    @property
    def wheels_key(self) -> str:
        return self._digest("wheels", self.python_version, sorted(self.requirements + self.extra))

    @property
    def key(self) -> str:
        base = self.base_image or self.rootfs_key
        return self._digest("image", base, self.wheels_key, self.dockerfile("BASE"))

    @property
    def base_tag(self) -> str:
        return f"nbatlas-runner-base:{self.suite}-{self.rootfs_key}"

    def dockerfile(self, base: str) -> str:
        reqs = " ".join(f"'{r}'" for r in self.requirements + self.extra)
        return DOCKERFILE.format(base=base, requirements=reqs, uid=RUNNER_UID, gid=RUNNER_GID,
                                 label=LABEL, recipe_key="{recipe_key}")


@dataclass
class BuildReport:
    tag: str
    image_id: str
    recipe_key: str
    from_cache: str  # "engine" (already there), "saved-image", or "built"
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"tag": self.tag, "image_id": self.image_id, "recipe_key": self.recipe_key,
                "from_cache": self.from_cache, "seconds": self.seconds}


Progress = Callable[[str], None]


def _run(cmd: list[str], *, what: str, log: Path | None = None) -> None:
    try:
        with (open(log, "ab") if log else open(os.devnull, "wb")) as out:
            subprocess.run(cmd, check=True, stdout=out, stderr=subprocess.STDOUT)
    except FileNotFoundError as exc:
        raise RunnerImageError(f"{what}: {cmd[0]} is not installed ({exc})") from exc
    except subprocess.CalledProcessError as exc:
        hint = f"; see {log}" if log else ""
        raise RunnerImageError(f"{what} failed (exit {exc.returncode}){hint}") from exc


def build_rootfs(recipe: Recipe, cache: Path, progress: Progress = lambda m: None) -> Path:
    """A tarball of a minimal Debian with Python (debootstrap), cached by recipe."""
    target = cache / f"rootfs-{recipe.suite}-{recipe.rootfs_key}.tar"
    if target.exists():
        return target
    if shutil.which("debootstrap") is None:
        raise RunnerImageError("debootstrap is not installed (apt-get install -y debootstrap), "
                               "or pass --base IMAGE with a local image that has python3")
    if os.geteuid() != 0:
        raise RunnerImageError("debootstrap needs root; run `nbatlas runner-image build` as root or pass --base IMAGE")
    cache.mkdir(parents=True, exist_ok=True)
    log = cache / "debootstrap.log"
    with tempfile.TemporaryDirectory(prefix="nbatlas-rootfs-", dir=cache) as tmp:
        root = Path(tmp) / "root"
        progress(f"debootstrap {recipe.suite} (minbase + {', '.join(recipe.debs)}), log: {log}")
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(recipe.debs)}",
              recipe.suite, str(root), recipe.mirror], what="debootstrap", log=log)
        # apt lists and caches are dead weight in a runner
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(root / junk, ignore_errors=True)
        partial = target.with_suffix(".partial")
        _run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(partial), "."], what="tar rootfs", log=log)
        partial.rename(target)
    return target


def _platform_args(glibc_minor: int = 36) -> list[str]:
    """pip does not widen ``--platform``: list every manylinux tag bookworm's glibc 2.36 runs."""
    tags = [f"manylinux_2_{m}_x86_64" for m in range(glibc_minor, 4, -1)]
    tags += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64"]
    return [arg for tag in tags for arg in ("--platform", tag)]


def download_wheels(recipe: Recipe, cache: Path, progress: Progress = lambda m: None) -> Path:
    """Wheels for the runner's Python, fetched on the host (which reaches PyPI) and cached."""
    target = cache / f"wheels-{recipe.wheels_key}"
    if (target / ".complete").exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    partial = cache / f"wheels-{recipe.wheels_key}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    major, minor = recipe.python_version.split(".")[:2]
    progress(f"pip download wheels for CPython {major}.{minor}: {', '.join(recipe.requirements + recipe.extra)}")
    cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--only-binary=:all:",
           "--python-version", f"{major}.{minor}", "--implementation", "cp", "--abi", f"cp{major}{minor}",
           *_platform_args(), "-d", str(partial),
           *recipe.requirements, *recipe.extra]
    _run(cmd, what="pip download", log=cache / "pip-download.log")
    (partial / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def _image_exists(client, tag: str):
    import docker.errors

    try:
        return client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None


def build_runner_image(
    client,
    *,
    recipe: Recipe | None = None,
    tag: str = RUNNER_TAG,
    cache: Path | None = None,
    rebuild: bool = False,
    save: bool = True,
    progress: Progress = lambda m: None,
) -> BuildReport:
    """Make sure ``tag`` names a runner image built from ``recipe`` in the engine behind ``client``."""
    import docker.errors

    recipe = recipe or Recipe()
    cache = Path(cache) if cache else default_cache_dir()
    key = recipe.key
    seconds: dict[str, float] = {}

    existing = _image_exists(client, tag)
    if existing is not None and not rebuild and existing.labels.get(f"{LABEL}.recipe") == key:
        return BuildReport(tag, existing.id, key, "engine", seconds)

    saved = cache / f"image-{key}.tar"
    if saved.exists() and not rebuild:
        t0 = time.monotonic()
        progress(f"loading the cached runner image {saved}")
        try:
            with open(saved, "rb") as fh:
                images = client.images.load(fh)
            image = images[0]
            image.tag(tag)
            seconds["load"] = round(time.monotonic() - t0, 3)
            image = client.images.get(tag)
            if image.labels.get(f"{LABEL}.recipe") == key:
                return BuildReport(tag, image.id, key, "saved-image", seconds)
        except (docker.errors.APIError, IndexError, OSError) as exc:
            progress(f"the cached image could not be loaded ({exc}); building")
            saved.unlink(missing_ok=True)

    if recipe.base_image:
        base = recipe.base_image
        if _image_exists(client, base) is None:
            raise RunnerImageError(f"the base image {base!r} is not in the engine; load it first (docker load)")
    else:
        base = recipe.base_tag
        if _image_exists(client, base) is None or rebuild:
            t0 = time.monotonic()
            rootfs = build_rootfs(recipe, cache, progress)
            seconds["rootfs"] = round(time.monotonic() - t0, 3)
            t0 = time.monotonic()
            progress(f"importing {rootfs.name} as {base}")
            repo, _, version = base.partition(":")
            try:
                client.api.import_image_from_file(str(rootfs), repository=repo, tag=version)
            except docker.errors.APIError as exc:
                raise RunnerImageError(f"docker import of {rootfs} failed: {exc}") from exc
            seconds["import"] = round(time.monotonic() - t0, 3)

    t0 = time.monotonic()
    wheels = download_wheels(recipe, cache, progress)
    seconds["wheels"] = round(time.monotonic() - t0, 3)

    t0 = time.monotonic()
    progress(f"building {tag} on {base} (no network in the build: wheels from the host)")
    with tempfile.TemporaryDirectory(prefix="nbatlas-runner-build-") as ctx:
        ctx_path = Path(ctx)
        shutil.copytree(wheels, ctx_path / "wheels", ignore=shutil.ignore_patterns(".complete"))
        (ctx_path / "Dockerfile").write_text(recipe.dockerfile(base).replace("{recipe_key}", key))
        try:
            image, log = client.images.build(path=ctx, tag=tag, network_mode="none", rm=True, forcerm=True, pull=False)
        except docker.errors.BuildError as exc:
            lines = [str(chunk.get("stream") or chunk.get("error") or "").rstrip() for chunk in exc.build_log]
            tail = "\n".join(line for line in lines if line)[-3000:]
            raise RunnerImageError(f"docker build of the runner image failed: {exc.msg}\n{tail}") from exc
    seconds["build"] = round(time.monotonic() - t0, 3)

    if save:
        t0 = time.monotonic()
        partial = saved.with_suffix(".partial")
        try:
            with open(partial, "wb") as fh:
                for chunk in client.images.get(tag).save(named=True):
                    fh.write(chunk)
            partial.rename(saved)
            _prune_saved_images(cache, keep=saved)
        except (OSError, docker.errors.APIError) as exc:
            partial.unlink(missing_ok=True)
            progress(f"could not cache the image ({exc})")
        seconds["save"] = round(time.monotonic() - t0, 3)
    return BuildReport(tag, image.id, key, "built", seconds)


def _prune_saved_images(cache: Path, keep: Path) -> None:
    """Keep one saved image: a new recipe makes the old tarball (hundreds of MB) useless."""
    for old in cache.glob("image-*.tar"):
        if old != keep:
            old.unlink(missing_ok=True)


def image_digest(client, image: str) -> str | None:
    """The most precise identity of ``image`` in this engine: a repo digest when it came from a
    registry, else the local image id (content-addressed too)."""
    found = _image_exists(client, image)
    if found is None:
        return None
    digests = found.attrs.get("RepoDigests") or []
    return digests[0] if digests else found.id


__all__ = [
    "BuildReport", "DEFAULT_REQUIREMENTS", "RUNNER_GID", "RUNNER_TAG", "RUNNER_UID", "Recipe",
    "RunnerImageError", "build_runner_image", "default_cache_dir", "image_digest",
]
