"""How far each low precision's gradients are from float32's, for the CIFAR-10 speedrun network at init, on real
images: the evidence behind fit's float16 loss scale for the speedrun recipe (issue 7).

    python experiments/speedrun_precision.py --cache /tmp/runs/cifar.npz --images 256 --out /tmp/precision.json

One batch (the first ``--images`` training images, fed as ``fit`` feeds them, ``uint8 / 255`` in the compute
dtype, normalised by the recipe's model; the whitening kernel and the statistics come from the first 5000, as in
a run before ``whiten_sample="spread"``; on the class-sorted JPEG copy all of one class), the recipe's loss at
init (``cifar10_speedrun``'s model and its ``initial_state(0)``: default widths, identity init, label smoothing
0.2), its gradients computed four ways from the same float32 parameters: float32, bfloat16, float16 without a
loss scale and float16 with ``fit``'s default scale (the batch size rounded down to a power of two,
``cnnjax.train.steps.loss_scale_for``). The initial weights come from ``fit``'s key for seed 0 since the speedrun
became a recipe (2026-12-08); figures committed before were made with the old trainer's initial weights. For
each parameter, the relative error ``||g - g32|| / ||g32||``. No training; deterministic (the figures do not
depend on the machine's load).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from cifar_speedrun import DEFAULT_DATA, load_cifar10, machine  # noqa: E402

VARIANTS = (("bfloat16", dict(dtype="bfloat16")),
            ("float16_unscaled", dict(dtype="float16", loss_scale=1.0)),
            ("float16", dict(dtype="float16")))         # fit's default loss scale


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=DEFAULT_DATA, help="folder holding cifar10-jpeg.tar.xz")
    p.add_argument("--cache", default=None, help="an .npz file for the decoded arrays (read if present, "
                   "else written)")
    p.add_argument("--images", type=int, default=256, help="the batch (default 256)")
    p.add_argument("--quick", action="store_true", help="synthetic images, narrow network: a smoke test")
    p.add_argument("--out", default=None, help="JSON file for the table")
    return p.parse_args(argv)


def gradients(x_stats, x, y, widths=None):
    """``{variant: {parameter: float64 array}}`` for float32 and every variant of :data:`VARIANTS`."""
    import jax
    import jax.numpy as jnp

    from cnnjax.train.recipes import cifar10_speedrun
    from cnnjax.functional import as_float_images, softmax_cross_entropy
    from cnnjax.train.steps import loss_scale_for, scaled_value_and_grad

    base = dict(batch_size=len(x), whiten_images=len(x_stats), whiten_sample="first")
    if widths is not None:
        base["widths"] = widths
    recipe = cifar10_speedrun(x_stats, **base)
    state = recipe.initial_state(0)
    labels = jnp.asarray(y)
    out, scales = {}, {}
    for name, overrides in (("float32", {}),) + VARIANTS:
        dtype = overrides.get("dtype")
        model = recipe.model if dtype is None else recipe.model.clone(dtype=jnp.dtype(dtype))
        batch = as_float_images(jnp.asarray(x), None if dtype is None else jnp.dtype(dtype))
        scale = overrides.get("loss_scale", loss_scale_for(None if dtype is None else jnp.dtype(dtype), len(x)))

        def loss(params, model=model, batch=batch):
            logits, _ = model.apply({"params": params, "batch_stats": state.batch_stats}, batch, train=True,
                                    mutable=["batch_stats"])
            return softmax_cross_entropy(logits, labels, label_smoothing=recipe.label_smoothing).mean(), None

        _, grads = jax.jit(scaled_value_and_grad(loss, scale))(state.params)
        out[name] = {f"{layer}/{leaf}": np.asarray(g, np.float64) for layer, leaves in grads.items()
                     for leaf, g in leaves.items() if (layer, leaf) != ("whiten", "kernel")}   # frozen
        scales[name] = float(scale)
    return out, scales


def table(grads, scales) -> tuple:
    exact = grads["float32"]
    rows = []
    for param in sorted(exact):
        norm = float(np.linalg.norm(exact[param]))
        errors = {name: float(np.linalg.norm(grads[name][param] - exact[param]) / norm) for name, _ in VARIANTS}
        rows.append(dict(param=param, norm=norm, **errors))
    head = " | ".join(f"{overrides['dtype']}, loss x {scales[name]:g}" for name, overrides in VARIANTS)
    lines = [f"| parameter | float32 norm | {head} |", "| --- | ---: |" + " ---: |" * len(VARIANTS)]
    for r in rows:
        lines.append(f"| {r['param']} | {r['norm']:.3g} | " + " | ".join(f"{r[name]:.3f}" for name, _ in VARIANTS)
                     + " |")
    medians = {name: float(np.median([r[name] for r in rows])) for name, _ in VARIANTS}
    lines.append("| median | | " + " | ".join(f"{medians[name]:.3f}" for name, _ in VARIANTS) + " |")
    return rows, medians, "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.quick:
        rng = np.random.default_rng(0)
        x_train = rng.integers(0, 256, (32, 17, 17, 3), dtype=np.uint8)
        y_train = (np.arange(32) % 10).astype(np.int32)
        widths = (4, 8, 8)
    else:
        x_train, y_train, _, _ = load_cifar10(args.data_dir, cache=args.cache)
        widths = None
    n = min(args.images, len(x_train))
    grads, scales = gradients(x_train[:5000], x_train[:n], y_train[:n], widths)
    rows, medians, text = table(grads, scales)
    print(f"Relative error of the gradients at init against float32's, one batch of {n} CIFAR-10 training images"
          f"{' (synthetic, --quick)' if args.quick else ''}:\n\n{text}")
    summary = {"info": dict(machine(), images=n, quick=args.quick,
                            command="python " + " ".join([os.path.relpath(__file__)] + list(sys.argv[1:]
                                                                                            if argv is None
                                                                                            else argv))),
               "loss_scales": scales, "rows": rows, "medians": medians, "markdown": text}
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(summary, f, indent=1)
    return summary


if __name__ == "__main__":
    main()
