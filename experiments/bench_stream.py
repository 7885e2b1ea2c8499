"""Images/s of `fit` on CIFAR-10 from a stream of batches against the same `fit` on in-memory arrays (issue 28's
streaming target: within 10% of the in-memory path on the CPU).

    python experiments/bench_stream.py --folder /tmp/cifar --train 10000 --epochs 3 --repeats 2

`--folder` is the unpacked CIFAR-10 JPEG copy (``tar xJf ../shared/data/cifar10-jpeg.tar.xz -C DIR``: DIR/train
and DIR/test). Rows, each a full `fit` of the zoo's cifar10_cnn (batch 128, Adam), all with the same `--loop`
(default "step": one compiled step per batch; "scan" stacks the streamed batches of a chunk into one call, as the
in-memory path gathers them):

* ``arrays``: fit on the decoded uint8 arrays (the first `--train` images of the folder's train split);
* ``array_batches``: the same arrays through `cnnjax.data.pipeline.array_batches` (the stream path, no decoding);
* ``folder_batches``: `cnnjax.data.pipeline.folder_batches` on the JPEG files of those images' classes
  (tf.data reads and decodes every image every epoch, in parallel with the training).

The figure is the mean images/s of the epochs after the first (the first holds compilation); rows alternate per
repeat so that a drift of the machine's speed hits them alike. Results go to a JSON file.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax
import numpy as np

from cnnjax import models
from cnnjax.data.folder import load_image_folder
from cnnjax.data.pipeline import array_batches, folder_batches
from cnnjax.train import fit


def _subset_folder(folder: str, n: int, out: str) -> str:
    """A folder of symlinks to the first `n` training images in folder_batches' file order per class (balanced)."""
    from cnnjax.data.folder import folder_layout
    splits, classes = folder_layout(folder)
    per_class = n // len(classes)
    for name in classes:
        src = os.path.join(splits["train"], name)
        dst = os.path.join(out, name)
        os.makedirs(dst, exist_ok=True)
        for f in sorted(os.listdir(src))[:per_class]:
            if not os.path.exists(os.path.join(dst, f)):
                os.symlink(os.path.join(src, f), os.path.join(dst, f))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folder", required=True, help="the unpacked CIFAR-10 JPEG copy (with train/ and test/)")
    p.add_argument("--train", type=int, default=10000, help="training images (balanced over the classes)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--loop", default="step", choices=["step", "scan", "unroll"])
    p.add_argument("--out", default=f"experiments/results/stream_cpu_{time.strftime('%Y-%m-%d')}.json")
    args = p.parse_args(argv)

    subset = _subset_folder(args.folder, args.train, os.path.join("/tmp", f"cnnjax_stream_subset_{args.train}"))
    x, y, _ = load_image_folder(subset, progress=False)
    model = models.get("cifar10_cnn")
    kw = dict(optimizer="adam", learning_rate=1e-3, epochs=args.epochs, loop=args.loop, progress=False)
    rows = {
        "arrays": lambda: fit(model, (x, y), batch_size=args.batch_size, **kw),
        "array_batches": lambda: fit(model, array_batches(x, y, batch_size=args.batch_size), **kw),
        "folder_batches": lambda: fit(model, folder_batches(subset, batch_size=args.batch_size), **kw),
    }
    results: dict[str, list] = {name: [] for name in rows}
    for repeat in range(args.repeats):
        for name, run in rows.items():
            t0 = time.perf_counter()
            _, history = run()
            rate = float(np.mean(history["images_per_s"][1:]))
            results[name].append(rate)
            print(f"repeat {repeat} {name:15s} {rate:8.1f} images/s (epochs after the first; whole fit "
                  f"{time.perf_counter() - t0:.1f} s)", flush=True)
    base = float(np.mean(results["arrays"]))
    summary = {name: {"images_per_s": rates, "mean": float(np.mean(rates)), "vs_arrays": float(np.mean(rates)) / base}
               for name, rates in results.items()}
    for name, s in summary.items():
        print(f"{name:15s} mean {s['mean']:8.1f} images/s  {s['vs_arrays']:.3f}x arrays")
    record = {"command": "python experiments/bench_stream.py " + " ".join(argv or os.sys.argv[1:]),
              "machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
              "jax": jax.__version__, "backend": jax.default_backend(), "train_images": len(x),
              "batch_size": args.batch_size, "epochs": args.epochs, "loop": args.loop, "rows": summary}
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(record, f, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
