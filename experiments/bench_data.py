"""Benchmark of cnnjax.data: import seconds, load seconds (first from the prepared tfds data, then from the
array cache), and epoch throughput of the on-device path (shuffle + crop/flip + normalise inside one jit).

    python experiments/bench_data.py --source ../shared/data                 # imports into a fresh temp dir
    python experiments/bench_data.py --source ../shared/data --datasets mnist --epochs 3

Import and load figures are end to end (tfds writes PNG-encoded tfrecords; the first load decodes them and writes
the array cache, the second reads the cache); with an already used --prepared-dir both loads hit the cache. The
epoch figure excludes compilation and any model: it is what the input pipeline alone can deliver on the device.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import jax
import jax.numpy as jnp

from cnnjax.data import device, import_dataset, load

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def make_epoch(batch_size: int, augment: bool, mean, std):
    """jit(key, images_u8, labels) -> checksum; one whole epoch: permute, batch, augment, normalise, in a scan."""

    @jax.jit
    def epoch(key, images, labels):
        k_perm, k_aug = jax.random.split(key)
        xs, ys = device.epoch_batches(k_perm, images, labels, batch_size)

        def step(total, batch):
            k, x, y = batch
            if augment:
                x = device.random_crop_flip(k, x, pad=4, flip=True)
            x = device.to_float(x, mean, std)
            return total + x.mean() + y.sum().astype(jnp.float32), None

        keys = jax.random.split(k_aug, xs.shape[0])
        return jax.lax.scan(step, jnp.float32(0), (keys, xs, ys))[0]

    return epoch


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default="../shared/data", help="folder with the distribution files")
    p.add_argument("--prepared-dir", default=None, help="tfds data dir (default: a fresh temp dir, so imports run)")
    p.add_argument("--datasets", nargs="+", default=["mnist", "cifar10"])
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--epochs", type=int, default=3, help="timed epochs after one warm-up (compile) epoch")
    args = p.parse_args(argv)
    prepared = args.prepared_dir or tempfile.mkdtemp(prefix="cnnjax-bench-")
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}; prepared dir {prepared}")
    for name in args.datasets:
        _, t_import = timed(import_dataset, name, args.source, data_dir=prepared)
        train, t_first = timed(load, name, "train", prepared_dir=prepared, as_uint8=True, progress=False)
        _, t_second = timed(load, name, "train", prepared_dir=prepared, as_uint8=True, progress=False)
        print(f"{name}: import {t_import:.1f} s; load train first {t_first:.2f} s, cached {t_second:.2f} s; "
              f"{train.images.shape} uint8")
        images, labels = jax.device_put(train.images), jax.device_put(train.labels)
        channels = train.images.shape[-1]
        mean, std = (CIFAR_MEAN, CIFAR_STD) if channels == 3 else ((0.1307,), (0.3081,))
        for augment in (True, False):
            epoch = make_epoch(args.batch_size, augment, mean, std)
            jax.block_until_ready(epoch(jax.random.key(0), images, labels))  # compile
            start = time.perf_counter()
            for e in range(args.epochs):
                jax.block_until_ready(epoch(jax.random.key(e + 1), images, labels))
            seconds = (time.perf_counter() - start) / args.epochs
            used = len(labels) // args.batch_size * args.batch_size
            print(f"  on-device epoch (batch {args.batch_size}, augment={augment}): {seconds:.3f} s, "
                  f"{used / seconds:,.0f} images/s")


if __name__ == "__main__":
    main()
