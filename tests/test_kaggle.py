"""Mining Kaggle with the real ``kaggle`` client against the fake Kaggle server (tests/fake_kaggle.py).

Every notebook served is a real one from ../shared/corpus/real; the fake arranges them into
competitions with votes and pages, and injects the faults Kaggle really produces.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import nbformat
import pytest
from sqlalchemy import create_engine, func, select
from sqlmodel import Session

from db.models import KaggleKernel, KagglePull, MiningListing, MiningRun, Notebook, Problem, Source
from tests.conftest import REPO, cli_env
from tests.fake_kaggle import KEY, USERNAME, Fault, FakeKaggle, build_catalog

FAST = {
    "NBATLAS_KAGGLE_REQUESTS_PER_SECOND": "500",
    "NBATLAS_KAGGLE_BACKOFF_INITIAL": "0.01",
    "NBATLAS_KAGGLE_BACKOFF_MAX": "0.05",
    "NBATLAS_KAGGLE_BACKOFF_JITTER": "0.01",
}


@pytest.fixture(scope="module")
def catalog():
    return build_catalog()


@pytest.fixture
def fake(catalog):
    with FakeKaggle(catalog) as server:
        yield server


@pytest.fixture
def kaggle_env(fake, tmp_path, monkeypatch):
    for key, value in fake.client_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    return fake


def make_client(concurrency: int = 1):
    from ingest.kaggle.client import KaggleClient
    from ingest.kaggle.politeness import KaggleSettings, Politeness

    return KaggleClient.connect(Politeness(KaggleSettings(
        requests_per_second=500, backoff_initial=0.01, backoff_max=0.05, backoff_jitter=0.01, concurrency=concurrency)))


def top_percent(catalog, competitions: list[str], percent: int) -> list[str]:
    """The refs a top-percent sample must pull, in order, computed from the catalogue itself."""
    refs: list[str] = []
    for slug in competitions:
        listing = catalog.listing(slug)
        n = max(1, math.ceil(Fraction(len(listing) * percent, 100)))
        refs += [k.ref for k in listing[:n] if k.ref not in refs]
    return refs


def test_top_percent_of_top_competitions_pulls_expected_refs_in_vote_order(kaggle_env, catalog, session, settings):
    from ingest.kaggle.mine import MiningSpec, mine_kaggle

    fake = kaggle_env
    spec = MiningSpec(top_competitions=3, sort_by="votes", top_percent=60)
    report = mine_kaggle(spec, session=session, settings=settings, client=make_client(concurrency=1))

    top3 = [c.slug for c in sorted(catalog.competitions, key=lambda c: -c.team_count)[:3]]
    expected = top_percent(catalog, top3, 60)
    shared = next(k.ref for k in catalog.kernels if len(k.competitions) > 1)
    assert shared in expected  # listed by two competitions, pulled once
    # one download at a time: the order of Kaggle calls is the pull order
    assert fake.calls("GetKernel") == expected
    # every competition was listed page after page (the fake serves 4 per page)
    for slug in top3:
        assert fake.calls("ListKernels").count(slug) == math.ceil(len(catalog.listing(slug)) / 4)

    run = session.get(MiningRun, report.run_id)
    assert run.status == "finished" and run.listed_at and run.finished_at
    assert [c["slug"] for c in run.resolved["top_competitions"]] == top3
    assert run.spec["top_percent"] == 60 and "--top-competitions 3" in run.command and "--top-percent 60" in run.command

    # the listing as seen: every Python notebook of each competition with its rank, votes and version
    for slug in top3:
        rows = session.execute(select(MiningListing).where(MiningListing.run_id == run.id, MiningListing.scope == f"competition:{slug}")
                            .order_by(MiningListing.rank)).scalars().all()
        listing = catalog.listing(slug)
        assert [(r.ref, r.votes, r.version) for r in rows] == [(k.ref, k.votes, k.version) for k in listing]
        n_selected = max(1, math.ceil(Fraction(len(listing) * 60, 100)))
        assert [r.selected for r in rows] == [i < n_selected for i in range(len(listing))]
    assert not any("not-a-python-notebook" in r for r in session.execute(select(MiningListing.ref)).scalars())

    # the malformed blob: pulled, recorded as a problem naming its file, and in the ledger with the reason
    broken = max((k for k in catalog.kernels if k.competitions == ["house-prices-advanced-regression-techniques"]), key=lambda k: k.votes)
    ledger = {p.ref: p for p in session.execute(select(KagglePull)).scalars()}
    assert set(ledger) == set(expected)
    assert ledger[broken.ref].status == "invalid" and "json" in ledger[broken.ref].reason
    problem = session.execute(select(Problem).where(Problem.location == ledger[broken.ref].path)).scalars().one()
    assert problem.severity == "error" and problem.stage == "json"
    assert {r for r, p in ledger.items() if p.status == "pulled"} == set(expected) - {broken.ref}
    assert (report.pulled, report.invalid, report.failed) == (len(expected) - 1, 1, 0)

    # Kaggle metadata as real columns, on a provenance row of kind kaggle located at the ref
    for ref in set(expected) - {broken.ref}:
        k = catalog.kernel(ref)
        row = session.execute(select(KaggleKernel).where(KaggleKernel.ref == ref)).scalars().one()
        source = session.get(Source, row.source_id)
        assert (source.kind, source.location, source.notebook_id) == ("kaggle", ref, row.notebook_id)
        assert (row.version, row.votes, row.author, row.title) == (k.version, k.votes, k.author, k.title)
        assert row.competition_sources == k.competitions and row.docker_image == k.docker_image
        assert (row.language, row.kernel_type, row.origin, row.last_run_at) == ("python", "notebook", "api", k.last_run)
        notebook = session.get(Notebook, row.notebook_id)
        assert notebook.n_cells == len(nbformat.reads(k.source, as_version=4).cells)


def test_429_retry_after_and_intermittent_500s_still_give_the_full_sample(kaggle_env, catalog, session, settings):
    from ingest.kaggle.mine import MiningSpec, mine_kaggle

    fake = kaggle_env
    faults = [
        fake.inject(Fault("ListCompetitions", 503, times=1)),
        fake.inject(Fault("ListKernels", 429, times=1, retry_after="1")),
        fake.inject(Fault("GetKernel", 429, times=1, retry_after="1")),
        fake.inject(Fault("GetKernel", 500, every=3)),  # intermittent, for the whole run
        fake.inject(Fault("ListKernelSessionOutput", 502, times=1)),
    ]
    spec = MiningSpec(top_competitions=2, competition_search="titanic", sort_by="votes", limit=4, with_outputs=True, with_data=True)
    report = mine_kaggle(spec, session=session, settings=settings, client=make_client(concurrency=2))

    expected = [k.ref for slug in ("titanic", "spaceship-titanic") for k in catalog.listing(slug)[:4]]
    pulled = set(session.execute(select(KagglePull.ref).where(KagglePull.status == "pulled")).scalars())
    assert pulled == set(expected) and report.failed == 0
    # each notebook answered once; every injected fault was retried exactly once, and counted
    assert sorted(fake.calls("GetKernel")) == sorted(expected)
    served = sum(f.served for f in faults)
    assert served >= 5 and faults[3].served >= 2
    assert report.retries == served == session.get(MiningRun, report.run_id).retries
    # Retry-After was honoured: the next listing call came at least a second after the 429
    statuses = fake.statuses("ListKernels")
    at_429 = next(t for t, status in statuses if status == 429)
    assert min(t for t, status in statuses if t > at_429) - at_429 >= 1.0

    # outputs beside the notebook; competition data under input/<slug>/ (mounted at /kaggle/input)
    home = settings.home / "kaggle"
    for ref in expected:
        version = catalog.kernel(ref).version
        assert (home / ref / f"v{version}.output" / "submission.csv").read_bytes() == catalog.kernel(ref).outputs["submission.csv"]
    for slug in ("titanic", "spaceship-titanic"):
        comp = next(c for c in catalog.competitions if c.slug == slug)
        assert (home / "input" / slug / "train.csv").read_bytes() == comp.files["train.csv"]
    assert not (home / "input" / "house-prices-advanced-regression-techniques").exists()


def test_seeded_sample_is_redrawn_identically_and_never_pulled_twice(kaggle_env, catalog, session, settings):
    from ingest.kaggle.mine import MiningSpec, mine_kaggle, select_ranks

    fake = kaggle_env
    spec = MiningSpec(competitions=["titanic", "digit-recognizer"], sort_by="votes", sample=3, seed=42)
    first = mine_kaggle(spec, session=session, settings=settings, client=make_client())
    second = mine_kaggle(spec, session=session, settings=settings, client=make_client(), new_run=True)

    def selected(run_id):
        return session.execute(select(MiningListing.ref).where(MiningListing.run_id == run_id, MiningListing.selected)
                            .order_by(MiningListing.id)).scalars().all()

    expected = [catalog.listing(slug)[r - 1].ref for slug in spec.competitions
                for r in select_ranks(len(catalog.listing(slug)), spec, f"competition:{slug}")]
    assert selected(first.run_id) == selected(second.run_id) == expected
    assert (first.pulled, second.pulled, second.already) == (6, 0, 6)
    assert sorted(fake.calls("GetKernel")) == sorted(expected)
    # a different seed draws a different sample
    other = MiningSpec(competitions=["titanic"], sort_by="votes", sample=3, seed=7)
    assert select_ranks(11, other, "competition:titanic") != select_ranks(11, spec, "competition:titanic")


def test_killed_run_resumes_and_pulls_every_missing_notebook_exactly_once(fake, catalog, fresh_database, tmp_path):
    url = fresh_database()
    home = tmp_path / "home"
    env = {**cli_env(url, home), **fake.client_env(tmp_path), **FAST}
    command = [sys.executable, "-m", "ingest.cli", "mine", "kaggle", "--competition", "titanic",
               "--competition", "spaceship-titanic", "--sort-by", "votes", "--top-percent", "100",
               "--concurrency", "1", "--no-progress"]
    expected = [k.ref for slug in ("titanic", "spaceship-titanic") for k in catalog.listing(slug)]

    fake.hold_downloads_after(5)
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        # half-way: five notebooks downloaded and saved, the sixth download in flight
        while not (fake.held >= 1 and len(list((home / "kaggle").rglob("*.ipynb"))) >= 5):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the run never got half-way"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    fake.release_held(drop=True)  # the killed run's last request is never answered
    assert fake.calls("GetKernel") == expected[:5]

    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resumed" in done.stderr

    # every notebook of the sample downloaded exactly once over both runs
    assert sorted(fake.calls("GetKernel")) == sorted(expected)
    engine = create_engine(url)
    with Session(engine) as s:
        runs = s.execute(select(MiningRun)).scalars().all()
        assert [(r.status, r.resumed, r.pulled) for r in runs] == [("finished", 1, len(expected))]
        ledger = [tuple(r) for r in s.execute(select(KagglePull.ref, KagglePull.status, KagglePull.attempts))]
        assert sorted(ledger) == sorted((ref, "pulled", 1) for ref in expected)
        assert s.execute(select(func.count()).select_from(Source).where(Source.kind == "kaggle")).scalar_one() == len(expected)
        assert s.execute(select(func.count()).select_from(MiningListing)).scalar_one() == len(expected)
    engine.dispose()


def test_missing_credentials_give_one_clear_message(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    (tmp_path / "empty").mkdir()
    env.update(KAGGLE_CONFIG_DIR=str(tmp_path / "empty"), HOME=str(tmp_path), NBATLAS_HOME=str(tmp_path / "home"),
               KAGGLE_API_ENVIRONMENT="LOCALHOST", NBATLAS_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    done = subprocess.run([sys.executable, "-m", "ingest.cli", "mine", "kaggle", "--competition", "titanic", "--limit", "1"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    err = " ".join(done.stderr.split())
    assert err.count("no Kaggle credentials found") == 1
    assert "~/.kaggle/kaggle.json" in err and "KAGGLE_USERNAME" in err and "KAGGLE_KEY" in err
    assert "Authentication required" not in done.stdout + done.stderr  # the kaggle package's own help stays quiet


def test_rejected_credentials_stop_the_run_with_the_same_advice(kaggle_env, monkeypatch, session, settings):
    from ingest.kaggle.client import KaggleCredentialsError
    from ingest.kaggle.mine import MiningSpec, mine_kaggle

    monkeypatch.setenv("KAGGLE_KEY", "not-the-key")
    with pytest.raises(KaggleCredentialsError, match="rejected") as caught:
        mine_kaggle(MiningSpec(competitions=["titanic"], limit=1), session=session, settings=settings, client=make_client())
    assert "KAGGLE_USERNAME" in str(caught.value)
    run = session.execute(select(MiningRun)).scalars().one()
    assert run.status == "failed" and "rejected" in run.error
    assert kaggle_env.calls("GetKernel") == []


def test_kaggle_json_in_the_config_dir_is_found(kaggle_env, monkeypatch, tmp_path):
    import json

    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    config = Path(os.environ["KAGGLE_CONFIG_DIR"])
    (config / "kaggle.json").write_text(json.dumps({"username": USERNAME, "key": KEY}))
    (config / "kaggle.json").chmod(0o600)
    client = make_client()
    assert [k.ref for k in client.iter_kernels(competition="digit-recognizer")] == [k.ref for k in kaggle_env.catalog.listing("digit-recognizer")]


def test_spec_validation_and_equivalent_command():
    from pydantic import ValidationError

    from ingest.kaggle.mine import MiningSpec

    with pytest.raises(ValidationError, match="needs --seed"):
        MiningSpec(competitions=["titanic"], sample=5)
    with pytest.raises(ValidationError, match="exclude each other"):
        MiningSpec(competitions=["titanic"], limit=5, top_percent=5)
    with pytest.raises(ValidationError, match="say what to mine"):
        MiningSpec(limit=5)
    spec = MiningSpec(top_competitions=5, sort_by="votes", top_percent=5)
    assert spec.command() == "nbatlas mine kaggle --top-competitions 5 --sort-by votes --top-percent 5"
    assert spec.spec_hash() == MiningSpec(top_competitions=5, top_percent=5.0).spec_hash()


def test_an_empty_listing_is_reported_not_passed_off_as_a_finished_run(fake, catalog, fresh_database, tmp_path):
    """A misspelt competition or dataset lists nothing (the fake answers as Kaggle does, with an empty
    page): the run says which listing was empty and what to check, and still records the run (exit 0)."""
    url = fresh_database()
    env = {**cli_env(url, tmp_path / "home"), **fake.client_env(tmp_path), **FAST, "COLUMNS": "300"}

    def mine(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "ingest.cli", "mine", "kaggle", *args, "--no-progress"], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)

    comp = mine("--competition", "no-such-comp", "--limit", "2")
    assert comp.returncode == 0, comp.stderr[-2000:]
    assert "listed 0, selected 0" in comp.stderr
    assert ("warning: Kaggle listed no Python notebook for competition 'no-such-comp': check the slug, as in "
            "kaggle.com/competitions/<slug>") in comp.stderr
    both = mine("--competition", "titanic", "--competition", "no-such-comp", "--dataset", "nobody/nothing", "--limit", "1")
    assert both.returncode == 0, both.stderr[-2000:]
    warnings = [line for line in both.stderr.splitlines() if line.startswith("warning:")]
    # titanic's notebooks use no dataset nobody/nothing either: both listings are empty, both named
    assert warnings == [f"warning: Kaggle listed no Python notebook for competition {slug!r} and dataset 'nobody/nothing': "
                        "check the slug, as in kaggle.com/competitions/<slug>, or the criteria together match nothing"
                        for slug in ("titanic", "no-such-comp")]
    dataset = mine("--dataset", "nobody/nothing", "--limit", "2")
    assert dataset.returncode == 0 and "for dataset 'nobody/nothing': check owner/slug" in dataset.stderr
    found = mine("--competition", "digit-recognizer", "--limit", "1")
    assert found.returncode == 0 and "warning:" not in found.stderr and "listed 1" in found.stderr, found.stderr
    engine = create_engine(url)
    with Session(engine) as s:
        runs = s.execute(select(MiningRun.status, MiningRun.listed).order_by(MiningRun.id)).all()
    engine.dispose()
    assert [tuple(r) for r in runs] == [("finished", 0), ("finished", 0), ("finished", 0), ("finished", 1)]

    bogus = mine("--competition", "titanic", "--sort-by", "bogus")
    assert bogus.returncode == 2 and "error: --sort-by 'bogus': Input should be 'votes'" in bogus.stderr
