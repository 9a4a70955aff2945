"""What a ``medvision infer`` or ``interact`` process imports: not MONAI's optional packages they never use."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import SimpleITK as sitk

from tests.conftest import make_image

#: Imported by ``import monai`` when installed (MONAI's optional imports), used by no segmentation here
#: (matplotlib's modules are in ``sys.modules``, their code not run: ``pending``).
HEAVY = ("torchvision", "torch._dynamo", "pandas", "sklearn", "skimage", "huggingface_hub", "scipy.signal",
         "scipy.ndimage", "matplotlib", "matplotlib.pyplot")
_RUN = f"""
import json, sys
from napari_medvision.cli import main
from napari_medvision.core._lazy_modules import pending
code = main(sys.argv[1:])
ran = [name for name in {HEAVY!r} if name in sys.modules and not pending(sys.modules[name])]
print(json.dumps({{"code": code, "loaded": ran,
                  "monai": "monai" in sys.modules}}))
"""


def test_infer_leaves_monais_unused_optional_packages_unimported_and_labels_equal(tmp_path):
    from napari_medvision._cli_util import drive
    from napari_medvision.core.backend import InProcessBackend
    from napari_medvision.core.io import read_volume
    from napari_medvision.core.models import find_model
    from tests.bundles import unet_bundle

    bundle = unet_bundle(tmp_path / "unet")
    image = tmp_path / "ct.nii.gz"
    sitk.WriteImage(make_image(shape=(20, 40, 36), geometry="oblique"), str(image))
    out = tmp_path / "seg.nii.gz"
    done = subprocess.run([sys.executable, "-c", _RUN, "infer", "--model", str(bundle), "--input", str(image),
                           "--output", str(out), "--device", "cpu", "--backend", "torch", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert record["code"] == 0 and record["monai"] and record["loaded"] == []

    # the same labels as the engine run here, in this process (MONAI imported as usual)
    engine = InProcessBackend().run_model(find_model(str(bundle)), read_volume(image), device="cpu",
                                          backend="torch")
    result = drive(engine, quiet=True)
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert written.shape == result.labels.array.shape and len(np.unique(written)) > 1
    np.testing.assert_array_equal(written, result.labels.array)


def test_interact_with_the_click_model_leaves_monais_unused_optional_packages_unimported(tmp_path):
    """``medvision interact`` defers them as ``infer`` does (the random walker itself uses SciPy's and
    scikit-image's image functions, so those two are not checked here)."""
    image = tmp_path / "scan.nii.gz"
    sitk.WriteImage(make_image(shape=(20, 40, 36)), str(image))
    done = subprocess.run([sys.executable, "-c", _RUN, "interact", "--input", str(image), "--point", "18,20,10,+",
                           "--model", "interactive_unet", "--output", str(tmp_path / "mask.nii.gz"), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(done.stdout.strip().splitlines()[-1])
    unused = {"torchvision", "torch._dynamo", "pandas", "sklearn", "huggingface_hub", "scipy.signal",
              "matplotlib", "matplotlib.pyplot"}
    assert record["code"] == 0 and record["monai"] and not unused & set(record["loaded"])
    assert sitk.ReadImage(str(tmp_path / "mask.nii.gz")).GetSize() == (36, 40, 20)
