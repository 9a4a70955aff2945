#!/usr/bin/env bash
# Set up napari-medvision for use and development: the system libraries napari needs
# for a (virtual) display, a virtual environment in .venv, and the package with its test extra
# (which brings PyQt6, napari's default Qt binding; `pip install .[pyqt5]` works too).
set -euo pipefail
cd "$(dirname "$0")/.."

# (Qt 6, the PyQt6 binding of the test extra, also links EGL, fontconfig and GLib.)
DISPLAY_PACKAGES="xvfb libgl1-mesa-dri libglx-mesa0 libegl1 libfontconfig1 libglib2.0-0 libxkbcommon-x11-0
  libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0
  libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libdbus-1-3"
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $DISPLAY_PACKAGES >/dev/null
else
  echo "note: not root or no apt-get; make sure these are installed for napari: $DISPLAY_PACKAGES" >&2
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# A PyTorch that this machine has on disk; elsewhere any torch>=2.4 from pyproject.toml will do.
if ! .venv/bin/python -c "import torch, torchvision" >/dev/null 2>&1; then
  .venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1" \
    || .venv/bin/python -m pip install -q torch torchvision
fi
.venv/bin/python -m pip install -q -e ".[test]"
echo "napari-medvision is set up in .venv"
