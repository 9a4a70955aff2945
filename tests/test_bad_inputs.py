"""Every bad input a user can give the ``medvision`` command: exit 2, one ``error:`` line, nothing changed.

The table runs the CLI in-process (``napari_medvision.cli.main``) against one shared folder of small
studies, stores and bundles. Each row asserts the exit status, the last stderr line, that stderr holds
nothing but progress lines before it (no traceback, no library warning, no ITK chatter: ``capfd`` sees
C-level output too), that the shared folder is byte for byte as it was, and, for inputs that can be
judged from the arguments, that no model was built. Library warnings and Ctrl-C need a real process
and are tested at the end.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from napari_medvision.cli import main
from napari_medvision.core.models import bundle as bundle_module
from napari_medvision.core.phantom import generate_phantom
from napari_medvision.core.training import CaseStore
from tests.bundles import (
    SEG_POSTPROCESSING,
    classifier_bundle,
    detector_bundle,
    seg_metadata,
    threshold_bundle,
    write_bundle,
)
from tests.conftest import make_image, write_dicom_series

SHAPE, SPACING = (12, 24, 24), (8.0, 8.0, 10.0)


class Evil:
    """A pickle that would run a shell command if unpickled: it must never be."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


# --- the shared folder -------------------------------------------------------------------------
def _write(image: sitk.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def _store(root: Path, cases=(1, 2), labels=None) -> CaseStore:
    store = CaseStore.create(root, labels or {"background": 0, "dense": 1})
    for seed in cases:
        case = generate_phantom(seed, shape=SHAPE, spacing=SPACING)
        store.add_case(f"c{seed}", case.image, case.label.with_array((case.label.array > 0).astype(np.uint8)))
    return store


def _edit_label(store: CaseStore, case_id: str, edit) -> None:
    path = store.label_path(case_id)
    label = sitk.ReadImage(str(path))
    sitk.WriteImage(edit(label), str(path))


def _shifted(label: sitk.Image) -> sitk.Image:
    label.SetOrigin(tuple(np.add(label.GetOrigin(), (7.0, 0.0, 0.0))))
    return label


def _respaced(label: sitk.Image) -> sitk.Image:
    label.SetSpacing(tuple(np.multiply(label.GetSpacing(), (1.0, 1.0, 1.2))))
    return label


def _turned(label: sitk.Image) -> sitk.Image:
    label.SetDirection((0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    return label


def _cropped(label: sitk.Image) -> sitk.Image:
    return label[:, :, 1:]


def _brighter(label: sitk.Image) -> sitk.Image:
    return label * 5


def _bundles(root: Path, marker: Path) -> None:
    threshold_bundle(root / "seg")
    for name in ("ts_garbage", "pt_random", "pt_evil", "pt_pickle", "pt_zip", "pt_shape", "pt_text"):
        threshold_bundle(root / name)
    (root / "ts_garbage" / "models" / "model.pt").unlink()
    (root / "ts_garbage" / "models" / "model.ts").write_bytes(b"not a torchscript archive\n" * 40)
    (root / "pt_random" / "models" / "model.pt").write_bytes(np.random.default_rng(7).bytes(4096))
    torch.save({"weight": Evil(marker)}, root / "pt_evil" / "models" / "model.pt")
    with open(root / "pt_pickle" / "models" / "model.pt", "wb") as handle:  # plain pickle, not torch's zip
        pickle.dump({"weight": Evil(marker)}, handle)
    with zipfile.ZipFile(root / "pt_zip" / "models" / "model.pt", "w") as archive:
        archive.writestr("archive/data.pkl", b"garbage")
    torch.save({"weight": torch.zeros(3, 1, 1, 1, 1), "bias": torch.zeros(3)},
               root / "pt_shape" / "models" / "model.pt")
    (root / "pt_text" / "models" / "model.pt").write_text("these are not weights\n")
    (threshold_bundle(root / "no_weights") / "models" / "model.pt").unlink()
    (root / "not_a_bundle").mkdir()
    (root / "not_a_bundle" / "readme.txt").write_text("hello")
    bad_json = threshold_bundle(root / "bad_json")
    (bad_json / "configs" / "inference.json").write_text('{"network_def": ')
    unknown_task = threshold_bundle(root / "unknown_task")
    meta = json.loads((unknown_task / "configs" / "metadata.json").read_text())
    meta["medvision"] = {"task": "registration"}
    (unknown_task / "configs" / "metadata.json").write_text(json.dumps(meta))
    two = {"network_def": {"_target_": "torch.nn.Conv3d", "in_channels": 2, "out_channels": 2, "kernel_size": 1},
           "preprocessing": {"_target_": "Compose",
                             "transforms": [{"_target_": "EnsureChannelFirstd", "keys": "image"}]},
           "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [16, 16, 16], "sw_batch_size": 1},
           "postprocessing": {"_target_": "Compose", "transforms": SEG_POSTPROCESSING[1:3]}}
    write_bundle(root / "two_channels", two, seg_metadata({0: "background", 1: "thing"}))
    code = threshold_bundle(root / "code")   # an expression in a transform: runs the author's code
    config = json.loads((code / "configs" / "inference.json").read_text())
    config["preprocessing"]["transforms"].insert(1, {"_target_": "Lambdad", "keys": "image", "func": "$lambda x: x"})
    (code / "configs" / "inference.json").write_text(json.dumps(config))
    classifier_bundle(root / "cls")
    detector_bundle(root / "det")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    w = tmp_path_factory.mktemp("bad_inputs")
    _bundles(w / "b", w / "pwned")
    (w / "models").mkdir()                        # MEDVISION_MODELS: one readable model
    threshold_bundle(w / "models" / "dense_seg")
    images = w / "img"
    _write(generate_phantom(3, shape=SHAPE, spacing=SPACING).image.to_sitk(), images / "ct.nii.gz")
    _write(sitk.GetImageFromArray(np.zeros((20, 30), np.uint8)), images / "xray.png")
    (images / "empty.nii.gz").write_bytes(b"")
    (images / "notes.xyz").write_text("text")
    (images / "text.nii.gz").write_text("this is not an image\n" * 20)
    (images / "gztext.nii.gz").write_bytes(gzip.compress(b"hello" * 100))
    (images / "garbage.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x01" * 300)
    whole = _write(make_image(shape=(20, 40, 40)), images / "whole.nii.gz").read_bytes()
    (images / "truncated.nii.gz").write_bytes(whole[: len(whole) // 2])
    mha = _write(make_image(shape=(20, 40, 40)), images / "whole.mha")
    (images / "truncated.mha").write_bytes(mha.read_bytes()[:-1000])
    sitk.WriteImage(make_image(shape=(20, 40, 40)), str(images / "whole_z.mha"), useCompression=True)
    (images / "truncated_z.mha").write_bytes((images / "whole_z.mha").read_bytes()[:-1000])
    nrrd = _write(make_image(shape=(20, 40, 40)), images / "whole.nrrd")
    (images / "truncated.nrrd").write_bytes(nrrd.read_bytes()[:-1000])
    frames = np.stack([np.full((4, 5, 6), t, np.int16) for t in range(3)])
    _write(sitk.GetImageFromArray(frames, isVector=False), images / "fourd.nii.gz")
    _write(sitk.GetImageFromArray(np.full((2, 2, 2), np.nan, np.float32)), images / "allnan.mha")
    write_dicom_series(images / "dicom", np.zeros((3, 8, 8), np.int16))
    (images / "nodicom").mkdir()
    (images / "nodicom" / "readme.txt").write_text("hello")
    stores = w / "s"
    _store(stores / "good")
    for name, edit in (("shifted", _shifted), ("respaced", _respaced), ("turned", _turned), ("cropped", _cropped),
                       ("brighter", _brighter)):
        _edit_label(_store(stores / name), "c2", edit)
    CaseStore.create(stores / "empty", {"background": 0, "dense": 1})
    half = _store(stores / "half", cases=(1,))
    half.label_path("c1").unlink()
    (stores / "plain").mkdir()
    (stores / "plain" / "readme.txt").write_text("not a store")
    (stores / "badjson").mkdir()
    (stores / "badjson" / "dataset.json").write_text("{labels: ")
    (stores / "nolabels").mkdir()
    (stores / "nolabels" / "dataset.json").write_text('{"name": "x"}')
    out = w / "out"
    out.mkdir()
    (out / "afile").write_text("a file, not a folder")
    threshold_bundle(out / "existing_model")
    return w


def _snapshot(root: Path) -> dict:
    state = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        state[rel] = hashlib.sha1(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return state


# --- the table ---------------------------------------------------------------------------------
# (args, text of the last stderr line, True when it must be refused before any model is built)
INFER = ["infer", "--device", "cpu", "--input", "{w}/img/ct.nii.gz", "--model"]
FINETUNE = ["finetune", "--device", "cpu", "--epochs", "1", "--model"]
EVALUATE = ["evaluate", "--device", "cpu", "--model"]
#: What may come before the error line: the commands' own progress lines.
PROGRESS = re.compile(r"^(.*\.\.\.|preparing case \d+/\d+|building the model|base model validation Dice .*|"
                      r"epoch \d+/\d+: .*|evaluated \d+/\d+|loading \w+|sliding window)$")
CASES = [
    # info: the readers
    (["info", "{w}/img/missing.nii.gz"], "'{w}/img/missing.nii.gz' does not exist", True),
    (["info", "{w}/img/empty.nii.gz"], "'empty.nii.gz' is empty (0 bytes)", True),
    (["info", "{w}/img/notes.xyz"], "'notes.xyz' is not a supported image type", True),
    (["info", "{w}/img/text.nii.gz"], "'text.nii.gz' cannot be read as an image", True),
    (["info", "{w}/img/gztext.nii.gz"], "'gztext.nii.gz' cannot be read as an image", True),
    (["info", "{w}/img/truncated.nii.gz"], "'truncated.nii.gz' is truncated", True),
    (["info", "{w}/img/truncated.mha"], "'truncated.mha' is truncated: the header promises 64000 data bytes", True),
    (["info", "{w}/img/truncated_z.mha"], "'truncated_z.mha' is truncated: the header promises", True),
    (["info", "{w}/img/truncated.nrrd"], "'truncated.nrrd' is damaged or truncated", True),
    (["info", "{w}/img/garbage.dcm"], "'garbage.dcm' cannot be read as an image", True),
    (["info", "{w}/img/nodicom"], "no DICOM series found in folder '{w}/img/nodicom'", True),
    (["info", "{w}/img/dicom", "--series", "1.2.3"], "series '1.2.3' is not in", True),
    (["info", "{w}/img/fourd.nii.gz"], "'fourd.nii.gz' is 4D (3 volumes of 6x5x4)", True),
    (["info", "{w}/img/fourd.nii.gz", "--frame", "7"], "frame 7 does not exist", True),
    (["info", "{w}/img/fourd.nii.gz", "--frame", "-1"], "argument --frame: must be 0 or more, not -1", True),
    (["info", "{w}/img/allnan.mha"], "the image holds no finite values", True),
    (["info"], "the following arguments are required: path", True),
    # infer: options, judged before anything is read
    (INFER + ["seg", "--overlap", "1.5"], "argument --overlap: must be at least 0 and below 1", True),
    (INFER + ["seg", "--overlap", "-0.1"], "argument --overlap: must be at least 0 and below 1", True),
    (INFER + ["seg", "--overlap", "half"], "argument --overlap: 'half' is not a number", True),
    (INFER + ["seg", "--overlap", "nan"], "argument --overlap: 'nan' is not a finite number", True),
    (INFER + ["seg", "--sw-batch-size", "0"], "argument --sw-batch-size: must be at least 1, not 0", True),
    (INFER + ["seg", "--min-component-mm3", "-5"], "argument --min-component-mm3: must be 0 or more", True),
    (INFER + ["det", "--score-threshold", "1.5"], "argument --score-threshold: must be between 0 and 1", True),
    (INFER + ["seg", "--device", "tpu"], "argument --device: invalid choice: 'tpu'", True),
    # infer: paths, judged before the model is built
    (["infer", "--model", "{w}/b/seg", "--input", "{w}/img/missing.nii.gz"], "missing.nii.gz' does not exist", True),
    (["infer", "--model", "{w}/b/seg", "--input", "{w}/img/notes.xyz"], "is not a supported image type", True),
    (["infer", "--model", "{w}/b/seg", "--input", "{w}/img/xray.png"], "is a 3D model and the image is 2D", False),
    (INFER + ["{w}/b/seg", "--output", "{w}/out/seg.png"], "cannot write 'seg.png': use one of .nii.gz", True),
    (INFER + ["{w}/b/seg", "--output", "{w}/out/seg.json"], "cannot write 'seg.json': use one of .nii.gz", True),
    (INFER + ["{w}/b/seg", "--output", "{w}/out/no/such/seg.nii.gz"], "folder '{w}/out/no/such' does not exist",
     True),
    (INFER + ["{w}/b/seg", "--output", "{w}/out/afile/seg.nii.gz"], "'{w}/out/afile' is a file, not a folder", True),
    (INFER + ["{w}/b/seg", "--output", "{w}/out"], "cannot write '{w}/out': it is a folder", True),
    (INFER + ["{w}/b/det", "--output", "{w}/out/boxes.nii.gz"], "a detection result is a list of boxes", True),
    (INFER + ["{w}/b/cls", "--output", "{w}/out/heat.txt"], "cannot write 'heat.txt': use one of", True),
    # infer: models
    (INFER + ["no_such_model"], "no model called 'no_such_model' (known models:", True),
    (INFER + ["{w}/b/not_a_bundle"], "is not a model; expected a MONAI bundle folder", True),
    (INFER + ["{w}/b/bad_json"], "inference.json': Expecting value", True),
    (INFER + ["{w}/b/unknown_task"], "names an unknown task 'registration'", True),
    (INFER + ["{w}/b/no_weights"], "bundle 'no_weights' has no weights", False),
    (INFER + ["{w}/b/ts_garbage"], "'model.ts' in bundle 'ts_garbage' is not a TorchScript model", False),
    (INFER + ["{w}/b/pt_random"], "'model.pt' is not a PyTorch weights file (corrupt or another format)", False),
    (INFER + ["{w}/b/pt_text", "--trust"], "'model.pt' is not a PyTorch weights file", False),
    (INFER + ["{w}/b/pt_zip"], "'model.pt' cannot be read as weights (corrupt or truncated", False),
    (INFER + ["{w}/b/pt_evil", "--trust"], "would unpickle arbitrary objects (posix.system); refused", False),
    (INFER + ["{w}/b/pt_pickle", "--trust"], "would unpickle arbitrary objects (posix.system); refused", False),
    (INFER + ["{w}/b/pt_shape"], "weights in 'model.pt' do not fit the network (wrong shape: weight", False),
    (INFER + ["{w}/b/two_channels"], "expects 2 input channel(s); the image gives 1", False),
    (INFER + ["{w}/b/code"], "runs its own code", True),
    # models
    (["models", "--bogus"], "unrecognized arguments: --bogus", True),
    (["models", "extra"], "unrecognized arguments: extra", True),
    # finetune
    (FINETUNE + ["{w}/b/seg", "--cases", "{w}/s/good", "--output", "{w}/out/existing_model"],
     "'{w}/out/existing_model' exists already; a new model never overwrites another", True),
    (FINETUNE + ["{w}/b/seg", "--cases", "{w}/s/good", "--output", "{w}/out/afile/new"],
     "'{w}/out/afile' is a file, not a folder", True),
    (FINETUNE + ["{w}/b/seg", "--cases", "{w}/s/missing", "--output", "{w}/out/new"],
     "case store '{w}/s/missing' does not exist", True),
    (FINETUNE + ["{w}/b/seg", "--cases", "{w}/s/plain", "--output", "{w}/out/new"],
     "'{w}/s/plain' is not a case store (no dataset.json)", True),
    (FINETUNE + ["{w}/b/seg", "--cases", "{w}/s/badjson", "--output", "{w}/out/new"],
     "dataset.json' cannot be read as JSON", True),
    (FINETUNE + ["{w}/b/seg", "--cases", "{w}/s/nolabels", "--output", "{w}/out/new"],
     "is not an nnU-Net dataset.json: it needs a \"labels\" object", True),
    (FINETUNE + ["{w}/b/seg", "--cases", "{w}/s/empty", "--output", "{w}/out/new"], "has no cases yet", True),
    (FINETUNE + ["{w}/b/seg", "--cases", "{w}/s/half", "--output", "{w}/out/new"],
     "has no complete cases (1 miss their image or label file)", True),
    (FINETUNE + ["{w}/b/cls", "--cases", "{w}/s/good", "--output", "{w}/out/new"],
     "only segmentation models can be fine-tuned; 'cls' is a classification model", True),
    (FINETUNE + ["{w}/b/seg", "--cases", "{w}/s/good", "--output", "{w}/out/new", "--validation-cases", "c9"],
     "validation cases not in the store: c9", True),
    (FINETUNE + ["{w}/b/seg", "--cases", "{w}/s/good", "--output", "{w}/out/new", "--epochs", "0"],
     "argument --epochs: must be at least 1, not 0", True),
    (FINETUNE + ["{w}/b/seg", "--cases", "{w}/s/good", "--output", "{w}/out/new", "--max-minutes", "0"],
     "argument --max-minutes: must be more than 0", True),
    (FINETUNE + ["{w}/b/seg", "--cases", "{w}/s/good", "--output", "{w}/out/new", "--correction-weight", "-1"],
     "argument --correction-weight: must be 0 or more", True),
    (FINETUNE + ["{w}/b/seg", "--cases", "{w}/s/shifted", "--output", "{w}/out/new"],
     "the label map '{w}/s/shifted/labelsTr/c2.nii.gz' does not match the geometry of its image "
     "'{w}/s/shifted/imagesTr/c2_0000.nii.gz': origin", True),
    (FINETUNE + ["{w}/b/seg", "--cases", "{w}/s/brighter", "--output", "{w}/out/new"],
     "case 'c2' has label 5, which 'seg' does not output", True),
    (FINETUNE + ["{w}/b/code", "--cases", "{w}/s/good", "--output", "{w}/out/new"], "runs its own code", True),
    # evaluate
    (EVALUATE + ["{w}/b/seg", "--cases", "{w}/s/missing"], "case store '{w}/s/missing' does not exist", True),
    (EVALUATE + ["{w}/b/seg", "--cases", "{w}/s/plain"], "is not a case store (no dataset.json)", True),
    (EVALUATE + ["{w}/b/seg", "--cases", "{w}/s/badjson"], "dataset.json' cannot be read as JSON", True),
    (EVALUATE + ["{w}/b/seg", "--cases", "{w}/s/half"], "has no complete cases", True),
    (EVALUATE + ["{w}/b/det", "--cases", "{w}/s/good"], "only segmentation models can be evaluated", True),
    (EVALUATE + ["{w}/b/seg", "--cases", "{w}/s/shifted"],
     "labelsTr/c2.nii.gz' does not match the geometry of its image '{w}/s/shifted/imagesTr/c2_0000.nii.gz': "
     "origin image (-92, -92, -55) vs label map (-85, -92, -55) mm", True),
    (EVALUATE + ["{w}/b/seg", "--cases", "{w}/s/respaced"], "spacing image (8, 8, 10) vs label map (8, 8, 12) mm",
     True),
    (EVALUATE + ["{w}/b/seg", "--cases", "{w}/s/turned"], "direction image (1, 0, 0, 0, 1, 0, 0, 0, 1) vs label map",
     True),
    (EVALUATE + ["{w}/b/seg", "--cases", "{w}/s/cropped"], "size (x,y,z) image (24, 24, 12) vs label map (24, 24, 11)",
     True),
    # the command itself
    ([], "the following arguments are required: command", True),
    (["segment-everything"], "invalid choice: 'segment-everything'", True),
]


@pytest.mark.parametrize("args, expected, before_build", CASES,
                         ids=[f"{i:02d}-{' '.join(c[0][:1] + [a for a in c[0][1:] if '{w}' not in a])[:60]}"
                              for i, c in enumerate(CASES)])
def test_bad_input_is_one_line_and_changes_nothing(world, args, expected, before_build, capfd, monkeypatch):
    monkeypatch.setenv("MEDVISION_MODELS", str(world / "models"))
    monkeypatch.setenv("MEDVISION_TRUST_FILE", str(world / "trusted_bundles.json"))
    builds = []
    real_build = bundle_module.Bundle.build
    monkeypatch.setattr(bundle_module.Bundle, "build", lambda self, device: builds.append(self.name) or
                        real_build(self, device))
    before = _snapshot(world)
    capfd.readouterr()
    try:
        status = main([a.format(w=world) for a in args])
    except SystemExit as exit_:  # argparse leaves through sys.exit
        status = exit_.code
    out, err = capfd.readouterr()
    lines = err.strip().splitlines()
    assert status == 2, err
    assert lines and lines[-1].startswith("error: ") and expected.format(w=world) in lines[-1], err
    assert all(PROGRESS.match(line) for line in lines[:-1]), err
    assert "Traceback" not in err and "Warning" not in err and "WARNING" not in err
    assert _snapshot(world) == before
    if before_build:
        assert builds == [], f"a model was built before the input was refused: {builds}"


def test_the_table_covers_every_command():
    commands = {args[0] if args else "" for args, _, _ in CASES}
    assert {"info", "infer", "models", "finetune", "evaluate"} <= commands
    assert len({tuple(args) for args, _, _ in CASES}) == len(CASES) >= 40


# --- what is not an error: skipped cases, warnings ------------------------------------------------
def test_evaluate_skips_a_case_without_label_with_one_warning(tmp_path, capfd):
    bundle = threshold_bundle(tmp_path / "seg")
    store = _store(tmp_path / "cases", cases=(1, 2))
    store.label_path("c2").unlink()
    assert main(["evaluate", "--model", str(bundle), "--cases", str(store.root), "--device", "cpu", "--json"]) == 0
    out, err = capfd.readouterr()
    record = json.loads(out)
    assert record["cases"] == 1 and record["skipped"] == {"c2": "no label file"}
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: 1 case(s) skipped: c2 (no label file)"]


def test_label_geometry_within_tolerance_is_accepted(tmp_path):
    """1e-4 is the pairing tolerance (NIfTI stores its header in float32); more is a mismatch."""
    store = _store(tmp_path / "cases", cases=(1,))
    _edit_label(store, "c1", lambda label: (label.SetOrigin(tuple(np.add(label.GetOrigin(), 5e-5))), label)[1])
    store.read_case("c1")
    _edit_label(store, "c1", lambda label: (label.SetOrigin(tuple(np.add(label.GetOrigin(), 1e-3))), label)[1])
    from napari_medvision.core.errors import GeometryMismatchError

    with pytest.raises(GeometryMismatchError, match="origin"):
        store.read_case("c1")


def test_case_store_refuses_a_label_on_another_grid_and_writes_nothing(tmp_path):
    from napari_medvision.core.errors import GeometryMismatchError

    store = _store(tmp_path / "cases", cases=(1,))
    before = _snapshot(store.root)
    case = generate_phantom(2, shape=SHAPE, spacing=SPACING)
    moved = case.label.with_array(case.label.array)
    moved.origin = tuple(np.add(moved.origin, (0.0, 0.0, 7.0)))
    with pytest.raises(GeometryMismatchError, match="origin image"):
        store.add_case("c2", case.image, moved)
    assert _snapshot(store.root) == before


def _cli(*args, env=None, **kwargs):
    return subprocess.run([sys.executable, "-m", "napari_medvision.cli", *map(str, args)], capture_output=True,
                          text=True, encoding="utf-8", timeout=300, env={**os.environ, **(env or {})}, **kwargs)


def test_library_warnings_go_to_the_log_not_stderr(tmp_path):
    """MONAI warns (FutureWarning) about Orientationd's labels= on every run: only -v shows it."""
    bundle = threshold_bundle(tmp_path / "seg")
    image = _write(generate_phantom(1, shape=SHAPE, spacing=SPACING).image.to_sitk(), tmp_path / "ct.nii.gz")
    quiet = _cli("infer", "--model", bundle, "--input", image, "--device", "cpu", "--json")
    assert quiet.returncode == 0, quiet.stderr
    assert "Warning" not in quiet.stderr and "warn" not in quiet.stderr.lower(), quiet.stderr
    verbose = _cli("-v", "infer", "--model", bundle, "--input", image, "--device", "cpu", "--json")
    assert verbose.returncode == 0 and "py.warnings" in verbose.stderr and "FutureWarning" in verbose.stderr


def test_no_gdcm_chatter_before_no_dicom_series(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    result = _cli("info", tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: no DICOM series found in folder '{tmp_path}'"]


# --- Ctrl-C ---------------------------------------------------------------------------------------
def _slow_bundle(folder: Path) -> Path:
    """Many small windows (32³, overlap 0.75, one per batch) of a 3-level U-Net: a run of tens of seconds."""
    pre = [{"_target_": "EnsureChannelFirstd", "keys": "image"},
           {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": -1000, "a_max": 1000, "b_min": 0,
            "b_max": 1, "clip": True}]
    config = {"network_def": {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2,
                              "channels": [16, 32, 64], "strides": [2, 2], "num_res_units": 1},
              "preprocessing": {"_target_": "Compose", "transforms": pre},
              "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [32, 32, 32], "sw_batch_size": 1,
                          "overlap": 0.75},
              "postprocessing": {"_target_": "Compose", "transforms": SEG_POSTPROCESSING[2:3]}}
    return write_bundle(folder, config, seg_metadata({0: "background", 1: "thing"}))


@pytest.mark.slow
def test_ctrl_c_under_load_stops_within_seconds(tmp_path):
    bundle = _slow_bundle(tmp_path / "slow")
    image = _write(generate_phantom(1, shape=(64, 128, 128)).image.to_sitk(), tmp_path / "big.nii.gz")
    output = tmp_path / "labels.nii.gz"
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    try:
        run = subprocess.Popen([sys.executable, "-m", "napari_medvision.cli", "infer", "--model", str(bundle),
                                "--input", str(image), "--output", str(output), "--device", "cpu"],
                               stderr=subprocess.PIPE, text=True, encoding="utf-8")
        seen = []
        while not seen or "sliding window" not in seen[-1]:
            line = run.stderr.readline()
            assert line, "".join(seen)
            seen.append(line)
        time.sleep(2.0)  # well inside the windows (the whole run takes tens of seconds)
        assert run.poll() is None, "the run ended before it could be interrupted: make it longer"
        sent = time.monotonic()
        run.send_signal(signal.SIGINT)
        rest = run.communicate(timeout=60)[1]
        seconds = time.monotonic() - sent
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    lines = ("".join(seen) + rest).strip().splitlines()
    assert run.returncode == 130, lines
    assert lines[-1] == "error: interrupted" and "Traceback" not in rest
    assert seconds < 3.0, f"took {seconds:.1f} s to stop"
    assert not output.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["big.nii.gz", "slow"]
