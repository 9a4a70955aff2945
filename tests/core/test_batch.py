"""Batch inference over a folder: every study once, resumable after a kill, disjoint shards, failures reported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from napari_medvision.cli import main
from napari_medvision.core.errors import MedvisionError
from napari_medvision.core.inference.batch import RECORDS, find_studies, in_shard, parse_shard, run_batch
from napari_medvision.core.models import find_model

from ..bundles import threshold_bundle
from ..conftest import drain, make_image, write_dicom_series

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def studies(tmp_path) -> Path:
    """Five image files of several formats and one DICOM series folder."""
    folder = tmp_path / "studies"
    folder.mkdir()
    for k, name in enumerate(["a.nii.gz", "b.nrrd", "c.mha", "d.nii.gz", "e.nii"]):
        sitk.WriteImage(make_image((10, 14, 16), geometry="oblique" if k % 2 else "anisotropic", seed=k),
                        str(folder / name))
    hu = np.random.default_rng(9).integers(-1000, 1000, size=(6, 12, 12))
    write_dicom_series(folder / "series_f", hu)
    (folder / "notes.txt").write_text("not a study")
    return folder


@pytest.fixture
def model(tmp_path) -> str:
    return str(threshold_bundle(tmp_path / "threshold"))


def _records(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())["studies"]


def test_find_studies_names_files_and_series(studies):
    found = find_studies(studies)
    assert [s.name for s in found] == ["a", "b", "c", "d", "e", "series_f"]
    assert found[-1].path.is_dir()


def test_batch_writes_every_study_with_its_geometry(studies, model, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["infer", "--model", model, "--input", str(studies), "--output", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["done"] == 6 and report["failed"] == 0
    records = _records(out)
    assert sorted(records) == ["a", "b", "c", "d", "e", "series_f"]
    assert all(r["status"] == "done" and r["seconds"] >= 0 and "dense" in r["volumes_ml"] for r in records.values())
    label, image = sitk.ReadImage(str(out / "c.nii.gz")), sitk.ReadImage(str(studies / "c.mha"))
    assert label.GetSize() == image.GetSize()
    np.testing.assert_allclose(label.GetDirection(), image.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(label.GetOrigin(), image.GetOrigin(), atol=1e-4)


def test_failing_study_is_reported_and_the_rest_done(studies, model, tmp_path, capsys):
    (studies / "broken.nii.gz").write_bytes(b"this is not a NIfTI file at all" * 10)
    out = tmp_path / "out"
    code = main(["infer", "--model", model, "--input", str(studies), "--output", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 1
    records = _records(out)
    assert records["broken"]["status"] == "failed" and records["broken"]["error"]
    assert "broken" in captured.err
    assert sum(r["status"] == "done" for r in records.values()) == 6
    assert not (out / "broken.nii.gz").exists()


def test_shards_cover_the_folder_disjointly(studies, model, tmp_path, capsys):
    names = [f"case_{k:04d}" for k in range(300)]
    owners = [[k for k in (1, 2, 3) if in_shard(name, (k, 3))] for name in names]
    assert all(len(o) == 1 for o in owners)
    assert {o[0] for o in owners} == {1, 2, 3}
    out = tmp_path / "out"
    runs = []
    for shard in ("1/2", "2/2"):
        assert main(["infer", "--model", model, "--input", str(studies), "--output", str(out),
                     "--shard", shard, "--json"]) == 0
        runs.append({n for n, r in json.loads(capsys.readouterr().out)["studies"].items() if r["status"] == "done"})
    assert runs[0].isdisjoint(runs[1])
    assert runs[0] | runs[1] == {"a", "b", "c", "d", "e", "series_f"}
    assert len(_records(out)) == 6


def test_bad_shard_is_one_line_exit_2(studies, model, tmp_path):
    """The real program: one ``error:`` line naming the shard, exit 2, nothing written."""
    result = subprocess.run([sys.executable, "-m", "napari_medvision.cli", "infer", "--model", model, "--input",
                             str(studies), "--output", str(tmp_path / "out"), "--shard", "3/2"],
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "3/2" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("shard", ["0/2", "2", "a/b", "1/0"])
def test_other_bad_shards(shard, studies, model, tmp_path, capsys):
    code = main(["infer", "--model", model, "--input", str(studies), "--output", str(tmp_path / "out"),
                 "--shard", shard])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: --shard")
    assert not (tmp_path / "out").exists()


def test_parse_shard():
    assert parse_shard("2/5") == (2, 5)
    with pytest.raises(MedvisionError):
        parse_shard("6/5")


def test_interrupted_batch_resumes_each_study_once(studies, model, tmp_path):
    """Ctrl-C at the third study's read, then a re-run: the first two are skipped, the rest done once."""
    from napari_medvision.core.io import read_volume

    bundle = find_model(model)
    out = tmp_path / "out"
    out.mkdir()
    reads = []

    def interrupting(path):
        reads.append(Path(path).name)
        if len(reads) == 3:
            raise KeyboardInterrupt
        return read_volume(path)

    with pytest.raises(KeyboardInterrupt):
        drain(run_batch(bundle, find_studies(studies), out, reader=interrupting))
    first = {n for n, r in _records(out).items() if r["status"] == "done"}
    assert first == {"a", "b"}  # c was read (and interrupted) while b computed
    _, report = drain(run_batch(bundle, find_studies(studies), out))
    done = {n for n, r in report.studies.items() if r["status"] == "done"}
    assert {n for n, r in report.studies.items() if r["status"] == "skipped"} == first
    assert first.isdisjoint(done) and first | done == {"a", "b", "c", "d", "e", "series_f"}


def test_killed_batch_leaves_no_half_file_and_resumes(studies, model, tmp_path):
    """SIGKILL mid-batch (each read slowed to 0.4 s), then a re-run finishes every study exactly once."""
    out = tmp_path / "out"
    script = ("import time, napari_medvision.core.io as io; read = io.read_volume; "
              "io.read_volume = lambda p, **k: (time.sleep(0.4), read(p, **k))[1]; "
              "from napari_medvision.cli import main; "
              f"main(['infer', '--model', {model!r}, '--input', {str(studies)!r}, '--output', {str(out)!r}])")
    process = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list((out / RECORDS).glob("*.json")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.nii.gz")}
    assert 1 <= len(before) < 6
    code = main(["infer", "--model", model, "--input", str(studies), "--output", str(out), "--json"])
    assert code == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.nii.gz") if p.name in before} == before
    records = _records(out)
    assert sorted(records) == ["a", "b", "c", "d", "e", "series_f"]
    assert all(r["status"] == "done" for r in records.values())
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".") and p.name != RECORDS) == []
    assert len(list(out.glob("*.nii.gz"))) == 6
