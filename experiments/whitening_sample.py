"""Which training images the CIFAR-10 speedrun should whiten with: the JPEG copy is sorted by class.

The recipe (``cnnjax.train.recipes.cifar10_speedrun``) computes its normalisation statistics and its whitening
layer (the 2x2-patch covariance's eigenvectors, scaled by ``1 / sqrt(eigenvalue + eps)``) from ``whiten_images`` =
5000 training images.
airbench94 takes the first 5000, a random sample of the original CIFAR-10 files, which are shuffled; the JPEG
copy in ../shared/data is sorted by class, so there the first 5000 are all birds. For each way of choosing the
5000 (``first``; ``spread``, every 10th, the recipe's default; ``random``, a seeded permutation), this prints the
sample's classes and statistics, and how well its whitening whitens the **test set's** patches: the covariance
of the whitened test patches should be ``diag(lambda / (lambda + eps))``, near the identity for the large
eigenvalues, with no off-diagonal terms. Deterministic; statistics in float64.

    python experiments/whitening_sample.py --cache /tmp/runs/cifar.npz [--out results.json]
    python experiments/whitening_sample.py --quick                  # synthetic class-sorted images, seconds
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _common  # noqa: E402


def samples(n: int, count: int, seed: int = 0) -> dict:
    """``{name: row indices}`` of the three ways of choosing ``count`` of ``n`` images."""
    from cnnjax.train.recipes import whitening_sample

    rows = np.arange(n)
    return {"first": np.asarray(whitening_sample(rows, count, "first")),
            "spread": np.asarray(whitening_sample(rows, count, "spread")),
            "random": np.sort(np.random.default_rng(seed).permutation(n)[:count])}


def whitened_covariance(sample_u8, test_u8, eps: float = 5e-4):
    """(mean, std, covariance of the test set's 2x2 patches after the sample's normalisation and whitening)."""
    import jax.numpy as jnp

    from cnnjax.models.airbench import patch_covariance, whitening_kernel

    sub = sample_u8.astype(np.float64) / 255.0
    mean, std = sub.mean(axis=(0, 1, 2)), sub.std(axis=(0, 1, 2))
    norm = ((sub - mean) / std).astype(np.float32)
    kernel = np.asarray(whitening_kernel(jnp.asarray(norm), eps), np.float64)
    w = kernel.reshape(-1, kernel.shape[-1])[:, :kernel.shape[-1] // 2]        # the +v filters
    test = ((test_u8.astype(np.float64) / 255.0 - mean) / std).astype(np.float32)
    _, cov = patch_covariance(jnp.asarray(test))
    return mean, std, w.T @ np.asarray(cov, np.float64) @ w


def run(x_train, y_train, x_test, count: int = 5000, eps: float = 5e-4) -> list[dict]:
    out = []
    for name, idx in samples(len(x_train), count).items():
        mean, std, cov = whitened_covariance(x_train[idx], x_test, eps)
        diag = np.diag(cov)
        out.append({"sample": name, "classes": np.bincount(y_train[idx], minlength=10).tolist(),
                    "mean": mean.round(4).tolist(), "std": std.round(4).tolist(),
                    "whitened_variances": diag.round(3).tolist(),
                    "max_off_diagonal": float(np.abs(cov - np.diag(diag)).max())})
    return out


def table(rows) -> str:
    lines = ["| sample | classes in it | mean (RGB) | std (RGB) | whitened test-patch variances, largest "
             "eigenvalue first | max off-diagonal |", "| --- | --- | --- | --- | --- | ---: |"]
    for r in rows:
        k = sum(c > 0 for c in r["classes"])
        lines.append(f"| {r['sample']} | {k} of 10 ({min(r['classes'])}-{max(r['classes'])} each) | "
                     f"{', '.join(f'{v:.3f}' for v in r['mean'])} | {', '.join(f'{v:.3f}' for v in r['std'])} | "
                     f"{' '.join(f'{v:.2f}' for v in r['whitened_variances'])} | {r['max_off_diagonal']:.3f} |")
    return "\n".join(lines)


def synthetic(n=400, n_test=100, seed=0):
    """Ten classes sorted by label, each with its own colour cast and blur: the first tenth is one class."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(10), n // 10).astype(np.int32)
    casts = rng.integers(0, 100, (10, 3))
    z = rng.integers(0, 120, (n + n_test, 9, 9, 3)).astype(np.float64)
    labels = np.concatenate([y, rng.integers(0, 10, n_test)])
    x = (z[:, :-1, :-1] + z[:, 1:, 1:]) / 2 + casts[labels][:, None, None, :]
    x = np.clip(x, 0, 255).astype(np.uint8)
    return x[:n], y, x[n:]


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=str(_common.SHARED_DATA), help="folder holding cifar10-jpeg.tar.xz")
    p.add_argument("--cache", default=None, help="the decoded-arrays .npz of cifar_speedrun.py (read or written)")
    p.add_argument("--quick", action="store_true", help="synthetic class-sorted images: checks the script")
    p.add_argument("--out", default=None, help="write the rows as JSON to this file")
    args = p.parse_args(argv)
    if args.quick:
        x_train, y_train, x_test = synthetic()
        rows = run(x_train, y_train, x_test, count=40)
    else:
        from cifar_speedrun import load_cifar10

        x_train, y_train, x_test, _ = load_cifar10(args.data_dir, cache=args.cache)
        rows = run(x_train, y_train, x_test)
    print(table(rows))
    if args.out:
        _common.write_whole(args.out, json.dumps({"machine": _common.machine(), "quick": args.quick,
                                                  "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
