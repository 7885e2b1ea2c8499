"""Every worked example of the lecture notes computed with cnnjax, printed beside the notes' value, and the
notes' pictures: an MNIST digit through 5 random 3x3 filters (stride 2, "same": 14x14 maps) and 2x2 max pooling
(7x7 maps), the 3x3 edge masks and the 7x7 line filters.

    python experiments/conv_basics.py --out runs/conv_basics          # well under a minute on 2 CPU cores
    python experiments/conv_basics.py --quick --out /tmp/cb           # the same (it is small already)

Expected values are typed in from SEED_EXAMPLES.md, not computed. Writes OUT/results.json, OUT/results.md and
OUT/digit_conv_pool.png, OUT/edge_masks.png, OUT/line_filters.png. Exit status 1 if any example disagrees.
"""
from __future__ import annotations

import os

import numpy as np

import _common


def examples():
    """(name, computed, expected) for each worked example; values are NumPy arrays, tuples or ints."""
    import jax.numpy as jnp

    from cnnjax import functional as F
    from cnnjax import shapes

    def img(rows):
        a = jnp.asarray(rows, jnp.float32)
        return a.reshape(1, *a.shape, 1)

    x3 = img([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    ones22 = jnp.ones((2, 2, 1, 1))
    same3 = [[12, 16, 9], [24, 28, 15], [15, 17, 9]]
    k3 = jnp.concatenate([ones22, 10 * ones22, -ones22], axis=-1)
    x5 = img([[2, 1, 2, 0, 1], [1, 3, 2, 2, 3], [1, 1, 3, 3, 0], [2, 2, 0, 1, 1], [0, 0, 3, 1, 2]])
    k5 = jnp.stack([jnp.array([[2., 3], [0, 1]]), jnp.array([[.1, .2], [.3, .4]])], -1)[:, :, None, :]
    x7 = img(np.repeat(np.arange(1, 8)[:, None], 7, axis=1))
    k7 = jnp.array([[0., 0, 0], [1, 1, 1], [2, 2, 2]]).reshape(3, 3, 1, 1)
    ones = lambda n: jnp.ones((1, n, n, 1))  # noqa: E731
    sample = jnp.array([[1., 5, 4, 3], [8, 4, 1, 4], [1, 2, 3, 3], [6, 5, 3, 1]])
    filt = jnp.array([[1., 1, 1, 1], [-1, -1, -1, -1], [2, 2, 2, 2], [3, 3, 3, 3]])
    digit = jnp.zeros((1, 28, 28, 1))
    maps = F.conv2d(digit, jnp.zeros((3, 3, 1, 5)), strides=2, padding="same")
    m = lambda y: np.asarray(y)[0, :, :, 0]  # noqa: E731
    return [
        ("conv 1: 3x3 * ones 2x2, valid", m(F.conv2d(x3, ones22, padding="valid")), [[12, 16], [24, 28]]),
        ("conv 1: 3x3 * ones 2x2, same", m(F.conv2d(x3, ones22, padding="same")), same3),
        ("conv 2: 3 filters (x1, x10, x-1), same", np.moveaxis(np.asarray(F.conv2d(x3, k3, padding="same"))[0], -1, 0),
         [same3, np.multiply(same3, 10), np.multiply(same3, -1)]),
        ("conv 3: 5x5, 2 filters 2x2, valid", np.moveaxis(np.asarray(F.conv2d(x5, k5))[0], -1, 0),
         [[[10, 10, 6, 6], [12, 15, 13, 13], [7, 11, 16, 7], [10, 7, 4, 7]],
          [[1.9, 2.2, 1.6, 2.0], [1.4, 2.2, 2.7, 1.7], [1.7, 1.3, 1.3, 1.0], [0.6, 1.4, 1.5, 1.4]]]),
        ("conv 4: 7x7 rows, stride 1 (row values)", m(F.conv2d(x7, k7))[:, 0], [24, 33, 42, 51, 60]),
        ("conv 4: 7x7 rows, stride 2 (row values)", m(F.conv2d(x7, k7, strides=2))[:, 0], [24, 42, 60]),
        ("conv 5: 5x5 ones, pad 1, 3x3 ones", m(F.conv2d(ones(5), jnp.ones((3, 3, 1, 1)), padding=1)),
         [[4, 6, 6, 6, 4], [6, 9, 9, 9, 6], [6, 9, 9, 9, 6], [6, 9, 9, 9, 6], [4, 6, 6, 6, 4]]),
        ("conv 6: 11x11, 6x6, stride 4, valid (shape)", F.conv2d(ones(11), jnp.ones((6, 6, 1, 1)), strides=4).shape,
         (1, 2, 2, 1)),
        ("conv 6: 11x11, 6x6, stride 4, same (shape)",
         F.conv2d(ones(11), jnp.ones((6, 6, 1, 1)), strides=4, padding="same").shape, (1, 3, 3, 1)),
        ("conv 6: same padding (before, after)", shapes.padding_amounts(11, 6, 4, "same"), (1, 2)),
        ("conv 7: one 4x4 window", float(F.conv2d(sample.reshape(1, 4, 4, 1), filt.reshape(4, 4, 1, 1))[0, 0, 0, 0]),
         59),
        ("conv 8: digit, 5 filters 3x3, stride 2, same (shape)", maps.shape, (1, 14, 14, 5)),
        ("conv 8: then max pool 2x2 stride 2 same (shape)", F.max_pool(maps, 2, 2, padding="same").shape,
         (1, 7, 7, 5)),
        ("size: 4x4, f3, p1, s1", shapes.conv_output_size(4, 3, 1, 1), 4),
        ("size: 28x32, f5, p2, s2", (shapes.conv_output_size(28, 5, 2, 2), shapes.conv_output_size(32, 5, 2, 2)),
         (14, 16)),
        ("size: 11, f3, s1 / s2", (shapes.conv_output_size(11, 3, 1), shapes.conv_output_size(11, 3, 2)), (9, 5)),
        ("size: 7, f3, s1 / s2 / s3", tuple(shapes.conv_output_size(7, 3, s) for s in (1, 2, 3)), (5, 3, 2)),
        ("size: 7, f3, s3 leaves input unused", shapes.unused_input(7, 3, 3), 1),
        ("size: 7, f3, s3, pad 1 (9x9)", shapes.conv_output_size(7, 3, 3, 1), 3),
        ("shape: 32x32x3, one 5x5x3 filter", shapes.conv_output_shape((1, 32, 32, 3), (5, 5, 3, 1)), (1, 28, 28, 1)),
        ("shape: 32x32x3, six filters", shapes.conv_output_shape((1, 32, 32, 3), (5, 5, 3, 6)), (1, 28, 28, 6)),
        ("shape: then ten 5x5x6", shapes.conv_output_shape((1, 28, 28, 6), (5, 5, 6, 10)), (1, 24, 24, 10)),
        ("shape: 5x5x3, pad 1, two 3x3x3, stride 2",
         shapes.conv_output_shape((1, 5, 5, 3), (3, 3, 3, 2), strides=2, padding=1), (1, 3, 3, 2)),
        ("params: two 3x3x3 filters", shapes.conv_params(3, 3, 2), 56),
        ("params: 3 filters 5x5 on RGB", shapes.conv_params(5, 3, 3), 228),
        ("params: 6 filters 5x5 on RGB", shapes.conv_params(5, 3, 6), 456),
        ("pool: max 2x2 s2", m(F.max_pool(img([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]]), 2)),
         [[6, 8], [3, 4]]),
        ("pool: [[4,3],[2,1]] max 2x2 s1 valid", m(F.max_pool(img([[4, 3], [2, 1]]), 2, 1)), [[4]]),
        ("pool: [[4,3],[2,1]] max 2x2 s1 same", m(F.max_pool(img([[4, 3], [2, 1]]), 2, 1, padding="same")),
         [[4, 3], [2, 1]]),
        ("pool: depth-wise max over 3 channels", np.asarray(F.channel_max_pool(
            jnp.arange(6.).reshape(1, 1, 1, 6), 3)).ravel(), [2, 5]),
    ]


def agrees(computed, expected) -> bool:
    if isinstance(expected, tuple):
        return tuple(int(v) for v in computed) == expected
    return np.shape(computed) == np.shape(expected) and np.allclose(computed, expected, rtol=1e-5, atol=1e-5)


def short(value) -> str:
    a = np.asarray(value)
    return str(np.round(a, 4).tolist()) if a.size <= 16 else f"array {a.shape}: {np.round(a.ravel()[:4], 4).tolist()}..."


def main(argv=None) -> int:
    p = _common.parser(__doc__, "runs/conv_basics")
    p.add_argument("--index", type=int, default=0, help="which MNIST test digit to draw (default 0, a 7)")
    args = p.parse_args(argv)

    import jax
    import jax.numpy as jnp

    from cnnjax import functional as F
    from cnnjax import viz

    rows, failed = [], 0
    with _common.Timer() as t:
        results = examples()
    for name, computed, expected in results:
        ok = agrees(computed, expected)
        failed += not ok
        rows.append({"example": name, "cnnjax": short(computed), "notes": short(expected),
                     "agrees": "yes" if ok else "NO"})
        print(f"{'ok ' if ok else 'BAD'} {name}: cnnjax {short(computed)} | notes {short(expected)}")
    print(f"{len(results) - failed}/{len(results)} examples agree with the notes ({t.seconds:.1f} s)")

    test = _common.mnist("test", args.data_dir, quick=True, limit=args.index + 1)
    digit = jnp.asarray(test.images[args.index:args.index + 1])
    label = int(test.labels[args.index])
    kernel = jax.random.normal(jax.random.key(args.seed), (3, 3, 1, 5))
    conv = F.conv2d(digit, kernel, strides=2, padding="same")
    pooled = F.max_pool(conv, 2, 2, padding="same")
    viz.plot_feature_maps({f"conv {'x'.join(map(str, conv.shape[1:]))}": conv,
                           f"max pool {'x'.join(map(str, pooled.shape[1:]))}": pooled}, image=digit[0], ncols=6,
                          title=f"MNIST test digit {args.index} (a {label}): 5 random 3x3 filters, stride 2, same; "
                                "then 2x2 max pool", path=os.path.join(args.out, "digit_conv_pool.png"))
    viz.plot_edge_masks(digit[0], title="edge masks (3x3, same, stride 1)",
                        path=os.path.join(args.out, "edge_masks.png"))
    viz.plot_edge_masks(digit[0], viz.line_filters(7), title="line filters (7x7, same, stride 1)",
                        path=os.path.join(args.out, "line_filters.png"))
    rows.append({"example": "pictures", "cnnjax": f"conv {tuple(conv.shape)}, pool {tuple(pooled.shape)}",
                 "notes": "(1, 14, 14, 5), (1, 7, 7, 5)", "agrees": "yes" if conv.shape == (1, 14, 14, 5) and
                 pooled.shape == (1, 7, 7, 5) else "NO"})
    print(_common.write_results(args.out, rows, columns=["example", "cnnjax", "notes", "agrees"]))
    print(f"machine: {_common.machine()}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
