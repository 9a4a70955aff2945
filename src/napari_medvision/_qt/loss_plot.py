"""A small live plot of training loss and validation Dice for a dock."""

from __future__ import annotations

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure


class LossPlot(FigureCanvasQTAgg):
    """Loss per step (left axis) and validation Dice per epoch (right axis)."""

    def __init__(self):
        figure = Figure(figsize=(3.2, 2.2))
        # A fixed layout: tight_layout re-measures every label on each draw (tens of ms on the GUI thread).
        figure.subplots_adjust(left=0.16, right=0.84, bottom=0.2, top=0.95)
        super().__init__(figure)
        self.loss_axis = figure.add_subplot(111)
        self.dice_axis = self.loss_axis.twinx()
        self.clear()

    def clear(self) -> None:
        self.losses: list[tuple[float, float]] = []
        self.dices: list[tuple[int, float]] = []
        self._redraw()

    def add_loss(self, epoch_fraction: float, loss: float) -> None:
        self.losses.append((epoch_fraction, loss))

    def add_dice(self, epoch: int, dice: float) -> None:
        self.dices.append((epoch, dice))
        self._redraw()

    def _redraw(self) -> None:
        self.loss_axis.clear()
        self.dice_axis.clear()
        if self.losses:
            x, y = zip(*self.losses)
            self.loss_axis.plot(x, y, color="tab:orange", linewidth=1)
        if self.dices:
            x, y = zip(*self.dices)
            self.dice_axis.plot(x, y, "o-", color="tab:blue", markersize=3)
        self.loss_axis.set_xlabel("epoch", fontsize=8)
        self.loss_axis.set_ylabel("loss", color="tab:orange", fontsize=8)
        self.dice_axis.set_ylabel("validation Dice", color="tab:blue", fontsize=8)
        self.dice_axis.set_ylim(0, 1)
        for axis in (self.loss_axis, self.dice_axis):
            axis.tick_params(labelsize=7)
        self.draw_idle()
