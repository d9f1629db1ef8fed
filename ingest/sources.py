"""Find the notebook files an ingest was pointed at: files, folders (recursive ``*.ipynb``), archives.

Archives (``.zip``, ``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``, ``.tar.xz``) are read in memory,
never extracted to disk. Only members named ``*.ipynb`` are notebooks. Members that try to escape the
archive (absolute paths, ``..``), links, and anything past the unpacked-size or member-count limits are
recorded as problems (stage ``archive``/``limit``) and skipped.
"""

from __future__ import annotations

import os
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from db.queries.codec import UNSTORABLE
from ingest.parse import FileProblem, Place, too_large

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
SKIPPED_DIRS = {".ipynb_checkpoints", ".git", "__pycache__"}


def storable(text: str) -> str:
    """Paths may hold bytes that are not UTF-8 (surrogate escapes); PostgreSQL text cannot."""
    return UNSTORABLE.sub("\ufffd", text)


def is_archive(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(ARCHIVE_SUFFIXES)


@dataclass
class Discovered:
    files: list[Path] = field(default_factory=list)
    archives: list[Path] = field(default_factory=list)


def discover(paths: list[Path]) -> Discovered:
    """Local notebook files and archives under ``paths`` (which must exist), in a stable order."""
    found = Discovered()
    seen: set[Path] = set()

    def add(target: list[Path], path: Path) -> None:
        if path not in seen:
            seen.add(path)
            target.append(path)

    for given in paths:
        path = Path(os.path.abspath(given))
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
                for name in sorted(files):
                    if name.endswith(".ipynb"):
                        add(found.files, Path(root) / name)
        elif is_archive(path):
            add(found.archives, path)
        else:  # a file named explicitly is taken as a notebook whatever its name
            add(found.files, path)
    return found


def local_place(path: Path) -> Place:
    return Place(kind="local", location=storable(str(path)), path=str(path))


def _unsafe_member(name: str) -> str | None:
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "has an absolute path"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "has a path that climbs out of the archive ('..')"
    return None


class _Budget:
    """The unpacked-size and member-count limits of one archive."""

    def __init__(self, settings, location: str):
        self.settings, self.location = settings, location
        self.total = 0
        self.members = 0

    def over(self, member: str, size: int) -> FileProblem | None:
        self.members += 1
        self.total += size
        if self.members > self.settings.max_archive_members:
            return FileProblem(
                self.location, member, "limit",
                f"archive has more than {self.settings.max_archive_members:,} notebook members "
                "(NBATLAS_MAX_ARCHIVE_MEMBERS); this member and the rest were not read",
            )
        if self.total > self.settings.max_archive_bytes:
            return FileProblem(
                self.location, member, "limit",
                f"archive unpacks to more than {self.settings.max_archive_bytes:,} bytes of notebooks "
                "(NBATLAS_MAX_ARCHIVE_BYTES); this member and the rest were not read",
            )
        return None


def iter_archive(path: Path, settings) -> Iterator[Place | FileProblem]:
    location = storable(str(path))
    try:
        if path.name.lower().endswith(".zip"):
            yield from _iter_zip(path, location, settings)
        else:
            yield from _iter_tar(path, location, settings)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, RuntimeError) as exc:
        yield FileProblem(location, "", "archive", f"cannot read the archive: {exc}")


def _iter_zip(path: Path, location: str, settings) -> Iterator[Place | FileProblem]:
    with zipfile.ZipFile(path) as archive:
        budget = _Budget(settings, location)
        for info in archive.infolist():
            name = info.filename
            if info.is_dir() or not name.endswith(".ipynb"):
                continue
            member = storable(name)
            unsafe = _unsafe_member(name)
            if unsafe:
                yield FileProblem(location, member, "archive", f"archive member {unsafe}; not read")
                continue
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                yield FileProblem(location, member, "archive", "archive member is a symbolic link; links are not followed")
                continue
            if info.file_size > settings.max_file_bytes:
                yield FileProblem(location, member, "limit", too_large(info.file_size, settings.max_file_bytes))
                continue
            problem = budget.over(member, info.file_size)
            if problem:
                yield problem
                return
            try:
                with archive.open(info) as fh:
                    data = fh.read(settings.max_file_bytes + 1)  # the declared size may lie
            except (zipfile.BadZipFile, RuntimeError, OSError, EOFError, NotImplementedError) as exc:
                yield FileProblem(location, member, "archive", f"cannot unpack the archive member: {exc}")
                continue
            if len(data) > settings.max_file_bytes:
                yield FileProblem(location, member, "limit", too_large(len(data), settings.max_file_bytes) + " (more than the archive declared)")
                continue
            yield Place(kind="archive", location=location, member=member, data=data)


def _iter_tar(path: Path, location: str, settings) -> Iterator[Place | FileProblem]:
    with tarfile.open(path, mode="r:*") as archive:
        budget = _Budget(settings, location)
        for info in archive:
            name = info.name
            if info.isdir() or not name.endswith(".ipynb"):
                continue
            member = storable(name)
            unsafe = _unsafe_member(name)
            if unsafe:
                yield FileProblem(location, member, "archive", f"archive member {unsafe}; not read")
                continue
            if info.issym():
                yield FileProblem(location, member, "archive", f"archive member is a symbolic link (to {storable(info.linkname)!r}); links are not followed")
                continue
            if info.islnk():
                yield FileProblem(location, member, "archive", f"archive member is a hard link (to {storable(info.linkname)!r}); links are not followed")
                continue
            if not info.isfile():
                yield FileProblem(location, member, "archive", "archive member is not a regular file (device, fifo...); not read")
                continue
            if info.size > settings.max_file_bytes:
                yield FileProblem(location, member, "limit", too_large(info.size, settings.max_file_bytes))
                continue
            problem = budget.over(member, info.size)
            if problem:
                yield problem
                return
            fh = archive.extractfile(info)
            data = fh.read() if fh is not None else b""
            yield Place(kind="archive", location=location, member=member, data=data)


def count_zip_notebooks(path: Path) -> int | None:
    """For the progress bar: zip archives list their members cheaply, tar archives do not."""
    if not path.name.lower().endswith(".zip"):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            return sum(1 for n in archive.namelist() if n.endswith(".ipynb"))
    except (zipfile.BadZipFile, OSError):
        return None
