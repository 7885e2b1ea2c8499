"""experiments/bench_speed.py: a --quick smoke run (synthetic data, a few steps), its FLOP count against the
closed form, and the numpy-only data reader on the real MNIST files."""
import importlib.util
import json
import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_speed", os.path.join(ROOT, "experiments", "bench_speed.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _conv_macs(h_out, w_out, k, c_in, c_out):
    return h_out * w_out * c_out * k * k * c_in


def test_flops_per_image_closed_form(bench):
    # forward multiply-adds by hand (the lecture's shapes; SAME convs keep 28 and 14), x 2 FLOPs, x 3 training
    seed = _conv_macs(26, 26, 3, 1, 32) + 13 * 13 * 32 * 128 + 128 * 10
    flax = _conv_macs(28, 28, 3, 1, 32) + _conv_macs(14, 14, 3, 32, 64) + 7 * 7 * 64 * 256 + 256 * 10
    assert bench.train_flops_per_image("mnist_cnn") == 6 * seed        # 5.33 MFLOP
    assert bench.train_flops_per_image("flax_cnn") == 6 * flax         # 27.86 MFLOP
    assert bench.train_flops_per_image("flax_plain") == 6 * flax


@pytest.mark.long   # outside README's test command (CI's 8 minutes); `pytest -m long` runs it
def test_quick_run_writes_markdown_and_json(bench, tmp_path):
    rows = ["cnnjax:mnist_cnn:step", "cnnjax:mnist_cnn:unroll2", "linen:mnist_cnn:host"]
    if importlib.util.find_spec("torch") is not None:
        rows.append("torch:mnist_cnn:eager")
    out = str(tmp_path / "speed")
    bench.main(["--quick", "--batch", "32", "--synthetic", "256", "--epochs", "1", "--target", "0.0",
                "--rows", *rows, "--out", out])
    with open(out + ".json") as f:
        result = json.load(f)
    assert [r["row"] for r in result["rows"]] == rows
    for r in result["rows"]:
        assert "error" not in r, r
        assert r["img_s"] > 0 and r["first_call_s"] > 0 and len(r["img_s_repeats"]) == 2
        assert r["steps_per_repeat"] % (2 if "unroll2" in r["row"] else 1) == 0
        (run,) = r["runs"]
        assert len(run["epoch_s"]) == 1 and 0.0 <= run["test_acc"][0] <= 1.0
        assert run["epochs_to_target"] == 1                               # target 0: reached after epoch 1
    assert result["machine"]["backend"] and result["machine"]["versions"]["jax"]
    text = open(out + ".md").read()
    assert "| cnnjax | mnist_cnn | unroll2 |" in text and "5.33 M" in text


def test_a_row_past_its_timeout_is_reported_and_the_rest_goes_on(bench, tmp_path, monkeypatch):
    row = "cnnjax:mnist_cnn:step"
    r = bench._row_in_subprocess(row, ["--quick", "--synthetic", "64"], "default", timeout=0.01)
    assert r == {"row": row, "error": ["stopped after --row-timeout 0.01 s"]}
    out = str(tmp_path / "speed")
    written = []                          # the JSON is rewritten after every row, before the next starts

    def failing_row(row, *args):
        written.append(len(json.load(open(out + ".json"))["rows"]) if os.path.exists(out + ".json") else 0)
        return {"row": row, "error": ["x"]}

    monkeypatch.setattr(bench, "_row_in_subprocess", failing_row)
    bench.main(["--rows", row, "cnnjax:mnist_cnn:scan2", "--synthetic", "64", "--out", out])
    assert written == [0, 1]
    assert [r["row"] for r in json.load(open(out + ".json"))["rows"]] == [row, "cnnjax:mnist_cnn:scan2"]
    assert "error: x" in open(out + ".md").read()


def test_reads_real_mnist_without_tensorflow(bench):
    data_dir = bench.DEFAULT_DATA
    if not os.path.exists(os.path.join(data_dir, "mnist", "t10k-images-idx3-ubyte.gz")):
        pytest.skip(f"no MNIST files under {data_dir}")
    xtr, ytr, xte, yte = bench.load_data("mnist", data_dir)
    assert xtr.shape == (60000, 28, 28, 1) and xte.shape == (10000, 28, 28, 1) and xtr.dtype == np.uint8
    # the data README's label counts and pixel mean
    assert np.bincount(yte).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert abs(xtr.mean() - 33.318) < 1e-3


