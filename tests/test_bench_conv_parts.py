"""experiments/bench_conv_parts.py: its padding is cnnjax's "same", and its parts run (the split kernel gradient
is checked against XLA's inside)."""
import sys
from pathlib import Path

import pytest

from cnnjax import shapes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import bench_conv_parts  # noqa: E402


@pytest.mark.parametrize("n,stride", [(32, 1), (32, 2), (16, 2), (7, 2), (8, 3)])
def test_same_padding_is_cnnjax_s(n, stride):
    _, pairs, *_ = shapes.conv_pairs((1, n, n, 1), (3, 3, 1, 1), stride, "same", 1, 1, "channels_last", fn="test")
    assert (bench_conv_parts.same_padding(n, stride),) * 2 == tuple(tuple(p) for p in pairs)


def test_every_part_of_a_layer_is_timed(capsys, monkeypatch):
    monkeypatch.setattr(bench_conv_parts, "LAYERS", {"tiny 8x8x4 -> 8, stride 2": (8, 4, 8, 2, 3)})
    bench_conv_parts.main(["--calls", "1", "--repeats", "1"])
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| tiny"))
    cells = [c.strip() for c in row.strip("|").split("|")][1:]
    assert len(cells) in (4, 6) and all(float(c) > 0 for c in cells)
    assert "Sum over the 3 layers" in out


def test_network_sums_weigh_each_layer_by_its_count(monkeypatch):
    monkeypatch.setattr(bench_conv_parts, "LAYERS", {"a": (8, 4, 8, 1, 6), "b": (8, 4, 8, 2, 1)})
    part = lambda f, i, k: {"forward": f, "input grad": i, "kernel grad (xla)": 100.0, "kernel grad (split)": k}
    rows = {"a": part(1.0, 2.0, 3.0), "b": part(0.5, 0.25, 0.125)}
    torch_rows = {"a": {"forward": 9.0, "forward + backward": 2.0}, "b": {"forward": 9.0, "forward + backward": 4.0}}
    assert bench_conv_parts.network_sums(rows, torch_rows) == (6 * 6.0 + 0.875, 6 * 2.0 + 4.0)
    assert bench_conv_parts.network_sums(rows) == (36.875, None)


def test_calls_and_repeats_must_be_positive(capsys):
    for bad in ("0", "-2", "x"):
        with pytest.raises(SystemExit):
            bench_conv_parts.main(["--calls", bad])
        err = capsys.readouterr().err
        assert "--calls must be" in err and bad in err


def test_compiled_stats_counts_an_elementwise_program_and_a_convolution():
    import jax
    import jax.numpy as jnp

    elementwise = jax.jit(lambda x: jnp.sin(x) * 2 + 1).lower(jnp.ones((4, 8))).compile().as_text()
    stats = bench_conv_parts.compiled_stats(elementwise)
    assert stats["convolutions"] == 0 and stats["loop fusions"] >= 1
    assert stats["loop fusion output MB"] >= 4 * 4 * 8 / 1e6
    conv = jax.jit(lambda x, k: jax.lax.conv(x, k, (1, 1), "SAME")).lower(
        jnp.ones((2, 3, 8, 8)), jnp.ones((4, 3, 3, 3))).compile().as_text()
    stats = bench_conv_parts.compiled_stats(conv)
    assert stats["convolutions"] + stats["YNNPACK fusions"] >= 1


def test_compiled_stats_counts_every_output_of_a_multi_output_fusion():
    hlo = ("ENTRY %main {\n"
           "  %f = (f32[2,3]{1,0}, f32[4]{0}) fusion(%p), kind=kLoop, calls=%c\n"
           "  %g = f32[5]{0} fusion(%p), kind=kLoop, calls=%d\n}\n")
    stats = bench_conv_parts.compiled_stats(hlo)
    assert stats["loop fusions"] == 2 and stats["loop fusion output MB"] == pytest.approx(4 * (6 + 4 + 5) / 1e6)


@pytest.mark.long   # outside README's test command (CI's 8 minutes); `pytest -m long` runs it
def test_step_report_times_the_resnet20_step_and_counts_its_program():
    line = bench_conv_parts.step_report(repeats=1, steps=1, batch=16)     # 2 chunks: the split kernel grad
    assert line.startswith("cnnjax ResNet-20 step: ")
    assert float(line.split(": ")[1].split(" ms")[0]) > 0
    assert "convolutions" in line and "loop fusion output MB" in line
