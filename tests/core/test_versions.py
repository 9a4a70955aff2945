"""Model versions in core: the version in use, use / roll back / delete / compare, STORE@ref, crashes."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from napari_medvision.core.errors import MedvisionError, ModelError
from napari_medvision.core.models import find_bundle, load_bundle
from napari_medvision.core.phantom import generate_phantom
from napari_medvision.core.training import CaseStore
from napari_medvision.core.training.finetune import compare_versions
from napari_medvision.core.training.versions import VersionStore
from tests.bundles import threshold_bundle
from tests.conftest import drain


def threshold_state(hu: float) -> dict:
    """Weights of :func:`threshold_bundle`'s 1x1x1 convolution for 'HU above ``hu``'."""
    scaled = (hu + 1000) / 2000
    return {"weight": torch.tensor([-1.0, 1.0]).reshape(2, 1, 1, 1, 1) * 50,
            "bias": torch.tensor([scaled, -scaled]) * 50}


@pytest.fixture
def family(tmp_path):
    """base -> v001 -> v002, and v003 fine-tuned from the base again."""
    base = load_bundle(threshold_bundle(tmp_path / "base"))
    store = VersionStore(tmp_path / "versions")
    v1 = store.write(base, threshold_state(100), {"best_validation_dice": 0.5})
    v2 = store.write(load_bundle(v1.path), threshold_state(0), {"best_validation_dice": 0.7})
    store.write(base, threshold_state(500), {"best_validation_dice": 0.6})
    return base, store, v2


def current_json(store):
    return json.loads((store.root / "current.json").read_text())


def test_nothing_in_use_means_the_base_model(family):
    base, store, _ = family
    assert store.current() is None
    assert store.current_bundle(base) is base
    assert store.current_bundle().path == base.path, "the base is known from the first version's parent"
    assert store.base_path() == base.path


def test_use_any_version_older_ones_included_and_nothing_is_deleted(family):
    _, store, _ = family
    assert store.use(3).name == "v003"
    assert current_json(store) == {"version": "v003"}
    assert store.use("v001").name == "v001" and store.current().name == "v001"
    assert [v.name for v in store.versions()] == ["v001", "v002", "v003"]
    assert store.current_bundle().path == store.root / "v001"


def test_rollback_goes_to_the_parent_then_to_the_base(family):
    base, store, v2 = family
    store.use(v2)
    assert store.rollback().name == "v001"
    assert store.rollback() is None and current_json(store) == {"version": None}
    assert store.current_bundle().path == base.path
    with pytest.raises(MedvisionError, match="nothing to roll back"):
        store.rollback()
    store.use(3)
    assert store.rollback() is None, "v003 was fine-tuned from the base model"


def test_the_version_in_use_is_never_deleted(family):
    _, store, v2 = family
    store.use(v2)
    with pytest.raises(MedvisionError, match="in use and cannot be deleted"):
        store.delete("v002")
    assert (v2.path / "models" / "model.pt").is_file()
    store.delete(1)
    assert [v.name for v in store.versions()] == ["v002", "v003"]
    assert not [p for p in store.root.iterdir() if p.name.startswith(".")], "no half-deleted folder left"
    with pytest.raises(MedvisionError, match=r"no version '1'.*v002, v003"):
        store.get(1)
    with pytest.raises(MedvisionError, match="parent of v002 \\(v001\\) was deleted"):
        store.rollback()
    assert store.current().name == "v002", "a refused roll back changes nothing"


def test_fine_tunes_of_a_version_stay_in_its_family(family, tmp_path):
    base, store, v2 = family
    assert VersionStore.for_model(tmp_path / "cases", base).root == tmp_path / "cases" / "models" / "base"
    nested = VersionStore(tmp_path / "cases" / "models" / "base")
    version = nested.write(base, threshold_state(0), {})
    assert VersionStore.for_model(tmp_path / "cases", load_bundle(version.path)).root == nested.root


def test_locate_a_case_store_with_one_family_or_name_the_choices(family, tmp_path):
    base, _, _ = family
    cases = tmp_path / "cases"
    VersionStore(cases / "models" / "organs").write(base, threshold_state(0), {})
    assert VersionStore.locate(cases).root == cases / "models" / "organs"
    VersionStore(cases / "models" / "lungs").write(base, threshold_state(0), {})
    with pytest.raises(MedvisionError, match="several models \\(lungs, organs\\)"):
        VersionStore.locate(cases)
    with pytest.raises(MedvisionError, match="holds no model versions"):
        VersionStore.locate(tmp_path / "base")


