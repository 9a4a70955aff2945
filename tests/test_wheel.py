"""The built wheel installs like a real napari plugin: into a fresh virtual environment outside the
source tree, it lists and runs its sample models from an unrelated folder and npe2 finds its manifest.

The wheel is built from a copy of the source tree (sdist first, then the wheel from the sdist, as
``python -m build`` does), installed with ``--no-deps`` into a new venv. Its dependencies come from
the environment running the tests, through a site folder of links to that environment's packages
with this project's own (editable) install left out, so the only napari_medvision the new venv can
import is the wheel's. Slow (a build, an install, a model run): ``pytest -m wheel`` runs it; `.ci/run`
does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.wheel]

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = {"ct_organs_unet", "ct_organs_unetr", "lesion_classifier", "nodule_detector", "interactive_unet",
           "radiograph_classifier"}
_OWN = ("napari_medvision", "__editable__.napari_medvision", "__editable___napari_medvision")


def run(args, cwd: Path, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                            encoding="utf-8", timeout=timeout)
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the source tree (the tree itself is left untouched)."""
    work = tmp_path_factory.mktemp("build")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "__pycache__", "*.egg-info", ".pytest_cache"))
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", work / "dist", source], work, os.environ)
    wheels = list((work / "dist").glob("napari_medvision-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel) -> tuple[Path, dict]:
    """A fresh venv with only the wheel installed, and the environment to run it in."""
    root = tmp_path_factory.mktemp("venv")
    env_dir = root / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", env_dir], check=True)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    deps = root / "deps"
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(_OWN):
            (deps / entry.name).symlink_to(entry)
    (site / "_medvision_test_deps.pth").write_text(f"import site; site.addsitedir({str(deps)!r})\n")
    home = root / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MEDVISION_MODELS", "VIRTUAL_ENV")}
    env.update(HOME=str(home), PATH=f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "--no-compile",
         "-q", wheel], root, env)
    return env_dir, env


@pytest.fixture
def elsewhere(tmp_path) -> Path:
    folder = tmp_path / "unrelated"
    folder.mkdir()
    return folder


def test_the_wheel_carries_the_sample_bundles(wheel):
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    for sample in SAMPLES:
        for part in ("configs/inference.json", "configs/metadata.json", "models/model.pt", "docs/README.md"):
            assert f"napari_medvision/sample_models/{sample}/{part}" in names


def test_the_venv_imports_the_wheel_not_the_source(venv, elsewhere):
    env_dir, env = venv
    code = ("import importlib.metadata as m, napari_medvision as p; "
            "print(p.__file__); print(m.distribution('napari-medvision').locate_file(''))")
    lines = run([env_dir / "bin" / "python", "-c", code], elsewhere, env).stdout.split()
    assert all(Path(line).resolve().is_relative_to(env_dir.resolve()) for line in lines), lines


def test_medvision_models_lists_the_samples_from_any_folder(venv, elsewhere):
    env_dir, env = venv
    records = json.loads(run(["medvision", "models", "--json"], elsewhere, env).stdout)
    assert {r["name"] for r in records} == SAMPLES
    assert all(Path(r["path"]).resolve().is_relative_to(env_dir.resolve()) for r in records)


def test_user_folders_still_add_models(venv, elsewhere):
    env_dir, env = venv
    own = elsewhere / "my_models"
    shutil.copytree(env_dir.glob("lib/python*/site-packages/napari_medvision/sample_models/lesion_classifier")
                    .__next__(), own / "my_classifier")
    records = json.loads(run(["medvision", "models", "--json"], elsewhere, {**env, "MEDVISION_MODELS": str(own)})
                         .stdout)
    assert {r["name"] for r in records} == SAMPLES | {"my_classifier"}


def test_a_sample_segments_a_phantom(venv, elsewhere):
    _, env = venv
    run(["medvision", "phantom", "cases", "--cases", "1", "--shape", "48", "96", "96"], elsewhere, env)
    image = next((elsewhere / "cases" / "imagesTr").glob("*.nii.gz"))
    record = json.loads(run(["medvision", "infer", "--model", "ct_organs_unet", "--input", image, "--output",
                             "seg.nii.gz", "--device", "cpu", "--json"], elsewhere, env).stdout)
    assert record["task"] == "segmentation"
    assert record["volumes_ml"]["liver"] > 0
    assert (elsewhere / "seg.nii.gz").is_file()


def test_npe2_discovers_and_validates_the_plugin(venv, elsewhere):
    env_dir, env = venv
    code = ("from npe2 import PluginManager; pm = PluginManager.instance(); pm.discover(); "
            "m = pm.get_manifest('napari-medvision'); "
            "print(m.name, sorted(c.python_name for c in m.contributions.commands))")
    shipped = yaml.safe_load((ROOT / "src" / "napari_medvision" / "napari.yaml").read_text(encoding="utf-8"))
    expected = f"napari-medvision {sorted(c['python_name'] for c in shipped['contributions']['commands'])}"
    assert run([env_dir / "bin" / "python", "-c", code], elsewhere, env).stdout.strip() == expected
    run([env_dir / "bin" / "python", "-m", "npe2", "validate", "napari-medvision", "--imports"], elsewhere, env)
