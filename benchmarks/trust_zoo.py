"""How many zoo-like bundle configs run without trust: the gate before issue 22 against today's.

    python benchmarks/trust_zoo.py [--before-rev REV]

"Before" runs the old gate (``core/models/trust.py`` at REV, default 2b09881, the
last commit before the rewrite) with its old rule that preprocessing must be a
plain list; "after" is ``Bundle.code_findings`` today. Prints one row per config
from ``tests/zoo_configs.py`` and the totals.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from napari_medvision.core.models import load_bundle  # noqa: E402
from tests.zoo_configs import zoo_configs  # noqa: E402

USED = ["network_def", "preprocessing", "inferer", "postprocessing"]
USED_DETECTION = ["network_def", "preprocessing", "detector", "detector_ops"]


def old_gate(rev: str):
    source = subprocess.run(["git", "show", f"{rev}:src/napari_medvision/core/models/trust.py"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    module = types.ModuleType("old_trust")
    exec(compile(source, "old_trust.py", "exec"), module.__dict__)  # the project's own earlier code

    def passes(config: dict) -> bool:
        config = json.loads(json.dumps(config))
        for key, dropped in (("preprocessing", "LoadImaged"), ("postprocessing", "SaveImaged")):
            node = config.get(key)
            transforms = node.get("transforms") if isinstance(node, dict) else node
            if not isinstance(transforms, list):
                if key == "preprocessing":
                    return False  # "not a plain list of transforms": the bundle could not run at all
                continue
            transforms[:] = [t for t in transforms if not (isinstance(t, dict) and t.get("_target_") == dropped)]
        used = USED_DETECTION if "detector" in config else USED
        return not module.code_in_config(config, [k for k in used if k in config])

    return passes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before-rev", default="2b09881")
    args = parser.parse_args()
    before = old_gate(args.before_rev)
    rows, totals = [], [0, 0, 0]
    with tempfile.TemporaryDirectory() as tmp:
        for name, (config, expected) in sorted(zoo_configs().items()):
            folder = Path(tmp) / name
            (folder / "configs").mkdir(parents=True)
            (folder / "configs" / "inference.json").write_text(json.dumps(config))
            after = not load_bundle(folder).code_findings()
            old = before(config)
            totals = [totals[0] + old, totals[1] + after, totals[2] + expected]
            rows.append(f"{name:<36} {'yes' if old else 'no':>7} {'yes' if after else 'no':>7} "
                        f"{'yes' if expected else 'no':>9}")
    print(f"{'config':<36} {'before':>7} {'after':>7} {'expected':>9}")
    print("\n".join(rows))
    count = len(rows)
    print(f"{'runs untrusted':<36} {totals[0]:>4}/{count} {totals[1]:>4}/{count} {totals[2]:>6}/{count}")


if __name__ == "__main__":
    main()