def test_model_at_current_or_a_number_wherever_a_model_is_accepted(family, tmp_path):
    base, store, _ = family
    assert find_bundle(f"{store.root}@current").path == base.path, "nothing in use: the base model"
    store.use(2)
    assert find_bundle(f"{store.root}@current").path == store.root / "v002"
    assert find_bundle(f"{store.root}@1").path == store.root / "v001"
    assert find_bundle(f"{store.root}@v003", trusted=True).trusted
    assert find_bundle(f"{store.root}@base").path == base.path
    with pytest.raises(MedvisionError, match="no version '7'"):
        find_bundle(f"{store.root}@7")
    with pytest.raises(ModelError, match="is not a folder"):
        find_bundle(f"{tmp_path / 'nowhere'}@current")


def test_compare_two_versions_on_the_same_cases(family, tmp_path):
    _, store, _ = family
    cases = CaseStore.create(tmp_path / "eval", {"background": 0, "dense": 1})
    for seed in (1, 2):
        case = generate_phantom(seed, shape=(16, 32, 32), spacing=(8.0, 8.0, 12.0))
        cases.add_case(f"c{seed}", case.image, case.image.with_array((case.image.array > 0).astype(np.uint8)))
    _, record = drain(compare_versions(store, "3", "v002", cases, device="cpu"))
    assert record["cases"] == 2 and set(record["versions"]) == {"v003", "v002"}
    assert record["versions"]["v002"]["mean_dice"] > record["versions"]["v003"]["mean_dice"]
    assert record["better"] == "v002", "v002 thresholds at 0 HU, as the labels do"
    with pytest.raises(MedvisionError, match="with itself"):
        drain(compare_versions(store, "2", "v002", cases))


def test_failed_write_of_current_keeps_the_version_in_use(family, monkeypatch):
    import napari_medvision.core._atomic as atomic

    _, store, _ = family
    store.use(1)

    def dump_half(data, stream, **kwargs):
        stream.write('{"version": "v0')
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.json, "dump", dump_half)
    with pytest.raises(OSError):
        store.use(2)
    assert current_json(store) == {"version": "v001"}
    assert sorted(p.name for p in store.root.iterdir()) == ["current.json", "v001", "v002", "v003"]


def test_a_process_killed_while_switching_versions_leaves_the_old_one_in_use(family):
    _, store, _ = family
    store.use(1)
    # The process dies after writing the new file and before the rename that publishes it.
    code = textwrap.dedent(f"""
        import os
        os.replace = lambda *a, **k: os._exit(9)
        from napari_medvision.core.training.versions import VersionStore
        VersionStore({str(store.root)!r}).use(2)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert result.returncode == 9, result.stderr
    assert current_json(store) == {"version": "v001"} and store.current().name == "v001"


def test_a_crash_while_writing_a_version_leaves_no_half_version(family, monkeypatch):
    import napari_medvision.core.training.versions as versions_module

    base, store, _ = family
    before = {p.name: (p / "models" / "model.pt").read_bytes() for p in store.root.iterdir()}

    def save_half(state, path):
        open(path, "wb").write(b"PK\x03\x04 half a zip")
        raise RuntimeError("killed")

    monkeypatch.setattr(versions_module.torch, "save", save_half)
    with pytest.raises(RuntimeError):
        store.write(base, threshold_state(0), {})
    assert [v.name for v in store.versions()] == ["v001", "v002", "v003"]
    assert {p.name: (p / "models" / "model.pt").read_bytes() for p in store.root.iterdir()} == before


def test_cli_versions_list_use_rollback_compare_delete(family, tmp_path):
    _, store, _ = family

    def medvision(*args):
        result = subprocess.run([sys.executable, "-m", "napari_medvision.cli", "versions", str(store.root),
                                 *map(str, args)], capture_output=True, text=True, encoding="utf-8", timeout=300)
        return result.returncode, result.stdout, result.stderr

    rc, out, _ = medvision("--json")
    assert rc == 0 and [r["version"] for r in json.loads(out)] == ["v001", "v002", "v003"]
    assert medvision("use", 2, "--json")[1].strip() == '{"in_use": "v002"}'
    assert store.current().name == "v002"
    assert json.loads(medvision("rollback", "--json")[1]) == {"in_use": "v001"}
    rc, _, err = medvision("delete", 1)
    assert rc == 2 and err.startswith("error: v001 is in use") and len(err.strip().splitlines()) == 1
    assert medvision("delete", 3)[1].strip() == "deleted v003"
    assert [r["in_use"] for r in store.summary()] == [True, False]
    cases = CaseStore.create(tmp_path / "eval", {"background": 0, "dense": 1})
    case = generate_phantom(1, shape=(16, 32, 32), spacing=(8.0, 8.0, 12.0))
    cases.add_case("c1", case.image, case.image.with_array((case.image.array > 0).astype(np.uint8)))
    rc, out, err = medvision("compare", 1, 2, "--cases", cases.root, "--device", "cpu", "--json")
    assert rc == 0, err
    assert json.loads(out)["better"] == "v002"
