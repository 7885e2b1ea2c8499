"""experiments/bench_parallel.py: each (mode, options) pair runs in its own process with the devices and the
options it says, and the table holds what the children measured."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import bench_parallel  # noqa: E402
from cnnjax.train.cpu_speed import compile_options  # noqa: E402


@pytest.mark.long   # outside README's test command (CI's 8 minutes); `pytest -m long` runs it
def test_pmap_with_and_without_the_options(tmp_path, capsys):
    out = tmp_path / "parallel.json"
    bench_parallel.main(["--model", "mnist_cnn", "--modes", "pmap", "--devices", "2", "--batch-size", "8",
                         "--steps", "1", "--repeats", "1", "--rounds", "1", "--out", str(out)])
    text = capsys.readouterr().out
    assert "2 forced CPU devices" in text and "| pmap | on |" in text and "| pmap | off |" in text
    rows = json.load(open(out))["rows"]
    assert [(r["mode"], r["options"]) for r in rows] == [("pmap", True), ("pmap", False)]
    assert all(len(r["img_s"]) == 1 and r["img_s"][0] > 0 for r in rows)
    on = next(r for r in rows if r["options"])
    assert on["compiler_options"] == compile_options.cpu_compiler_options()   # the child's own, reported
    assert next(r for r in rows if not r["options"])["compiler_options"] is None


@pytest.mark.parametrize("argv,message", [(["--steps", "0"], "--steps must be at least 1"),
                                          (["--batch-size", "9", "--devices", "2"], "not divisible by --devices 2")])
def test_bad_options_are_refused_by_name(argv, message, capsys):
    with pytest.raises(SystemExit):
        bench_parallel.main(argv)
    assert message in capsys.readouterr().err
