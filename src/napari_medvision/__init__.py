"""napari-medvision: deep learning on medical images inside napari."""

__version__ = "0.1.0"
