"""Fine-tuning over two CPU processes (DDP, gloo): spawned by --nproc, or started torchrun-style."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from napari_medvision.core.models import load_bundle
from napari_medvision.core.training.distributed import Group, from_environment, share_of
from tests.bundles import unet_bundle
from tests.core.test_finetune import make_store

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT)}


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "napari_medvision.cli", *map(str, args)], capture_output=True,
                          text=True, encoding="utf-8", timeout=600, env=env or ENV)


@pytest.fixture
def store_and_model(tmp_path):
    make_store(tmp_path / "cases", [1, 2, 3])
    return tmp_path / "cases", unet_bundle(tmp_path / "base")


def finetune_args(cases, model, out):
    return ("finetune", "--model", model, "--cases", cases, "--output", out, "--epochs", 2, "--device", "cpu",
            "--validation-cases", "case_3", "--json")


@pytest.mark.slow
def test_two_processes_write_a_version_as_good_as_one(store_and_model, tmp_path):
    cases, model = store_and_model
    one = run(*finetune_args(cases, model, tmp_path / "one"))
    two = run(*finetune_args(cases, model, tmp_path / "two"), "--nproc", 2)
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    single, double = json.loads(one.stdout), json.loads(two.stdout)
    assert double["processes"] == 2 and double["version"] == str(tmp_path / "two")
    assert load_bundle(tmp_path / "two").task == "segmentation"
    assert [e["epoch"] for e in double["epochs"]] == [1, 2]
    assert double["base_dice"] == single["base_dice"]     # the same base model, validated the same way
    assert double["best_dice"] >= single["best_dice"] - 0.1
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.slow
def test_a_failing_process_ends_the_group_with_no_version(store_and_model, tmp_path):
    """torchrun-style: two commands with WORLD_SIZE/RANK set; process 1's cases hold a label the model
    lacks, so it fails while preparing; process 0 then fails too, and writes nothing."""
    cases, model = store_and_model
    bad = make_store(tmp_path / "bad", [1, 2, 3])
    label_path = bad.label_path("case_1")
    import SimpleITK as sitk

    label = sitk.ReadImage(str(label_path))
    sitk.WriteImage(label * 0 + 9, str(label_path))
    port = _free_port()
    group = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2"}
    procs = []
    for rank, folder in ((0, cases), (1, bad.root)):
        env = {**ENV, **group, "RANK": str(rank), "LOCAL_RANK": str(rank)}
        procs.append(subprocess.Popen([sys.executable, "-m", "napari_medvision.cli",
                                       *map(str, finetune_args(folder, model, tmp_path / f"out{rank}"))],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=600) for p in procs]
    assert procs[1].returncode == 2 and "label 9" in outputs[1][1]
    assert procs[0].returncode != 0 and outputs[0][1].strip().splitlines()[-1].startswith("error: ")
    assert not (tmp_path / "out0").exists() and not (tmp_path / "out1").exists()


def test_group_from_the_launchers_environment(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert from_environment() == Group(2, 4, 0)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert from_environment() is None
    assert share_of(20, Group(0, 3)) == 7 and share_of(20, None) == 20


def test_bad_nproc_is_one_line(store_and_model, tmp_path):
    cases, model = store_and_model
    result = run(*finetune_args(cases, model, tmp_path / "x"), "--nproc", 0)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "--nproc" in result.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
