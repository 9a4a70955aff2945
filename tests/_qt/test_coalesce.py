"""Progress and plot updates are coalesced: the first at once, then the latest a few times a second."""

from napari_medvision._qt.coalesce import Coalesced
from napari_medvision._qt.loss_plot import LossPlot


def test_first_value_at_once_then_only_the_latest_per_interval(qtbot):
    shown = []
    show = Coalesced(shown.append, interval_ms=100)
    for value in range(5):
        show(value)
    assert shown == [0]                       # 1-4 came within the interval: only 4 is kept
    qtbot.waitUntil(lambda: shown == [0, 4], timeout=2000)
    qtbot.wait(250)
    assert shown == [0, 4]                    # nothing pending: no repeat


def test_flush_shows_the_pending_value_now(qtbot):
    shown = []
    show = Coalesced(shown.append, interval_ms=10_000)
    show("first"), show("second"), show("last")
    show.flush()
    assert shown == ["first", "last"]
    show.flush()
    assert shown == ["first", "last"]


def test_loss_plot_draws_every_value_on_flush(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    for step in range(1, 21):
        plot.add_loss(step / 10, 1.0 / step)
    plot.add_dice(1, 0.5)
    plot.add_dice(2, 0.7)
    plot.flush()
    xs, ys = plot.loss_curve.getData()
    assert len(xs) == 20 and ys[-1] == 1.0 / 20
    assert list(plot.dice_curve.getData()[1]) == [0.5, 0.7]
