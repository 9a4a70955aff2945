"""Seconds per click of the Model Zoo's interactive bundles at their real size (random weights).

Builds, in a temporary folder, a DeepEdit annotation bundle with the zoo's DynUNet
(``spleen_deepedit_annotation``: 31 M parameters, 128³ input) and a VISTA3D bundle with the zoo's
``vista3d132`` network (218 M, 128³ windows), both in the zoo's config format
(tests/zoo_bundles.py), and times clicks on a 160x160x96 CT-like volume through the same engine
``medvision interact --model`` uses. Weights are random: the figures are latency, not quality.

    PYTHONPATH=src .venv/bin/python benchmarks/zoo_interactive.py [--device cpu|cuda] [--clicks N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from napari_medvision.core.interactive import Prompts  # noqa: E402
from napari_medvision.core.interactive.zoo import zoo_engine  # noqa: E402
from napari_medvision.core.volume import Volume  # noqa: E402
from tests.bundles import write_bundle  # noqa: E402
from tests.zoo_bundles import deepedit_config, deepedit_metadata, vista3d_bundle  # noqa: E402

ZOO_DYNUNET = {"_target_": "DynUNet", "spatial_dims": 3, "in_channels": "$len(@label_names) + @number_intensity_ch",
               "out_channels": "$len(@label_names)", "kernel_size": [3, 3, 3, 3, 3, 3],
               "strides": [1, 2, 2, 2, 2, [2, 2, 1]], "upsample_kernel_size": [2, 2, 2, 2, [2, 2, 1]],
               "norm_name": "instance", "deep_supervision": False, "res_block": True}


def deepedit_full(folder: Path) -> Path:
    from monai.bundle import ConfigParser

    config = deepedit_config((128, 128, 128))
    config["network_def"] = dict(ZOO_DYNUNET)
    parser = ConfigParser({k: config[k] for k in ("label_names", "number_intensity_ch", "network_def")})
    write_bundle(folder, config, deepedit_metadata((128, 128, 128)), parser.get_parsed_content("network_def").state_dict())
    from tests.zoo_bundles import ORIENT_SCRIPT

    (folder / "scripts").mkdir(exist_ok=True)
    (folder / "scripts" / "__init__.py").write_text("")
    (folder / "scripts" / "transforms.py").write_text(ORIENT_SCRIPT)
    return folder


def vista3d_full(folder: Path) -> Path:
    import json

    vista3d_bundle(folder, patch_size=(128, 128, 128))
    config_path = folder / "configs" / "inference.json"
    config = json.loads(config_path.read_text())
    config["network_def"] = "$monai.networks.nets.vista3d132(in_channels=@input_channels)"
    config_path.write_text(json.dumps(config))
    from monai.networks.nets import vista3d132

    torch.save(vista3d132(in_channels=1).state_dict(), folder / "models" / "model.pt")
    return folder


def time_clicks(engine, volume: Volume, clicks: int) -> list[float]:
    """Seconds of each call (the network already built); call k has k clicks."""
    centre = np.array(volume.shape) // 2
    prompts, seconds = Prompts([centre]), []
    for k in range(clicks):
        start = time.perf_counter()
        engine.segment_volume(volume, prompts)
        seconds.append(time.perf_counter() - start)
        prompts = prompts.add(centre + (k + 1) * np.array([1, 3, -3]), positive=k % 2 == 0)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clicks", type=int, default=2)
    parser.add_argument("--only", choices=("deepedit", "vista3d"))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    volume = Volume(rng.normal(40, 30, (96, 160, 160)).astype(np.float32), spacing=(1.2, 1.2, 2.5))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, build in (("deepedit", deepedit_full), ("vista3d", vista3d_full)):
            if args.only and args.only != name:
                continue
            engine = zoo_engine(build(Path(tmp) / name), trusted=True, device=args.device)
            params = sum(p.numel() for p in engine.loaded().network.parameters()) / 1e6
            seconds = time_clicks(engine, volume, args.clicks)
            rows.append((name, params, seconds))
    print(f"{'bundle':<10} {'params M':>9} {'device':>7} " + " ".join(f"{'click ' + str(k + 1):>9}" for k in range(args.clicks)))
    for name, params, seconds in rows:
        print(f"{name:<10} {params:>9.1f} {args.device:>7} " + " ".join(f"{s:>8.2f}s" for s in seconds))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
