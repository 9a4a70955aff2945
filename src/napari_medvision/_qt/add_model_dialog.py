"""The Run-model dock's "Add model..." dialog: what ``medvision import`` does, with a form for bare networks."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
)

from ..core.backend import shared_backend
from ..core.errors import MedvisionError
from ..core.models.importer import NetworkFacts
from .workers import report_error, start_engine

#: Importing checks that the model builds and loads its weights: model code, so it runs in the worker.
IMPORT = "napari_medvision.core.models.importer:import_model"

BARE = (".ts", ".pt", ".pth", ".onnx")


class AddModelDialog(QDialog):
    """Pick a bundle / nnU-Net folder, an nnU-Net zip or a TorchScript / ONNX file; import it.

    After ``exec_()``, ``imported`` is the new model folder (None if nothing was imported).
    """

    def __init__(self, parent=None, destination: str | Path | None = None):
        super().__init__(parent)
        self.setWindowTitle("Add model")
        self.destination = destination
        self.imported: Path | None = None
        self.worker = None
        self.source = QLineEdit()
        folder_button, file_button = QPushButton("Folder…"), QPushButton("File…")
        self.name = QLineEdit()
        self.name.setPlaceholderText("from the source")
        self.labels = QLineEdit()
        self.labels.setPlaceholderText("1=liver,2=spleen")
        self.patch = QLineEdit()
        self.patch.setPlaceholderText("96 96 96")
        self.spacing = QLineEdit()
        self.spacing.setPlaceholderText("1.5 1.5 2.0 (empty: as the image comes)")
        self.normalisation = QComboBox()
        self.normalisation.addItems(["none", "CT window (HU)", "MR percentiles"])
        self.range = QLineEdit()
        self.range.setPlaceholderText("-57,164  or  1,99")
        self.orientation = QLineEdit()
        self.orientation.setPlaceholderText("RAS (empty: as loaded)")
        self.note = QLabel("A TorchScript / ONNX file needs the fields below; folders and zips need none.")
        self.note.setWordWrap(True)

        row = QHBoxLayout()
        row.addWidget(self.source, 1)
        row.addWidget(folder_button)
        row.addWidget(file_button)
        form = QFormLayout()
        form.addRow("Source", row)
        form.addRow("Name", self.name)
        form.addRow(self.note)
        form.addRow("Labels", self.labels)
        form.addRow("Patch size", self.patch)
        form.addRow("Spacing (mm)", self.spacing)
        form.addRow("Normalisation", self.normalisation)
        form.addRow("Range", self.range)
        form.addRow("Orientation", self.orientation)
        self.buttons = buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)
        folder_button.clicked.connect(self._pick_folder)
        file_button.clicked.connect(self._pick_file)
        buttons.accepted.connect(self.accept_import)
        buttons.rejected.connect(self.reject)

    def _pick_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "MONAI bundle or nnU-Net model folder")
        if folder:
            self.source.setText(folder)

    def _pick_file(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "nnU-Net zip, TorchScript or ONNX file", "",
                                              "Models (*.zip *.ts *.pt *.pth *.onnx)")
        if name:
            self.source.setText(name)

    def facts(self) -> NetworkFacts | None:
        """The bare-network fields, or None when the source is a folder or zip.

        Raises:
            MedvisionError: a field that does not parse.
        """
        if Path(self.source.text()).suffix.lower() not in BARE:
            return None
        try:
            labels = {int(v): n.strip() for v, _, n in (p.partition("=") for p in self.labels.text().split(",") if p)}
            patch = tuple(int(v) for v in self.patch.text().split())
            spacing = tuple(float(v) for v in self.spacing.text().split()) or None
            bounds = tuple(float(v) for v in self.range.text().split(",")) if self.range.text().strip() else None
        except ValueError:
            raise MedvisionError("labels are VALUE=NAME pairs, patch size and spacing numbers, range LOW,HIGH") \
                from None
        mode = self.normalisation.currentIndex()
        return NetworkFacts(labels=labels, patch_size=patch, spacing=spacing,
                            window=bounds if mode == 1 else None, percentiles=bounds if mode == 2 else None,
                            orientation=self.orientation.text().strip() or None)

    def accept_import(self):
        """Import in the dock's compute worker (copying a model, building it and reading its weights take a
        while, and are model code: never in the viewer's process); returns the napari worker driving it."""
        try:
            facts = self.facts()
        except MedvisionError as exc:
            report_error(exc)
            return None
        self.buttons.setEnabled(False)
        self.note.setText("importing…")

        def done(path):
            self.imported = path
            self.accept()

        def failed(exc):
            self.buttons.setEnabled(True)
            self.note.setText("not imported: see the message")
            report_error(exc)

        # This computer's worker, whatever the dock computes on: the model is added here.
        job = shared_backend("inference").run(IMPORT, self.source.text(), name=self.name.text().strip() or None,
                                              facts=facts, destination=self.destination)
        self.worker = start_engine(job, on_progress=lambda _: None, on_result=done, on_error=failed,
                                   on_aborted=lambda: failed(MedvisionError("import cancelled: nothing was added")))
        return self.worker
