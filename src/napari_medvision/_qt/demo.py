"""``medvision demo``: napari with the CT phantom and the plugin's docks open."""

from __future__ import annotations

PLUGIN = "napari-medvision"


def open_demo_viewer(show: bool = True):
    """A viewer with the CT phantom loaded and every MedVision dock added."""
    import napari

    viewer = napari.Viewer(title="napari-medvision demo", show=show)
    viewer.open_sample(PLUGIN, "ct_phantom")
    viewer.window.add_plugin_dock_widget(PLUGIN, "Study")
    viewer.window.add_plugin_dock_widget(PLUGIN, "Run model", tabify=True)
    return viewer


def run_demo() -> None:
    import napari

    open_demo_viewer()
    napari.run()
