"""The docks' background warm-up must not race the GUI thread. A bug once: pint's unit registry,
which every napari layer's transform uses, builds itself lazily and not thread-safely; the warm-up
thread (making napari layers) built it while a layer made on the GUI thread found it empty
("'pixel' is not defined"). It is built before the thread starts now."""

import subprocess
import sys

CODE = """
import pint
from napari_medvision._qt.workers import warm_up_in_background

warm_up_in_background()
registry = pint.get_application_registry().get()
print(isinstance(registry, pint.UnitRegistry), "pixel" in registry)
"""


def test_the_unit_registry_is_built_before_the_warm_up_thread_starts():
    result = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300)
    assert result.stdout.split() == ["True", "True"], result.stderr[-2000:]
