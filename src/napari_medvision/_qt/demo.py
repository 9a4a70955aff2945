"""``medvision demo``: napari with the CT phantom, the Study dock, the Run-model dock with the
sample U-Net selected (ready to press Run), and the Fine-tune dock."""

from __future__ import annotations

PLUGIN = "napari-medvision"
DEMO_MODEL = "ct_organs_unet"


def open_demo_viewer(show: bool = True):
    """A viewer with the CT phantom loaded and every MedVision dock added."""
    import napari

    viewer = napari.Viewer(title="napari-medvision demo", show=show)
    viewer.open_sample(PLUGIN, "ct_phantom")
    viewer.window.add_plugin_dock_widget(PLUGIN, "Study")
    _, runner = viewer.window.add_plugin_dock_widget(PLUGIN, "Run model", tabify=True)
    viewer.window.add_plugin_dock_widget(PLUGIN, "Fine-tune", tabify=True)
    names = [bundle.name for bundle in runner.bundles]
    if DEMO_MODEL in names:
        runner.model_combo.setCurrentIndex(names.index(DEMO_MODEL))
    runner.image_combo.setCurrentText("CT phantom")
    return viewer


def run_demo() -> None:
    import napari

    open_demo_viewer()
    napari.run()