def test_cifar_cache_is_read_instead_of_decoding_again(bench, monkeypatch, tmp_path):
    import cnnjax.data

    calls = []
    images = np.arange(2 * 32 * 32 * 3, dtype=np.uint8).reshape(2, 32, 32, 3)

    def fake_read(path, progress=True):
        calls.append(path)
        return {"train": (images, np.array([3, 4], np.int32)), "test": (images[:1], np.array([5], np.int32))}

    monkeypatch.setattr(cnnjax.data, "read_cifar10", fake_read)
    first = bench.load_data("cifar10", "somewhere", cache_dir=str(tmp_path / "cache"))
    second = bench.load_data("cifar10", "somewhere", cache_dir=str(tmp_path / "cache"))
    assert len(calls) == 1 and os.listdir(tmp_path / "cache") == ["cifar10.npz"]     # no temporary file left
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(second[1], [3, 4])


def test_row_environment_is_the_same_for_every_framework(bench, monkeypatch):
    from cnnjax.train.cpu_speed.host_memory import ENVIRONMENT
    monkeypatch.setenv("MALLOC_TOP_PAD_", "1")            # a stray outer setting never leaks into a row
    keep = bench.row_environment("keep")
    assert all(keep[k] == v for k, v in ENVIRONMENT.items())
    default = bench.row_environment("default")
    assert not set(ENVIRONMENT) & set(default) and default["CNNJAX_KEEP_FREED_MEMORY"] == "0"


def test_resnet20_flops_and_torch_peer(bench):
    # forward multiply-adds of ResNet-20 by hand: stem, 3 stages of 3 blocks (2 convs each), dense
    macs = (_conv_macs(32, 32, 3, 3, 16) + 6 * _conv_macs(32, 32, 3, 16, 16)
            + _conv_macs(16, 16, 3, 16, 32) + 5 * _conv_macs(16, 16, 3, 32, 32)
            + _conv_macs(8, 8, 3, 32, 64) + 5 * _conv_macs(8, 8, 3, 64, 64) + 64 * 10)
    assert bench.train_flops_per_image("resnet20") == 6 * macs          # 243.3 MFLOP
    torch = pytest.importorskip("torch")
    model = bench.bench_peers.torch_resnet20()
    assert sum(p.numel() for p in model.parameters()) == 269_722     # cnnjax.models.resnet20's count
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_compile_ro_rows_say_when_cuda_graphs_were_skipped(bench):
    pytest.importorskip("torch")
    assert isinstance(bench._cudagraph_skips(), int)
    row = {"row": "torch:mnist_cnn:compile-ro", "framework": "torch", "model": "mnist_cnn", "mode": "compile-ro",
           "img_s": 100.0, "img_s_repeats": [90.0, 110.0], "first_call_s": 1.0, "load_before": None,
           "load_after": None, "cudagraph_skips": 3}
    result = {"machine": bench.machine_info(), "command": "x", "settings": {}, "rows": [row],
              "flops": {"mnist_cnn": bench.train_flops_per_image("mnist_cnn")}}
    assert "| torch | mnist_cnn | compile-ro (inductor skipped CUDA graphs for 3 graph(s)) | 100 |" in \
        bench.markdown(result)
    row["cudagraph_skips"] = 0
    assert "| torch | mnist_cnn | compile-ro | 100 |" in bench.markdown(result)


def test_the_parents_preallocation_setting_is_not_passed_to_the_rows(bench, monkeypatch):
    monkeypatch.setenv("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    monkeypatch.setattr(bench, "_SET_FOR_PARENT", {"XLA_PYTHON_CLIENT_PREALLOCATE"})   # as main() sets it
    assert "XLA_PYTHON_CLIENT_PREALLOCATE" not in bench.row_environment("keep")
    monkeypatch.setattr(bench, "_SET_FOR_PARENT", set())                               # the user's own setting
    assert bench.row_environment("keep")["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
