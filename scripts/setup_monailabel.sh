#!/usr/bin/env bash
# Build a MONAI Label server in its own virtual environment, for the tests that start a real server
# (tests/core/remote/) and for anyone who wants to try `medvision ... --server URL` locally.
#
# monailabel 0.8.5 cannot share the project's environment: it needs numpy < 2 and pydicom < 3, and its
# segmentation tasks fail on MONAI 1.6 (1.6's Spacingd calls .update() on the string image_path), so it
# gets MONAI 1.5 in a venv of its own. It also copies the radiology and monaibundle sample apps out of
# the wheel (offline).
#
# Usage: bash scripts/setup_monailabel.sh [VENV_DIR]      (default: .venv-monailabel in the repo root)
# Afterwards: VENV_DIR/bin/python -m monailabel.main start_server --app VENV_DIR/apps/radiology ...
# Needs about 8 GB of disk and 4 minutes (most of it is torch). Safe to re-run: it skips what is done.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv-monailabel}
PYTHON=${PYTHON:-python3}
# The torch the project's own venv uses, so the wheel comes from the local cache when there is one.
TORCH_SPEC=${MONAILABEL_TORCH:-torch==2.14.1}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
if ! "$VENV/bin/python" -c "import monailabel, monai" >/dev/null 2>&1; then
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "$TORCH_SPEC" || "$VENV/bin/python" -m pip install -q torch
  "$VENV/bin/python" -m pip install -q "monailabel==0.8.*" "monai==1.5.*" "numpy<2" \
    "pydicom<3" "pynetdicom<3" "dicomweb-client<0.61"
fi
if [ ! -f "$VENV/apps/radiology/main.py" ]; then
  rm -rf "$VENV/apps/radiology"
  mkdir -p "$VENV/apps"
  "$VENV/bin/python" -m monailabel.main apps --download --name radiology --output "$VENV/apps" >/dev/null
fi
# The monaibundle app serves MONAI bundles from its model/ folder: how our own sample models are served.
if [ ! -f "$VENV/apps/monaibundle/main.py" ]; then
  rm -rf "$VENV/apps/monaibundle"
  "$VENV/bin/python" -m monailabel.main apps --download --name monaibundle --output "$VENV/apps" >/dev/null
fi
"$VENV/bin/python" -c "import monailabel, monai; print('monailabel', monailabel.__version__, 'monai', monai.__version__)"
echo "MONAI Label is set up in $VENV (apps: $VENV/apps/radiology, $VENV/apps/monaibundle)"
