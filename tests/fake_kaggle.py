"""A fake Kaggle on 127.0.0.1 that the real ``kaggle`` 2.x client talks to.

kagglesdk POSTs protobuf-JSON to ``http://localhost/api/v1/<service>/<Method>`` when
``KAGGLE_API_ENVIRONMENT=LOCALHOST``; with ``HTTP_PROXY`` pointing at this server every such request
(and every redirect to the download "storage") arrives here with its absolute URL, so nothing leaves
127.0.0.1 and no port 80 is needed.

The catalogue is built from the real notebooks in ``../shared/corpus/real``, arranged into fake
competitions with votes, listed in pages. Faults can be injected: 429 with ``Retry-After``,
intermittent 500s, holding (never answering) downloads after N, and a malformed notebook blob.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import random
import re
import threading
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

REAL_CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "real"

USERNAME = "nbatlas-tester"
KEY = "0123456789abcdef0123456789abcdef"


@dataclass
class FakeCompetition:
    slug: str
    title: str
    team_count: int
    category: str = "featured"
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass
class FakeKernel:
    id: int
    ref: str
    title: str
    votes: int
    version: int
    source: str
    competitions: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    language: str = "python"
    kernel_type: str = "notebook"
    views: int = 0
    hotness: float = 0.0
    last_run: datetime = field(default_factory=lambda: datetime(2024, 1, 1, tzinfo=timezone.utc))
    docker_image: str = "gcr.io/kaggle-images/python@sha256:" + "ab" * 32
    outputs: dict[str, bytes] = field(default_factory=dict)
    file: str | None = None  # the corpus file it was made from

    @property
    def author(self) -> str:
        return self.ref.split("/", 1)[0]

    @property
    def slug(self) -> str:
        return self.ref.split("/", 1)[1]

    def metadata(self) -> dict:
        return {
            "id": self.id,
            "ref": self.ref,
            "title": self.title,
            "author": self.author,
            "slug": self.slug,
            "lastRunTime": self.last_run.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "language": self.language,
            "kernelType": self.kernel_type,
            "isPrivate": False,
            "enableGpu": False,
            "enableInternet": True,
            "categoryIds": [],
            "datasetDataSources": self.datasets,
            "kernelDataSources": [],
            "competitionDataSources": self.competitions,
            "totalVotes": self.votes,
            "modelDataSources": [],
            "enableTpu": False,
            "currentVersionNumber": self.version,
            "dockerImage": self.docker_image,
            "machineShape": "NvidiaTeslaP100",
        }


@dataclass
class Fault:
    """Answer matching requests with ``status`` instead: the first ``times`` of them, or every
    ``every``-th one (intermittent), up to ``limit`` in all."""

    method: str
    status: int
    times: int | None = None
    every: int | None = None
    limit: int | None = None
    retry_after: str | None = None
    ref: str | None = None
    seen: int = 0
    served: int = 0

    def fires(self, method: str, ref: str | None) -> bool:
        if method != self.method or (self.ref is not None and ref != self.ref):
            return False
        self.seen += 1
        if self.limit is not None and self.served >= self.limit:
            return False
        if self.times is not None:
            hit = self.served < self.times
        else:
            hit = self.every is not None and self.seen % self.every == 0
        if hit:
            self.served += 1
        return hit


def _slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:50].strip("-")


def _corpus_rows() -> list[dict]:
    with open(REAL_CORPUS / "SOURCES.tsv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def smallest_notebooks(n: int) -> list[dict]:
    rows = sorted(_corpus_rows(), key=lambda r: (int(r["bytes"]), r["file"]))
    return rows[:n]


COMPETITIONS = [
    # slug, title, teams, category, number of Python notebooks listed
    ("titanic", "Titanic - Machine Learning from Disaster", 15800, "gettingStarted", 11),
    ("house-prices-advanced-regression-techniques", "House Prices - Advanced Regression Techniques", 5200, "gettingStarted", 9),
    ("spaceship-titanic", "Spaceship Titanic", 2400, "gettingStarted", 7),
    ("digit-recognizer", "Digit Recognizer", 1500, "gettingStarted", 5),
    ("playground-series-s3e22", "Predict Health Outcomes of Horses", 800, "playground", 4),
]


@dataclass
class Catalog:
    competitions: list[FakeCompetition]
    kernels: list[FakeKernel]
    datasets: dict[str, bytes] = field(default_factory=dict)

    def kernel(self, ref: str) -> FakeKernel:
        return next(k for k in self.kernels if k.ref == ref)

    def listing(self, competition: str, *, python_notebooks_only: bool = True) -> list[FakeKernel]:
        """The competition's kernels in vote order, as the fake lists them."""
        found = [k for k in self.kernels if competition in k.competitions]
        if python_notebooks_only:
            found = [k for k in found if k.language == "python" and k.kernel_type == "notebook"]
        return sorted(found, key=lambda k: (-k.votes, k.id))


