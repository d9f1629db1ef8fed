"""The Kaggle client nbatlas uses: the real ``kaggle`` 2.x API (``KaggleApi`` and its kagglesdk RPCs),
every call made politely (rate, retries, Retry-After), results as plain dataclasses.

Credentials are found the standard Kaggle way (``~/.kaggle/kaggle.json``, ``KAGGLE_USERNAME`` +
``KAGGLE_KEY``, or a kaggle 2.x access token); when they are missing or Kaggle rejects them,
:class:`KaggleCredentialsError` carries one message that says how to set them.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import requests

from ingest.kaggle.politeness import Politeness, status_of

CREDENTIALS_HOWTO = (
    "Set Kaggle credentials the standard Kaggle way, one of:\n"
    "  * create an API token on https://www.kaggle.com/settings (API > Create New Token) and save the\n"
    "    downloaded kaggle.json as ~/.kaggle/kaggle.json (chmod 600), or\n"
    "  * export KAGGLE_USERNAME=<your user name> and KAGGLE_KEY=<the key from kaggle.json>, or\n"
    "  * export KAGGLE_API_TOKEN=<token> (or save it to ~/.kaggle/access_token), or run `kaggle auth login`."
)

_STDOUT_LOCK = threading.Lock()

# nbatlas names -> the kaggle client's names
SORT_BY = {"votes": "voteCount", "hotness": "hotness", "date-run": "dateRun", "views": "viewCount"}


class KaggleCredentialsError(RuntimeError):
    """No usable Kaggle credentials (missing, or rejected by Kaggle)."""


class KaggleCallError(RuntimeError):
    """A Kaggle call failed for good (after the polite retries)."""


def missing_credentials() -> KaggleCredentialsError:
    return KaggleCredentialsError("no Kaggle credentials found.\n" + CREDENTIALS_HOWTO)


def rejected_credentials(detail: str) -> KaggleCredentialsError:
    return KaggleCredentialsError(f"Kaggle rejected the credentials ({detail}).\n" + CREDENTIALS_HOWTO)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


@dataclass
class KernelInfo:
    """A kernel as Kaggle describes it (listing row or GetKernel metadata)."""

    ref: str
    title: str | None = None
    author: str | None = None
    votes: int | None = None
    version: int | None = None
    language: str | None = None
    kernel_type: str | None = None
    last_run_at: datetime | None = None
    competition_sources: list[str] = field(default_factory=list)
    dataset_sources: list[str] = field(default_factory=list)
    kernel_sources: list[str] = field(default_factory=list)
    model_sources: list[str] = field(default_factory=list)
    docker_image: str | None = None
    machine_shape: str | None = None
    is_private: bool | None = None
    enable_gpu: bool | None = None
    enable_internet: bool | None = None
    kernel_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_api(cls, meta) -> "KernelInfo":
        """From a kagglesdk ``ApiKernelMetadata``."""
        return cls(
            ref=meta.ref,
            title=meta.title or None,
            author=meta.author or meta.ref.split("/", 1)[0],
            votes=meta.total_votes,
            version=meta.current_version_number,
            language=(meta.language or None),
            kernel_type=(meta.kernel_type or None),
            last_run_at=_utc(meta.last_run_time),
            competition_sources=[c for c in (meta.competition_data_sources or []) if c],
            dataset_sources=[d for d in (meta.dataset_data_sources or []) if d],
            kernel_sources=[k for k in (meta.kernel_data_sources or []) if k],
            model_sources=[m for m in (meta.model_data_sources or []) if m],
            docker_image=meta.docker_image or None,
            machine_shape=meta.machine_shape or None,
            is_private=meta.is_private,
            enable_gpu=meta.enable_gpu,
            enable_internet=meta.enable_internet,
            kernel_id=meta.id or None,
            extra={"category_ids": list(meta.category_ids or []), "enable_tpu": meta.enable_tpu, "slug": meta.slug},
        )

    @property
    def is_python_notebook(self) -> bool:
        return (self.language or "").lower() == "python" and (self.kernel_type or "").lower() == "notebook"


@dataclass
class PulledKernel:
    info: KernelInfo
    source: str
    language: str | None
    kernel_type: str | None


@dataclass
class CompetitionInfo:
    slug: str
    title: str | None
    team_count: int
    category: str | None
    kernel_count: int


def competition_slug(ref: str) -> str:
    """Kaggle lists competitions by URL (``https://www.kaggle.com/competitions/titanic``) or by slug."""
    return ref.rstrip("/").rsplit("/", 1)[-1]


def _import_kaggle():
    # importing the kaggle package authenticates at import time and prints its own help when it finds
    # no credentials: keep that off the user's terminal, nbatlas says it once, its own way
    with contextlib.redirect_stdout(io.StringIO()):
        from kaggle.api.kaggle_api_extended import KaggleApi
    return KaggleApi


class KaggleClient:
    def __init__(self, api, politeness: Politeness | None = None) -> None:
        self.api = api
        self.polite = politeness or Politeness()

    @classmethod
    def connect(cls, politeness: Politeness | None = None) -> "KaggleClient":
        """Authenticate the standard Kaggle way; :class:`KaggleCredentialsError` when that fails."""
        KaggleApi = _import_kaggle()
        api = KaggleApi()
        # KaggleApi reads KAGGLE_CONFIG_DIR and KAGGLE_API_ENVIRONMENT once, when kaggle is first
        # imported: read them again now so the environment of this call is the one that counts
        config_dir = os.environ.get("KAGGLE_CONFIG_DIR")
        if config_dir:
            api.config_dir = config_dir
            api.config = os.path.join(config_dir, api.config_file)
        env_flag = {"LOCALHOST": "--local", "STAGING": "--staging", "ADMIN": "--admin"}.get(os.environ.get("KAGGLE_API_ENVIRONMENT", ""))
        api.args = [a for a in api.args if a not in ("--local", "--staging", "--admin")] + ([env_flag] if env_flag else [])
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                api.authenticate()
        except SystemExit:
            from kagglesdk.kaggle_env import get_access_token_from_env

            token, where = get_access_token_from_env()
            if token:
                raise rejected_credentials(f"the access token in {where} is invalid or expired") from None
            raise missing_credentials() from None
        except requests.RequestException as exc:
            raise KaggleCallError(f"cannot reach Kaggle to check the credentials: {exc}") from exc
        return cls(api, politeness)

    @property
    def retries(self) -> int:
        return self.polite.retries

    def _call(self, fn, *args, **kwargs):
        try:
            return self.polite.call(fn, *args, **kwargs)
        except requests.HTTPError as exc:
            if status_of(exc) == 401:
                raise rejected_credentials(f"HTTP 401 from {fn.__name__}") from exc
            raise

    # --- listing ----------------------------------------------------------------------------

    def competitions(self, *, search: str | None = None, category: str | None = None,
                     sort_by: str = "numberOfTeams", limit: int | None = None) -> list[CompetitionInfo]:
        """Competitions in Kaggle's own order for ``sort_by`` (all pages, or the first ``limit``)."""
        found: list[CompetitionInfo] = []
        token: str | None = None
        while True:
            resp = self._call(self.api.competitions_list, category=category, sort_by=sort_by, search=search,
                              page=-1 if token else 1, page_token=token, page_size=self.polite.settings.page_size)
            comps = (resp.competitions if resp else None) or []
            for c in comps:
                found.append(CompetitionInfo(slug=competition_slug(c.ref), title=c.title, team_count=c.team_count,
                                             category=c.category, kernel_count=c.kernel_count))
                if limit is not None and len(found) >= limit:
                    return found
            token = resp.next_page_token if resp else None
            if not comps or not token:
                return found

    def iter_kernels(self, *, competition: str | None = None, dataset: str | None = None, search: str | None = None,
                     user: str | None = None, sort_by: str = "votes", language: str = "python",
                     kernel_type: str = "notebook") -> Iterator[KernelInfo]:
        """Every kernel of the listing, page after page, in Kaggle's order for ``sort_by``."""
        page_size = self.polite.settings.page_size
        token: str | None = None
        page = 1
        seen: set[str] = set()
        while True:
            resp = self._call(
                self.api.kernels_list_with_response,
                page=None if token else page, page_token=token, page_size=page_size,
                competition=competition, dataset=dataset, search=search, user=user,
                sort_by=SORT_BY.get(sort_by, sort_by), language=language, kernel_type=kernel_type,
            )
            kernels = [k for k in (resp.kernels or []) if k is not None]
            fresh = [k for k in kernels if k.ref not in seen]
            for k in fresh:
                seen.add(k.ref)
                yield KernelInfo.from_api(k)
            if not fresh:
                return
            if resp.next_page_token:
                token = resp.next_page_token
            elif len(kernels) < page_size:
                return
            else:  # a server paging by number only
                token, page = None, page + 1

    # --- pulling ----------------------------------------------------------------------------

    def get_kernel(self, ref: str, version: int | None = None) -> PulledKernel:
        """The kernel's source (the notebook JSON for notebooks) and metadata, at ``version`` or the current one."""
        from kagglesdk.kernels.types.kernels_api_service import ApiGetKernelRequest

        owner, _, slug = ref.partition("/")

        def fetch():
            with self.api.build_kaggle_client() as kaggle:
                request = ApiGetKernelRequest()
                request.user_name = owner
                request.kernel_slug = slug
                if version is not None:
                    request.version_label = f"v{version}"
                return kaggle.kernels.kernels_api_client.get_kernel(request)

        response = self._call(fetch)
        info = KernelInfo.from_api(response.metadata)
        if version is not None and info.version is None:
            info.version = version
        blob = response.blob
        return PulledKernel(info=info, source=blob.source or "", language=blob.language, kernel_type=blob.kernel_type)

    def download_outputs(self, ref: str, dest: Path) -> list[str]:
        """The files the kernel's last run wrote (``/kaggle/working``), into ``dest``."""
        dest.mkdir(parents=True, exist_ok=True)
        files, _ = self._call(self.api.kernels_output, ref, path=str(dest), force=True, quiet=True)
        return files

    def download_competition_data(self, slug: str, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        self._call(self.api.competition_download_files, slug, path=str(dest), force=True, quiet=True, unzip=True)

    def download_dataset(self, ref: str, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        # kaggle prints the dataset's URL even when quiet; redirect_stdout swaps sys.stdout for the
        # whole process, so one thread at a time (or stdout could stay swapped)
        with _STDOUT_LOCK, contextlib.redirect_stdout(io.StringIO()):
            self._call(self.api.dataset_download_files, ref, path=str(dest), force=True, quiet=True, unzip=True)
