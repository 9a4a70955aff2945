"""The Annotate dock's interactive bundles: Model Zoo DeepEdit / VISTA3D bundles and fine-tuned
versions of the shipped click model, as extra entries of its engine list.

A bundle comes from "Add bundle…" (a folder), from the model folders (the registry's installed
bundles) or from the Fine-tune dock when it writes a version of the interactive model
(:meth:`BundleEngines.add`). A zoo bundle runs its own code, so it passes the Run-model dock's trust
mechanism (:mod:`.trust_view`): its findings shown under the engine, the same Trust tick, remembered
for its exact files; without the tick the dock refuses to run it (a notification, nothing runs), and
the worker's trust gate would refuse it again. For a DeepEdit bundle the user picks the label name
the clicks are for. What the run needs travels to the worker as :meth:`BundleEngines.job_options`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from qtpy.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout,
                            QWidget)

from ..core.errors import MedvisionError, UntrustedCodeError
from ..core.models.device import DEVICES
from .trust_view import CHECKING, TRUST_TEXT, TRUST_TIP, show_findings, trust_state, with_trust
from .workers import report_error, start_worker

log = logging.getLogger(__name__)

#: What each kind of interactive bundle is called in the engine list.
KINDS = {"deepedit": "DeepEdit bundle", "vista3d": "VISTA3D bundle", "interactive": "fine-tuned click model"}


@dataclass
class BundleEntry:
    """One interactive bundle of the engine list."""

    bundle: object
    kind: str                       # a key of KINDS
    labels: list[str] = field(default_factory=list)   # DeepEdit: label names the clicks may be for
    findings: list[str] | None = None                 # None: not checked yet
    remembered: bool = False

    @property
    def text(self) -> str:
        return f"{entry_name(self.bundle)} ({KINDS[self.kind]})"


def entry_name(bundle) -> str:
    """A version ``.../models/<family>/v001`` reads ``<family> v001``; any other bundle by its folder name."""
    path = Path(bundle.path)
    return f"{path.parent.name} {path.name}" if path.parent.parent.name == "models" else bundle.name


def interactive_entry(name_or_path) -> BundleEntry:
    """The entry for an interactive bundle (folder, registry name or ``STORE@ref``); nothing is built.

    Raises:
        MedvisionError: no such model, or a model that takes no clicks.
    """
    from ..core.interactive.zoo import bundle_style, label_names
    from ..core.models import Bundle, find_model

    model = find_model(name_or_path)
    kind = bundle_style(model) if isinstance(model, Bundle) else None
    if kind is None and getattr(model, "task", None) == "interactive":
        kind = "interactive"
    if kind is None:
        raise MedvisionError(f"'{model.name}' is a model but not an interactive one (no click guidance, no point "
                             "prompts in its config): choose a DeepEdit- or VISTA3D-style bundle, or a version "
                             "of the interactive model")
    labels = [n for n in label_names(model) if n.lower() != "background"] if kind == "deepedit" else []
    return BundleEntry(model, kind, labels)


def installed_entries(extra_folders=()) -> list[BundleEntry]:
    """Interactive bundles in the model folders and under ``<folder>/models/*/v*`` of ``extra_folders``
    (case stores), the shipped click model left out (it is a built-in engine)."""
    from ..core.interactive.click_unet import sample_bundle_path
    from ..core.models import list_bundles

    candidates = [b.path for b in list_bundles()]
    for folder in extra_folders:
        candidates += sorted(p for p in Path(folder).glob("models/*/v[0-9][0-9][0-9]*") if (p / "configs").is_dir())
    entries, sample = [], sample_bundle_path().resolve()
    for path in candidates:
        if Path(path).resolve() == sample:
            continue
        try:
            entries.append(interactive_entry(path))
        except MedvisionError:
            continue   # not an interactive bundle (or unreadable: the registry logged it)
    return entries


