"""Pure compute: numpy, SimpleITK, torch and MONAI only (never napari or Qt)."""
