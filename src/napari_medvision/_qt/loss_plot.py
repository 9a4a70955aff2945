"""A small live plot of training loss and validation Dice for a dock.

pyqtgraph, not matplotlib: a matplotlib redraw of this figure took 60-90 ms on the GUI thread of
a 2-core machine busy training (the stall the Fine-tune dock must stay under 50 ms), while
pyqtgraph only updates its curve items. The curves are redrawn a few times a second, not once per
training step (see :mod:`.coalesce`); :meth:`LossPlot.flush` shows every value at once.
"""

from __future__ import annotations

import pyqtgraph as pg
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from .coalesce import Coalesced

LOSS_COLOUR = "#ff9f40"
DICE_COLOUR = "#4f9bd9"
EMPTY_TEXT = "no training yet: add corrected cases, then Start; loss and validation Dice show here"


class LossPlot(QWidget):
    """Loss per step (top) and validation Dice per epoch (bottom), sharing the epoch axis.

    Until the first value arrives a line of text stands in for the plots (empty axes say nothing).
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self.canvas = pg.GraphicsLayoutWidget()
        self.canvas.setMinimumHeight(220)
        self.empty_label = QLabel(EMPTY_TEXT)
        self.empty_label.setWordWrap(True)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.empty_label)
        layout.addWidget(self.canvas)
        self.loss_axis = self.canvas.addPlot(row=0, col=0)
        self.loss_axis.setLabel("left", "training loss", color=LOSS_COLOUR)
        self.dice_axis = self.canvas.addPlot(row=1, col=0)
        self.dice_axis.setLabel("left", "validation Dice", color=DICE_COLOUR)
        self.dice_axis.setLabel("bottom", "epoch")
        self.dice_axis.setYRange(0, 1)
        self.dice_axis.setXLink(self.loss_axis)
        for axis in (self.loss_axis, self.dice_axis):
            for side in ("left", "bottom"):
                axis.getAxis(side).enableAutoSIPrefix(False)  # no "epoch (x0.001)"
            axis.showGrid(x=True, y=True, alpha=0.2)
            axis.setMouseEnabled(x=False, y=False)
            axis.hideButtons()
        self.loss_curve = self.loss_axis.plot(pen=pg.mkPen(LOSS_COLOUR, width=1))
        self.dice_curve = self.dice_axis.plot(pen=pg.mkPen(DICE_COLOUR, width=2), symbol="o", symbolSize=6,
                                              symbolBrush=DICE_COLOUR, symbolPen=None)
        self._redraw = Coalesced(lambda _: self._draw(), parent=self)
        #: Called before every (coalesced) redraw: a dock updates its progress bar there, so that the
        #: bar and the plot repaint together, once, rather than in two repaints.
        self.before_draw = None
        self.clear()

    def clear(self) -> None:
        self.losses: list[tuple[float, float]] = []
        self.dices: list[tuple[int, float]] = []
        self.loss_curve.setData([], [])
        self.dice_curve.setData([], [])
        self._show_plots(False)

    def is_empty(self) -> bool:
        """Whether no value has been plotted since the last :meth:`clear`."""
        return not (self.losses or self.dices)

    def _show_plots(self, shown: bool) -> None:
        self.canvas.setVisible(shown)
        self.empty_label.setVisible(not shown)

    def add_loss(self, epoch_fraction: float, loss: float) -> None:
        self.losses.append((epoch_fraction, loss))
        self._show_plots(True)
        self._redraw(None)

    def add_dice(self, epoch: int, dice: float) -> None:
        self.dices.append((epoch, dice))
        self._show_plots(True)
        self._redraw(None)

    def flush(self) -> None:
        """Draw every value added so far now (at a run's end)."""
        self._redraw.flush()

    def _draw(self) -> None:
        if self.before_draw is not None:
            self.before_draw()
        for curve, values in ((self.loss_curve, self.losses), (self.dice_curve, self.dices)):
            if values:
                curve.setData(*map(list, zip(*values)))
