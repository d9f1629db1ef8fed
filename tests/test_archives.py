"""Archive imports: small Meta Kaggle Code and KGTorrent archives built here from the real corpus."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from db.models import KaggleKernel, MiningRun, Source
from tests.fake_kaggle import REAL_CORPUS, smallest_notebooks

TRICKY_TITLE = 'EDA, "quick" look\nwith a newline'


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def corpus_files(n: int) -> list[Path]:
    return [REAL_CORPUS / row["file"] for row in smallest_notebooks(n + 2)[2:]]  # skip the two near-empty ones


def code_path(root: Path, version_id: int) -> Path:
    return root / f"{version_id // 1_000_000:04d}" / f"{(version_id // 1000) % 1000:03d}" / f"{version_id}.ipynb"


# kernel id, author id, slug, current version id, votes, views, medal
KERNELS = [
    (100, 1, "titanic-eda", 1000002, 50, 900, 3),
    (101, 2, "house-model", 2000005, 120, 4000, 2),
    (102, 3, "shap-plots", 3000123, 7, 80, None),
    (103, 1, "second-look", 123456789, 300, 12000, 1),
    (104, 2, "no-file", 4000000, 999, 1, None),
    (105, 2, "r-notebook", 4100000, 500, 10, None),
]
# version id, kernel id, language id, version number, title, competitions, dataset versions
VERSIONS = [
    (1000001, 100, 9, 1, "Titanic EDA (first)", [10], []),
    (1000002, 100, 9, 2, TRICKY_TITLE, [10], []),
    (2000005, 101, 9, 5, "House model", [11], [5000]),
    (3000123, 102, 9, 1, "SHAP plots", [10], []),
    (123456789, 103, 9, 4, "Second look", [10, 11], [5000, 5001]),
    (4000000, 104, 9, 1, "No file", [10], []),
    (4100000, 105, 8, 1, "An R notebook", [10], []),
]
USERS = [(1, "alice"), (2, "bob"), (3, "carol_x")]
COMPETITIONS = [(10, "titanic"), (11, "house-prices")]


def write_meta(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(folder / "Users.csv", ["Id", "UserName", "DisplayName", "RegisterDate", "PerformanceTier"],
              [[i, name, name.title(), "01/01/2015", 1] for i, name in USERS])
    write_csv(folder / "Competitions.csv", ["Id", "Slug", "Title", "TotalTeams"],
              [[i, slug, slug.title(), 1000] for i, slug in COMPETITIONS])
    write_csv(folder / "Kernels.csv", ["Id", "AuthorUserId", "CurrentKernelVersionId", "ForkParentKernelVersionId", "CurrentUrlSlug",
                                       "Medal", "TotalViews", "TotalComments", "TotalVotes"],
              [[k, a, v, "", slug, "" if medal is None else medal, views, 0, votes] for k, a, slug, v, votes, views, medal in KERNELS])
    write_csv(folder / "KernelVersions.csv", ["Id", "ScriptId", "ParentScriptVersionId", "ScriptLanguageId", "AuthorUserId",
                                              "CreationDate", "VersionNumber", "Title", "EvaluationDate", "TotalVotes",
                                              "IsInternetEnabled", "RunningTimeInMilliseconds", "DockerImage"],
              [[v, k, "", lang, next(a for kk, a, *_ in KERNELS if kk == k), "03/04/2021 10:11:12", n, title, "03/05/2021",
                1, "True", 65000, "gcr.io/kaggle-images/python@v99"] for v, k, lang, n, title, _, _ in VERSIONS])
    write_csv(folder / "KernelVersionCompetitionSources.csv", ["Id", "KernelVersionId", "SourceCompetitionId"],
              [[i, v, c] for i, (v, c) in enumerate(((v, c) for v, _, _, _, _, cs, _ in VERSIONS for c in cs), start=1)])
    write_csv(folder / "KernelVersionDatasetSources.csv", ["Id", "KernelVersionId", "SourceDatasetVersionId"],
              [[i, v, d] for i, (v, d) in enumerate(((v, d) for v, *_, ds in VERSIONS for d in ds), start=1)])
    write_csv(folder / "KernelLanguages.csv", ["Id", "Name", "DisplayName", "IsNotebook"],
              [[2, "Python", "Python", "False"], [8, "R", "R", "True"], [9, "Python", "Python", "True"]])
    # dataset version 5001 has no DatasetVersions row: it stays an id
    write_csv(folder / "DatasetVersions.csv", ["Id", "DatasetId", "Slug", "Title"], [[5000, 60, "house-extra", "House extra"]])
    write_csv(folder / "Datasets.csv", ["Id", "OwnerUserId", "CurrentDatasetVersionId"], [[60, 2, 5000]])


@pytest.fixture
def meta_kaggle_code(tmp_path) -> tuple[Path, Path, dict[int, Path]]:
    """A Meta Kaggle Code folder: one real notebook per kernel version id, plus a file with no metadata and a stray one."""
    root, meta = tmp_path / "code", tmp_path / "meta"
    files = corpus_files(8)
    placed = {}
    for (vid, *_), source in zip([v for v in VERSIONS if v[0] != 4000000], files):
        placed[vid] = code_path(root, vid)
    placed[7654321] = code_path(root, 7654321)  # no KernelVersions row
    for (vid, path), source in zip(placed.items(), files):
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, path)
    stray = root / "0000" / "000" / "999999.ipynb"  # belongs in 0000/999/
    stray.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(files[-1], stray)
    write_meta(meta)
    return root, meta, placed


def kernels_by_member(session, kind):
    rows = session.execute(select(Source.member, KaggleKernel).join(KaggleKernel, KaggleKernel.source_id == Source.id)
                           .where(Source.kind == kind)).all()
    return {member: k for member, k in rows}


def test_meta_kaggle_code_joins_metadata_including_files_without_it(meta_kaggle_code, session, settings):
    from ingest.kaggle.archives import ArchiveSelection, import_archive

    root, meta, placed = meta_kaggle_code
    report = import_archive("meta-kaggle-code", root, meta_dir=meta, selection=ArchiveSelection(), session=session, settings=settings)

    # current versions of Python kernels, and the file nobody describes; not v1 of kernel 100, not the R notebook
    expected = {1000002, 2000005, 3000123, 123456789, 7654321}
    rows = kernels_by_member(session, "meta-kaggle-code")
    member = {vid: placed[vid].relative_to(root).as_posix() for vid in placed}
    assert set(rows) == {member[v] for v in expected}
    assert member[123456789] == "0123/456/123456789.ipynb"
    assert (report.files, report.without_metadata, report.selected, report.imported) == (7, 1, 5, 5)
    assert any("999999.ipynb" in line and "0000/999/" in line for line in report.ignored)

    eda = rows[member[1000002]]
    assert (eda.ref, eda.version, eda.title, eda.author, eda.votes, eda.views, eda.medal) == (
        "alice/titanic-eda", 2, TRICKY_TITLE, "alice", 50, 900, 3)
    assert (eda.kernel_id, eda.kernel_version_id, eda.language, eda.kernel_type) == (100, 1000002, "python", "notebook")
    assert eda.competition_sources == ["titanic"] and eda.dataset_sources == []
    assert eda.docker_image == "gcr.io/kaggle-images/python@v99" and eda.run_time_seconds == 65.0 and eda.enable_internet
    assert eda.last_run_at.isoformat().startswith("2021-03-05")
    second = rows[member[123456789]]
    assert second.ref == "alice/second-look" and second.competition_sources == ["titanic", "house-prices"]
    assert second.dataset_sources == ["bob/house-extra", "dataset-version-id:5001"]
    assert rows[member[3000123]].ref == "carol_x/shap-plots"
    orphan = rows[member[7654321]]
    assert (orphan.ref, orphan.kernel_version_id, orphan.votes) == (None, 7654321, None)
    assert orphan.extra["metadata"] == "no metadata row for this file"

    run = session.get(MiningRun, report.run_id)
    assert run.kind == "meta-kaggle-code" and run.status == "finished" and run.pulled == 5

    # what the API will filter and facet on
    from db.queries.kaggle import KaggleFilter, kaggle_facet_counts, kaggle_kernels_by_notebook, notebook_ids_by_kaggle

    ids = notebook_ids_by_kaggle(session=session, filter=KaggleFilter(competition=("titanic",), min_votes=10, max_votes=300))
    assert sorted(ids) == sorted([eda.notebook_id, second.notebook_id])
    assert notebook_ids_by_kaggle(session=session, filter=KaggleFilter(author=("carol_x",))) == [rows[member[3000123]].notebook_id]
    assert dict(kaggle_facet_counts(session=session, field="competition")) == {"titanic": 3, "house-prices": 2}
    assert dict(kaggle_facet_counts(session=session, field="votes")) == {"1-9": 1, "10-99": 1, "100-999": 2, None: 1}
    assert [k.ref for k in kaggle_kernels_by_notebook(session=session, ids=[second.notebook_id])[second.notebook_id]] == ["alice/second-look"]

    # a second import adds nothing
    again = import_archive("meta-kaggle-code", root, meta_dir=meta, selection=ArchiveSelection(), session=session, settings=settings)
    assert (again.imported, again.already) == (0, 5)


def test_meta_kaggle_code_sampling_per_competition(meta_kaggle_code, session, settings):
    from ingest.kaggle.archives import ArchiveSelection, import_archive

    root, meta, placed = meta_kaggle_code
    # titanic's Python candidates by votes: second-look 300, titanic-eda 50, shap-plots 7 -> top 50% = 2
    report = import_archive("meta-kaggle-code", root, meta_dir=meta, session=session, settings=settings,
                            selection=ArchiveSelection(competitions=["titanic"], top_percent=50))
    rows = kernels_by_member(session, "meta-kaggle-code")
    assert sorted(k.ref for k in rows.values()) == ["alice/second-look", "alice/titanic-eda"]
    assert report.selected == 2

    every = import_archive("meta-kaggle-code", root, meta_dir=meta, session=session, settings=settings,
                           selection=ArchiveSelection(competitions=["titanic"], versions="all", language="all"))
    assert every.selected == 5  # both versions of titanic-eda, shap-plots, second-look, the R notebook
    versions = sorted((k.ref, k.version) for k in kernels_by_member(session, "meta-kaggle-code").values())
    assert ("alice/titanic-eda", 1) in versions and ("bob/r-notebook", 1) in versions


def test_kgtorrent_joins_by_user_and_slug(tmp_path, session, settings):
    from ingest.kaggle.archives import ArchiveSelection, import_archive

    root = tmp_path / "kgtorrent"
    notebooks = root / "notebooks"
    notebooks.mkdir(parents=True)
    files = corpus_files(5)
    names = ["alice_titanic-eda", "bob_house-model", "carol_x_shap-plots", "alice_second-look", "dave_not-in-the-tables"]
    for name, source in zip(names, files):
        shutil.copyfile(source, notebooks / f"{name}.ipynb")
    write_meta(root)  # the CSV export beside the notebooks
    report = import_archive("kgtorrent", root, meta_dir=root, selection=ArchiveSelection(), session=session, settings=settings)

    rows = {Path(m).stem: k for m, k in kernels_by_member(session, "kgtorrent").items()}
    assert set(rows) == set(names)
    assert (report.with_metadata, report.without_metadata, report.imported) == (4, 1, 5)
    assert (rows["carol_x_shap-plots"].ref, rows["carol_x_shap-plots"].author) == ("carol_x/shap-plots", "carol_x")
    bob = rows["bob_house-model"]
    assert (bob.ref, bob.version, bob.votes, bob.kernel_version_id) == ("bob/house-model", 5, 120, 2000005)
    assert bob.competition_sources == ["house-prices"] and bob.dataset_sources == ["bob/house-extra"]
    assert rows["alice_titanic-eda"].title == TRICKY_TITLE
    assert rows["dave_not-in-the-tables"].ref is None and rows["dave_not-in-the-tables"].extra["metadata"]

    # the sampling options work the same: the single most voted notebook
    top = import_archive("kgtorrent", root, meta_dir=root, selection=ArchiveSelection(limit=1), session=session, settings=settings)
    assert top.selected == 1 and top.already == 1
