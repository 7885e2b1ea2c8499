"""`cnnjax data import|info` through `main(argv)` and through a host parser via `add_subcommands`."""
import argparse
import gzip
import struct

import numpy as np
import pytest

from cnnjax.cli.data_commands import add_subcommands, main


def _idx(array):
    return bytes([0, 0, 8, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape) + array.tobytes()


def test_import_then_info(tmp_path, capsys):
    src = tmp_path / "src" / "mnist"
    src.mkdir(parents=True)
    for prefix, n in (("train", 20), ("t10k", 10)):
        (src / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(np.zeros((n, 28, 28), np.uint8))))
        (src / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(
            gzip.compress(_idx((np.arange(n) % 2).astype(np.uint8))))
    assert main(["import", "mnist", "--data-dir", str(tmp_path / "src"), "--prepared-dir", str(tmp_path / "p")]) == 0
    captured = capsys.readouterr()
    cache = tmp_path / "p" / "_cnnjax_arrays" / "mnist" / "3.0.1"
    assert captured.err == f"preparing MNIST from {src} once (into {cache})\n"   # one line, no bar off a terminal
    assert captured.out.startswith(f"mnist: prepared in {cache} (") and (cache / "train.npz").is_file()
    assert not (tmp_path / "p" / "mnist").exists()   # no tfds copy without --tfds (test_data_tfds.py has one)
    assert main(["import", "mnist", "--source", str(tmp_path / "src"), "--prepared-dir", str(tmp_path / "p")]) == 0
    assert capsys.readouterr().err == ""   # prepared once (--source: the earlier name of --data-dir)
    assert main(["info", "mnist", "--prepared-dir", str(tmp_path / "p"), "--splits", "test"]) == 0
    out = capsys.readouterr().out
    assert "mnist test: images (10, 28, 28, 1)" in out and "0=5, 1=5, 2=0" in out
    # --data-dir holding prepared data instead of raw files: the error names the flag to use
    assert main(["info", "mnist", "--data-dir", str(tmp_path / "p"), "--prepared-dir", str(tmp_path / "q"),
                 "--splits", "test"]) == 2
    assert f"holds prepared data (a cnnjax array cache), not raw files: pass it as --prepared-dir" in \
        capsys.readouterr().err


def test_info_names_the_flag_for_a_validation_split(tmp_path, capsys):
    from PIL import Image

    for c in ("cat", "dog"):
        (tmp_path / "train" / c).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((4, 4, 3), i, np.uint8)).save(tmp_path / "train" / c / f"{i}.png")
    assert main(["info", str(tmp_path), "--splits", "validation"]) == 2
    assert "has no split 'validation'; its splits are ['train'] (pass --validation-fraction F" in \
        capsys.readouterr().err
    assert main(["info", str(tmp_path), "--splits", "train", "validation", "--validation-fraction", "0.25"]) == 0
    out = capsys.readouterr().out
    assert "train: images (6, 4, 4, 3)" in out and "validation: images (2, 4, 4, 3)" in out


def test_add_subcommands_in_a_host_parser():
    parser = argparse.ArgumentParser(prog="cnnjax")
    add_subcommands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "import", "cifar10", "--source", "x"])
    assert args.names == ["cifar10"] and args.data_dir == "x" and args.prepared_dir is None and callable(args.func)
    assert parser.parse_args(["data", "import", "cifar10", "--data-dir", "y"]).data_dir == "y"
    with pytest.raises(SystemExit):
        parser.parse_args(["data", "import", "svhn", "--source", "x"])


@pytest.mark.parametrize("argv, message", [
    (["import", "mnist", "--data-dir", "a", "--source", "b"], "argument --source: not allowed with argument --data-dir"),
    (["import", "mnist"], "one of the arguments --data-dir --source is required"),
])
def test_data_dir_and_its_alias_source(argv, message, capsys):
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 2 and message in capsys.readouterr().err