def build_catalog(*, seed: int = 7, malformed_in: str | None = "house-prices-advanced-regression-techniques") -> Catalog:
    """Real notebooks as kernels of five competitions, with distinct votes; one kernel is listed in two
    competitions, three are not Python notebooks (R, script) and, optionally, one has a truncated blob."""
    rng = random.Random(seed)
    n_total = sum(c[4] for c in COMPETITIONS)
    rows = smallest_notebooks(n_total + 3)
    competitions = []
    for slug, title, teams, category, _ in COMPETITIONS:
        data = f"PassengerId,Survived\n1,0\n2,1\n# {slug}\n".encode()
        competitions.append(FakeCompetition(slug, title, teams, category, files={"train.csv": data, "test.csv": b"PassengerId\n3\n"}))
    votes = rng.sample(range(1, 5000), n_total + 3)
    kernels: list[FakeKernel] = []
    used: set[str] = set()
    i = 0
    for slug, _title, _teams, _cat, n in COMPETITIONS:
        for _ in range(n):
            row = rows[i]
            owner = _slugify(row["repo"].split("/")[0])
            name = _slugify(Path(row["path"]).stem) or f"notebook-{i}"
            ref = f"{owner}/{name}"
            while ref in used:
                ref += "-x"
            used.add(ref)
            text = (REAL_CORPUS / row["file"]).read_text(encoding="utf-8")
            kernels.append(
                FakeKernel(
                    id=1000 + i,
                    ref=ref,
                    title=Path(row["path"]).stem.replace("_", " "),
                    votes=votes[i],
                    version=1 + (i % 4),
                    source=text,
                    competitions=[slug],
                    views=votes[i] * 37 % 10007,
                    hotness=rng.random(),
                    last_run=datetime(2023, 1, 1, tzinfo=timezone.utc) + timedelta(days=rng.randrange(700)),
                    outputs={"submission.csv": f"id,target\n{i},1\n".encode()},
                    file=row["file"],
                )
            )
            i += 1
    # a notebook that uses two competitions' data shows up in both listings (pulled once)
    kernels[1].competitions.append(COMPETITIONS[1][0])
    # kernels that are not Python notebooks: the listing filter and the pull must both skip them
    for j, (language, kernel_type) in enumerate([("r", "notebook"), ("python", "script"), ("r", "script")]):
        row = rows[n_total + j]
        kernels.append(
            FakeKernel(
                id=2000 + j,
                ref=f"someone/not-a-python-notebook-{j}",
                title=f"not a python notebook {j}",
                votes=votes[n_total + j] + 10000,  # would top every vote-ordered listing
                version=1,
                source=(REAL_CORPUS / row["file"]).read_text(encoding="utf-8"),
                competitions=[COMPETITIONS[0][0]],
                language=language,
                kernel_type=kernel_type,
            )
        )
    if malformed_in:
        # the most voted notebook of that competition alone, so every vote-ordered sample of it pulls it
        victim = max((k for k in kernels if k.competitions == [malformed_in]), key=lambda k: k.votes)
        victim.source = victim.source[: len(victim.source) // 2]  # a truncated blob: not JSON
    datasets = {"alice/titanic-extra": _zip({"extra.csv": b"a,b\n1,2\n"})}
    return Catalog(competitions=competitions, kernels=kernels, datasets=datasets)


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


SORTS = {
    "VOTE_COUNT": lambda k: (-k.votes, k.id),
    "HOTNESS": lambda k: (-k.hotness, k.id),
    "DATE_RUN": lambda k: (-k.last_run.timestamp(), k.id),
    "VIEW_COUNT": lambda k: (-k.views, k.id),
    "DATE_CREATED": lambda k: (-k.id,),
}


class FakeKaggle:
    """The server. ``with FakeKaggle(catalog) as fake: ...`` runs it in a daemon thread."""

    def __init__(self, catalog: Catalog, *, max_page_size: int = 4, username: str = USERNAME, key: str = KEY,
                 token: str | None = None) -> None:
        self.catalog = catalog
        self.max_page_size = max_page_size
        self.username, self.key, self.token = username, key, token
        self.faults: list[Fault] = []
        self.lock = threading.Lock()
        # completed (answered with 200) calls per (method, ref-or-scope)
        self.completed: Counter = Counter()
        self.log: list[tuple[float, str, str | None, int]] = []  # (time, method, ref, status)
        self._hold_after: int | None = None
        self._held = 0
        self._release = threading.Event()
        self._drop_held = False
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- control -----------------------------------------------------------------------------

    def inject(self, fault: Fault) -> Fault:
        with self.lock:
            self.faults.append(fault)
        return fault

    def hold_downloads_after(self, n: int) -> None:
        """Answer the first ``n`` GetKernel calls, then keep every later one waiting (a stalled run)."""
        with self.lock:
            self._hold_after = n
            self._release.clear()

    def release_held(self, *, drop: bool) -> None:
        """Let held calls go: answered normally, or (drop=True) their connection closed unanswered."""
        with self.lock:
            self._hold_after = None
            self._drop_held = drop
        self._release.set()

    @property
    def held(self) -> int:
        with self.lock:
            return self._held

    def calls(self, method: str) -> list[str | None]:
        """Refs of the answered calls of ``method``, in order."""
        with self.lock:
            return [ref for _, m, ref, status in self.log if m == method and status == 200]

    def statuses(self, method: str) -> list[tuple[float, int]]:
        with self.lock:
            return [(t, status) for t, m, _, status in self.log if m == method]

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def client_env(self, home: Path) -> dict[str, str]:
        """Environment that points the real kaggle client at this server, with working credentials."""
        config = home / "kaggle-config"
        config.mkdir(parents=True, exist_ok=True)
        return {
            "KAGGLE_API_ENVIRONMENT": "LOCALHOST",
            "HTTP_PROXY": self.url,
            "http_proxy": self.url,
            "HTTPS_PROXY": self.url,
            "https_proxy": self.url,
            "NO_PROXY": "",
            "no_proxy": "",
            "KAGGLE_CONFIG_DIR": str(config),
            "KAGGLE_USERNAME": self.username,
            "KAGGLE_KEY": self.key,
        }

    def start(self) -> "FakeKaggle":
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-kaggle", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release_held(drop=True)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeKaggle":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- RPC methods (request dict -> (status, body dict | bytes, headers)) --------------------

    def _authorized(self, headers) -> bool:
        auth = headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                user, _, key = base64.b64decode(auth[6:]).decode().partition(":")
            except Exception:
                return False
            return user == self.username and key == self.key
        if auth.startswith("Bearer ") and self.token:
            return auth[7:] == self.token
        return False

    def list_kernels(self, req: dict) -> dict:
        kernels = list(self.catalog.kernels)
        if req.get("competition"):
            kernels = [k for k in kernels if req["competition"] in k.competitions]
        if req.get("dataset"):
            kernels = [k for k in kernels if req["dataset"] in k.datasets]
        if req.get("user"):
            kernels = [k for k in kernels if k.author == req["user"]]
        if req.get("search"):
            term = req["search"].lower()
            kernels = [k for k in kernels if term in k.title.lower() or term in k.source.lower()]
        if req.get("language", "all") != "all":
            kernels = [k for k in kernels if k.language == req["language"]]
        if req.get("kernelType", "all") != "all":
            kernels = [k for k in kernels if k.kernel_type == req["kernelType"]]
        kernels.sort(key=SORTS.get(req.get("sortBy", "HOTNESS"), SORTS["HOTNESS"]))
        return self._page(req, [k.metadata() for k in kernels], "kernels")

    def _page(self, req: dict, items: list, key: str) -> dict:
        size = min(int(req.get("pageSize") or 20), self.max_page_size)
        token = req.get("pageToken") or ""
        page = int(token[1:]) if token.startswith("p") else int(req.get("page") or 1)
        chunk = items[(page - 1) * size: page * size]
        more = page * size < len(items)
        return {key: chunk, "nextPageToken": f"p{page + 1}" if more else ""}

    def list_competitions(self, req: dict) -> dict:
        comps = list(self.catalog.competitions)
        if req.get("search"):
            comps = [c for c in comps if req["search"].lower() in (c.title + " " + c.slug).lower()]
        category = req.get("category")
        if category and category != "HOST_SEGMENT_UNSPECIFIED":
            wanted = category.replace("HOST_SEGMENT_", "").replace("_", "").lower()
            comps = [c for c in comps if c.category.lower() == wanted]
        if req.get("sortBy") == "COMPETITION_SORT_BY_NUMBER_OF_TEAMS":
            comps.sort(key=lambda c: -c.team_count)
        items = [
            {
                "id": 100 + i,
                "ref": f"https://www.kaggle.com/competitions/{c.slug}",
                "title": c.title,
                "url": f"https://www.kaggle.com/competitions/{c.slug}",
                "category": c.category,
                "teamCount": c.team_count,
                "kernelCount": sum(1 for k in self.catalog.kernels if c.slug in k.competitions),
            }
            for i, c in enumerate(comps)
        ]
        return self._page(req, items, "competitions")


class _Handler(BaseHTTPRequestHandler):
    server_fake: FakeKaggle
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002  quiet test output
        pass

    def _send(self, status: int, body: bytes | dict, headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # the download "storage" that RPCs redirect to
        fake = self.server_fake
        path = urlsplit(self.path).path
        parts = path.strip("/").split("/")
        data: bytes | None = None
        if parts[:2] == ["storage", "competitions"] and len(parts) == 3:
            comp = next((c for c in fake.catalog.competitions if f"{c.slug}.zip" == parts[2]), None)
            data = _zip(comp.files) if comp else None
        elif parts[:2] == ["storage", "datasets"] and len(parts) == 4:
            data = fake.catalog.datasets.get(f"{parts[2]}/{parts[3].removesuffix('.zip')}")
        elif parts[:2] == ["storage", "output"] and len(parts) == 5:
            kernel = next((k for k in fake.catalog.kernels if k.ref == f"{parts[2]}/{parts[3]}"), None)
            data = kernel.outputs.get(parts[4]) if kernel else None
        with fake.lock:
            fake.log.append((time.monotonic(), "GET", path, 200 if data is not None else 404))
        if data is None:
            self._send(404, {"code": 404, "message": "not found"})
        else:
            self._send(200, data, content_type="application/zip" if path.endswith(".zip") else "application/octet-stream")

    def do_POST(self) -> None:
        fake = self.server_fake
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        try:
            req = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._send(400, {"code": 400, "message": "bad json"})
            return
        match = re.fullmatch(r"/api/v1/([\w.]+)/(\w+)", path)
        if not match:
            self._send(404, {"code": 404, "message": f"no such endpoint {path}"})
            return
        service, method = match.groups()
        ref = None
        if method in ("GetKernel", "ListKernelSessionOutput"):
            ref = f"{req.get('userName')}/{req.get('kernelSlug')}"
        elif method == "ListKernels":
            ref = req.get("competition") or req.get("dataset") or req.get("search") or req.get("user") or None

        status, body, headers = self._dispatch(service, method, req, ref)
        if status == "drop":
            self.close_connection = True
            return
        with fake.lock:
            fake.log.append((time.monotonic(), method, ref, status))
            if status == 200:
                fake.completed[(method, ref)] += 1
        if isinstance(body, dict) or isinstance(body, bytes):
            self._send(status, body, headers)

    def _dispatch(self, service: str, method: str, req: dict, ref: str | None):
        fake = self.server_fake
        if method == "IntrospectToken":
            ok = fake.token is not None and req.get("token") == fake.token
            return 200, {"active": ok, "username": fake.username if ok else ""}, {}
        if not fake._authorized(self.headers):
            return 401, {"code": 401, "message": "Unauthenticated: invalid username or key"}, {}
        with fake.lock:
            fault = next((f for f in fake.faults if f.fires(method, ref)), None)
        if fault is not None:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            return fault.status, {"code": fault.status, "message": f"injected {fault.status}"}, headers
        if method == "GetKernel":
            with fake.lock:
                answered = fake.completed[("GetKernel", "*")]
                hold = fake._hold_after is not None and answered >= fake._hold_after
                if hold:
                    fake._held += 1
                else:
                    fake.completed[("GetKernel", "*")] += 1
            if hold:
                fake._release.wait()
                if fake._drop_held:
                    return "drop", None, None
        if method == "ListKernels":
            return 200, fake.list_kernels(req), {}
        if method == "ListCompetitions":
            return 200, fake.list_competitions(req), {}
        if method == "GetKernel":
            kernel = next((k for k in fake.catalog.kernels if k.ref == ref), None)
            label = req.get("versionLabel")
            if kernel is None or (label and label != f"v{kernel.version}"):
                return 404, {"code": 404, "message": f"kernel {ref} {label or ''} not found"}, {}
            blob = {"source": kernel.source, "language": kernel.language, "kernelType": kernel.kernel_type, "slug": kernel.slug}
            return 200, {"metadata": kernel.metadata(), "blob": blob}, {}
        if method == "ListKernelSessionOutput":
            kernel = next((k for k in fake.catalog.kernels if k.ref == ref), None)
            if kernel is None:
                return 404, {"code": 404, "message": "not found"}, {}
            files = [{"url": f"http://localhost/storage/output/{kernel.ref}/{name}", "fileName": name} for name in kernel.outputs]
            return 200, {"files": files, "log": "[]"}, {}
        if method == "DownloadDataFiles":
            slug = req.get("competitionName")
            return 302, b"", {"Location": f"http://localhost/storage/competitions/{slug}.zip"}
        if method == "DownloadDataset":
            return 302, b"", {"Location": f"http://localhost/storage/datasets/{req.get('ownerSlug')}/{req.get('datasetSlug')}.zip"}
        return 404, {"code": 404, "message": f"{service}/{method} is not faked"}, {}
