"""The epoch progress display: a live bar on a terminal, one plain line per epoch elsewhere."""
import io

from cnnjax.train import progress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_file_gets_one_plain_line_per_epoch_with_the_final_figures():
    log = io.StringIO()
    bar = progress.epoch_bar(epoch=0, epochs=2, total=10, initial=4, file=log)
    bar.update(3)
    bar.set_postfix(progress.postfix(0.5, 0.25, 1234.0), refresh=False)
    bar.update(3)
    bar.set_postfix(progress.postfix(0.125, 0.875, 4321.0, val_acc=0.9), refresh=True)
    assert log.getvalue() == ""                      # nothing until the epoch ends
    bar.close()
    assert log.getvalue() == "epoch 1/2: 10/10 steps, loss=0.1250, acc=0.8750, img/s=4,321, val_acc=0.9000\n"


def test_a_terminal_gets_the_live_bar_and_disabled_progress_prints_nothing():
    term = _Terminal()
    bar = progress.epoch_bar(epoch=1, epochs=2, total=5, file=term)
    bar.update(5)
    bar.close()
    assert "epoch 2/2" in term.getvalue() and "\r" in term.getvalue()
    quiet = io.StringIO()
    bar = progress.epoch_bar(epoch=0, epochs=1, total=5, enabled=False, file=quiet)
    bar.update(5)
    bar.close()
    assert quiet.getvalue() == ""