class BundleEngines(QWidget):
    """"Add bundle…", the label the clicks are for (DeepEdit) and the Trust tick, below the engine list.

    Args:
        combo: the dock's engine list; entries added here follow its built-in engines.
    """

    def __init__(self, combo: QComboBox, parent=None):
        super().__init__(parent)
        self.combo = combo
        self.entries: dict[str, BundleEntry] = {}
        self.add_button = QPushButton("Add bundle…")
        self.add_button.setToolTip("a DeepEdit- or VISTA3D-style Model Zoo bundle, or a version of the click model")
        self.label_combo = QComboBox()
        self.label_caption = QLabel("Clicks are for")
        self.device_caption, self.device_combo = QLabel("Device"), QComboBox()
        self.device_combo.addItems(list(DEVICES))
        self.device_combo.setToolTip("where the zoo bundle runs: auto takes a CUDA or Apple GPU when there is one "
                                     "(the built-in engines and click-model versions always use auto)")
        self.trust_label = QLabel()
        self.trust_label.setWordWrap(True)
        self.trust_check = QCheckBox(TRUST_TEXT)
        self.trust_check.setToolTip(TRUST_TIP)
        self.trust_check.setEnabled(False)
        # A box layout, not a form: Qt 5's QFormLayout keeps the spacing of hidden rows (a gap under
        # "Add bundle…" while a built-in engine is chosen); a box layout skips empty rows.
        rows = QVBoxLayout(self)
        rows.setContentsMargins(0, 0, 0, 0)
        rows.addWidget(self.add_button)
        for caption, combo in ((self.label_caption, self.label_combo), (self.device_caption, self.device_combo)):
            row = QHBoxLayout()
            row.addWidget(caption)
            row.addWidget(combo, 1)
            rows.addLayout(row)
        rows.addWidget(self.trust_label)
        rows.addWidget(self.trust_check)
        self.add_button.clicked.connect(self._choose_folder)
        self.combo.currentIndexChanged.connect(lambda _: self._show())
        self._show()

    # --- entries --------------------------------------------------------------------
    def add(self, name_or_path, select: bool = True) -> BundleEntry | None:
        """Offer an interactive bundle (folder, registry name, ``STORE@ref``); a notification if it is none."""
        try:
            entry = interactive_entry(name_or_path)
        except MedvisionError as exc:
            report_error(exc)
            return None
        known = next((e for e in self.entries.values() if Path(e.bundle.path) == Path(entry.bundle.path)), None)
        if known is None:
            self.entries[entry.text] = entry
            self.combo.addItem(entry.text)
            known = entry
        if select:
            self.combo.setCurrentText(known.text)
        return known

    def refresh(self, extra_folders=()):
        """Add the installed interactive bundles (and a case store's versions) not offered yet.

        Reading every bundle's config takes a while with a full model folder, so the listing
        runs in a worker; the entries are added on the GUI thread when it is done.
        """
        return start_worker(installed_entries, list(extra_folders), on_result=self._add_new,
                            on_error=lambda exc: log.warning("interactive bundles not listed: %s", exc),
                            description="Listing interactive bundles")

    def _add_new(self, entries: list[BundleEntry]) -> None:
        for entry in entries:
            if not any(Path(e.bundle.path) == Path(entry.bundle.path) for e in self.entries.values()):
                self.entries[entry.text] = entry
                self.combo.addItem(entry.text)

    def selected(self) -> BundleEntry | None:
        return self.entries.get(self.combo.currentText())

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Interactive bundle folder")
        if folder:
            self.add(folder)

    # --- what is shown ----------------------------------------------------------------
    def _show(self) -> None:
        entry = self.selected()
        deepedit = entry is not None and entry.kind == "deepedit"
        self.label_caption.setVisible(deepedit)   # the row, caption included (any Qt binding)
        self.label_combo.setVisible(deepedit)
        self.label_combo.clear()
        if deepedit:
            self.label_combo.addItems(entry.labels)
        zoo = entry is not None and entry.kind != "interactive"
        self.device_caption.setVisible(zoo)
        self.device_combo.setVisible(zoo)
        self.trust_label.setVisible(entry is not None)
        self.trust_check.setVisible(entry is not None)
        if entry is None:
            return
        self.trust_check.setEnabled(False)
        self.trust_check.setChecked(bool(entry.bundle.trusted))
        if entry.findings is None:
            self.trust_label.setText(CHECKING)
            start_worker(trust_state, entry.bundle, on_result=lambda state: self._checked(entry, *state),
                         description="Checking model")
        else:
            self._checked(entry, entry.findings, entry.remembered)

    def _checked(self, entry: BundleEntry, findings: list[str], remembered: bool) -> None:
        entry.findings, entry.remembered = list(findings), remembered
        if entry is not self.selected():
            return  # another engine was chosen meanwhile
        show_findings(self.trust_label, self.trust_check, findings, bool(entry.bundle.trusted) or remembered)

    # --- running ----------------------------------------------------------------------
    def job_options(self) -> dict:
        """The engine and its options for the worker's job (``engine`` None: a built-in engine is chosen).

        Raises:
            UntrustedCodeError: the chosen bundle runs code of its own and Trust is not ticked.
        """
        entry = self.selected()
        if entry is None:
            return {}
        trusted = self.trust_check.isChecked()
        if entry.findings and not trusted:
            raise UntrustedCodeError(
                f"bundle '{entry.bundle.name}' runs its own code ({'; '.join(entry.findings)}); run it only if "
                f"you trust its author: tick '{TRUST_TEXT}' under the engine")
        entry.bundle.trusted = trusted
        options = {"engine": str(entry.bundle.path), "trusted": trusted}
        if entry.kind == "deepedit" and self.label_combo.currentText():
            options["label"] = self.label_combo.currentText()
        if entry.kind != "interactive":
            options["device"] = self.device_combo.currentText()
        return options

    def wrap(self, job):
        """The job after remembering (or forgetting) the Trust tick for the chosen bundle, as the
        Run-model dock does; unchanged for a built-in engine."""
        entry = self.selected()
        if entry is None:
            return job
        forget = bool(entry.remembered) and not entry.bundle.trusted
        return with_trust(job, entry.bundle, forget)
