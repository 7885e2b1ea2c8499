"""cnnjax.viz: the arrays behind each picture against closed forms, and each figure's number of panels."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.figure import Figure

from cnnjax import functional as F
from cnnjax import layers, viz
from cnnjax.cli import plot_commands as viz_cli


def visible_axes(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


@pytest.fixture(scope="module")
def tiny():
    """Conv2D(4, 3) -> MaxPooling2D -> Flatten -> Dense(3) on 8x8x1 images."""
    model = layers.Sequential([layers.Conv2D(4, 3, activation="relu"), layers.MaxPooling2D(), layers.Flatten(),
                               layers.Dense(3)])
    variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
    image = np.asarray(jax.random.uniform(jax.random.key(1), (8, 8, 1)))
    return model, variables, image


def test_layer_outputs_are_the_layers_in_call_order(tiny):
    model, variables, image = tiny
    outs = viz.layer_outputs(model, variables, image)
    assert list(outs) == ["layers_0", "layers_1", "layers_2", "layers_3"]
    p = variables["params"]["layers_0"]
    conv = jax.nn.relu(F.conv2d(jnp.asarray(image)[None], p["kernel"], p["bias"]))
    np.testing.assert_allclose(outs["layers_0"], conv, rtol=1e-6)
    np.testing.assert_allclose(outs["layers_1"], F.max_pool(conv, 2), rtol=1e-6)
    np.testing.assert_allclose(outs["layers_3"], model.apply(variables, image[None]), rtol=1e-6)


def test_feature_maps_by_path_keras_name_and_index(tiny):
    model, variables, image = tiny
    by_path = viz.feature_maps(model, variables, image, "layers_1")
    assert by_path.shape == (3, 3, 4)     # (8 - 3 + 1) // 2 = 3
    np.testing.assert_array_equal(viz.feature_maps(model, variables, image, "max_pooling2d"), by_path)
    np.testing.assert_array_equal(viz.feature_maps(model, variables, image, 1), by_path)
    np.testing.assert_array_equal(viz.feature_maps(model, variables, image, -3), by_path)
    with pytest.raises(ValueError, match="feature_maps: no layer named 'conv9'; the layers are conv2d, "
                       "max_pooling2d, flatten, dense"):
        viz.feature_maps(model, variables, image, "conv9")
    assert viz.layer_paths(model, image.shape) == {"conv2d": "layers_0", "max_pooling2d": "layers_1",
                                                   "flatten": "layers_2", "dense": "layers_3"}
    with pytest.raises(ValueError, match="layer=7 is out of range"):
        viz.feature_maps(model, variables, image, 7)
    with pytest.raises(ValueError, match="one image"):
        viz.feature_maps(model, variables, np.zeros((2, 8, 8, 1)), 0)


def test_plot_feature_maps_one_panel_per_channel(tiny, tmp_path):
    model, variables, image = tiny
    fig = viz.plot_layer_feature_maps(model, variables, image, "conv2d", path=tmp_path / "fm.png")
    assert isinstance(fig, Figure) and len(visible_axes(fig)) == 4 + 1   # 4 channels + the input
    assert (tmp_path / "fm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    maps = np.zeros((5, 5, 7))
    assert len(viz.plot_feature_maps(maps).axes) == 7
    assert len(viz.plot_feature_maps(maps, max_maps=3).axes) == 3
    staged = viz.plot_feature_maps({"conv": np.zeros((14, 14, 5)), "pool": np.zeros((7, 7, 5))}, image=image, ncols=8)
    assert len(staged.axes) == 1 + 5 + 5
    with pytest.raises(ValueError, match="no maps to draw"):
        viz.plot_feature_maps(np.zeros(10))


def test_plot_filters_one_panel_per_filter(tiny):
    _, variables, _ = tiny
    kernels = viz.conv_kernels(variables)
    assert list(kernels) == ["layers_0"] and kernels["layers_0"].shape == (3, 3, 1, 4)
    assert len(viz.plot_filters(kernels["layers_0"]).axes) == 4
    assert len(viz.plot_filters(np.zeros((5, 5, 3, 6))).axes) == 6        # colour
    assert len(viz.plot_filters(np.zeros((3, 3, 8, 10)), in_channel=2, max_filters=9).axes) == 9
    with pytest.raises(ValueError, match="8 input channels; pass in_channel"):
        viz.plot_filters(np.zeros((3, 3, 8, 10)))
    with pytest.raises(ValueError, match="HWIO"):
        viz.plot_filters(np.zeros((3, 3, 8)))


def test_edge_masks_on_a_step_image():
    # left half 0, right half 1 (a vertical edge between columns 3 and 4)
    x = np.zeros((8, 8), np.float32)
    x[:, 4:] = 1
    out = viz.apply_masks(x, viz.edge_masks())
    vertical, horizontal = out[..., 0], out[..., 1]
    expected = np.zeros((8, 8))
    expected[:, 4] = 1                         # x[i, j] - x[i, j-1]
    np.testing.assert_array_equal(vertical, expected)
    expected = np.zeros((8, 8))
    expected[0, 4:] = 1                        # x[i, j] - x[i-1, j]: only the zero padding above row 0
    np.testing.assert_array_equal(horizontal, expected)


def test_line_filters_draw_lines_through_a_point():
    lines = viz.line_filters(7)
    assert lines["vertical line"][:, 3].sum() == 7 and lines["vertical line"].sum() == 7
    x = np.zeros((11, 11), np.float32)
    x[5, 5] = 1
    out = viz.apply_masks(x, lines)
    expected = np.zeros((11, 11))
    expected[2:9, 5] = 1
    np.testing.assert_array_equal(out[..., 0], expected)
    np.testing.assert_array_equal(out[..., 1], expected.T)


def test_plot_edge_masks_panels(tmp_path):
    x = np.random.default_rng(0).random((28, 28, 1))
    assert len(viz.plot_edge_masks(x, path=tmp_path / "e.png").axes) == 1 + 2 * 2
    assert len(viz.plot_edge_masks(x, {**viz.edge_masks(), "id": np.eye(3)}).axes) == 1 + 2 * 3
    with pytest.raises(ValueError, match="one size"):
        viz.apply_masks(x, {"a": np.ones((3, 3)), "b": np.ones((7, 7))})


def write_metrics(path):
    """Lines as `cnnjax train --metrics-out` writes them (history records, plus list-valued *_members)."""
    lines = [{"run": "header"},
             {"epoch": 1, "loss": 1.0, "accuracy": 0.5, "images_per_s": 10.0, "seconds": 1.0, "val_loss": 0.8,
              "val_accuracy": 0.6, "loss_members": [1.0, 1.0]},
             {"epoch": 2, "loss": 0.5, "accuracy": 0.75, "images_per_s": 11.0, "seconds": 1.0, "val_loss": 0.7,
              "val_accuracy": 0.7, "loss_members": [0.5, 0.5]}]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")


def test_read_metrics_and_plot_curves(tmp_path):
    write_metrics(tmp_path / "m.jsonl")
    history = viz.read_metrics(tmp_path / "m.jsonl")
    assert history["epoch"] == [1, 2] and history["val_accuracy"] == [0.6, 0.7] and "loss_members" not in history
    fig = viz.plot_curves(tmp_path / "m.jsonl", path=tmp_path / "c.png")
    assert len(fig.axes) == 2
    loss_ax, acc_ax = fig.axes
    assert [list(line.get_ydata()) for line in loss_ax.lines] == [[1.0, 0.5], [0.8, 0.7]]   # train, test
    assert [list(line.get_ydata()) for line in acc_ax.lines] == [[0.5, 0.75], [0.6, 0.7]]
    only_train = viz.plot_curves({"loss": [3.0, 2.0, 1.0]})
    assert len(only_train.axes) == 2 and list(only_train.axes[0].lines[0].get_xdata()) == [1, 2, 3]
    with pytest.raises(ValueError, match="no metric to plot"):
        viz.plot_curves({"epoch": [1]})
    (tmp_path / "bad.jsonl").write_text('{"loss": 1}\nnot json\n')
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        viz.read_metrics(tmp_path / "bad.jsonl")


def test_predict_matches_argmax_and_batches(tiny):
    model, variables, _ = tiny
    images = np.asarray(jax.random.uniform(jax.random.key(2), (23, 8, 8, 1)))
    expected = np.argmax(np.asarray(model.apply(variables, images)), axis=-1)
    np.testing.assert_array_equal(viz.predict(model, variables, images, batch_size=5), expected)
    np.testing.assert_array_equal(viz.predict(model, variables, (images * 255).astype(np.uint8)),
                                  viz.predict(model, variables, np.round(images * 255) / 255))


def test_plot_predictions_marks_mistakes():
    images = np.zeros((12, 8, 8, 1))
    labels = np.arange(12) % 3
    predicted = labels.copy()
    predicted[[1, 4, 10]] = (labels[[1, 4, 10]] + 1) % 3
    fig = viz.plot_predictions(images, labels, predicted, class_names=["a", "b", "c"], n=9, ncols=3)
    assert len(fig.axes) == 9
    red = [i for i, ax in enumerate(fig.axes) if ax.title.get_color() == "red"]
    assert red == [1, 4]
    assert fig.axes[1].get_title() == "c (b)" and fig.axes[0].get_title() == "a"
    only = viz.plot_predictions(images, labels, predicted, only_mistakes=True)
    assert len(only.axes) == 3
    drawn = viz.plot_predictions(np.arange(12.).reshape(12, 1, 1, 1) * np.ones((1, 4, 4, 1)) / 11, labels, labels,
                                 n=5, seed=3)
    shown = [ax.images[0].get_array()[0, 0] * 11 for ax in drawn.axes]
    np.testing.assert_allclose(shown, np.random.default_rng(3).permutation(12)[:5], atol=1e-4)
    with pytest.raises(ValueError, match="labels \\(N,\\)"):
        viz.plot_predictions(images, labels[:3], predicted)


def test_confusion_matrix_by_hand():
    labels = [0, 0, 1, 1, 2, 2, 2]
    predicted = [0, 1, 1, 1, 0, 2, 2]
    m = viz.confusion_matrix(labels, predicted)
    np.testing.assert_array_equal(m, [[1, 1, 0], [0, 2, 0], [1, 0, 2]])
    assert viz.confusion_matrix(labels, predicted, num_classes=5).shape == (5, 5)
    with pytest.raises(ValueError, match="num_classes=2"):
        viz.confusion_matrix(labels, predicted, num_classes=2)
    fig = viz.plot_confusion_matrix(m, class_names=["x", "y", "z"])
    assert len(fig.axes) == 2          # the matrix and its colour bar
    assert [t.get_text() for t in fig.axes[0].texts][:3] == ["1", "1", "0"]


def test_cli_curves_features_filters(tmp_path):
    from PIL import Image

    write_metrics(tmp_path / "m.jsonl")
    assert viz_cli.main(["curves", str(tmp_path / "m.jsonl"), "--out", str(tmp_path / "c.png")]) == 0
    Image.fromarray((np.arange(28 * 28) % 256).astype(np.uint8).reshape(28, 28)).save(tmp_path / "digit.png")
    assert viz_cli.main(["features", "--model", "mnist_cnn", "--image", str(tmp_path / "digit.png"), "--layer",
                         "max_pooling2d", "--max-maps", "8", "--out", str(tmp_path / "f.png")]) == 0
    assert viz_cli.main(["filters", "--model", "mnist_cnn", "--layer", "Conv2D_0", "--max-maps", "8", "--out",
                         str(tmp_path / "w.png")]) == 0
    assert viz_cli.main(["filters", "--model", "mnist_cnn", "--layer", "conv2d", "--max-maps", "8", "--out",
                         str(tmp_path / "w2.png")]) == 0          # the summary's name of the same layer
    assert (tmp_path / "w2.png").read_bytes() == (tmp_path / "w.png").read_bytes()
    for name in ("c.png", "f.png", "w.png"):
        assert (tmp_path / name).stat().st_size > 1000


@pytest.mark.parametrize("argv, message", [
    (["filters", "--model", "mnist_cnn", "--layer", "Conv2D_5"], "--layer 'Conv2D_5' is not a conv layer of "
     "mnist_cnn; its conv layers are conv2d (Conv2D_0)"),
    (["features", "--model", "mnist_cnn", "--layer", "conv9"], "conv9"),
    (["features", "--model", "mnist_cnn", "--layer", "7"], "7"),
])
def test_cli_mistakes_exit_2_with_one_line(tmp_path, capsys, argv, message):
    # the same contract as `cnnjax train`: "<prog>: error: ..." on stderr, status 2, no traceback
    from PIL import Image

    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "digit.png")
    image = ["--image", str(tmp_path / "digit.png")] if argv[0] == "features" else []
    assert viz_cli.main([*argv, *image, "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m cnnjax.viz: error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()


def test_cli_curves_of_a_file_without_epochs(tmp_path, capsys):
    (tmp_path / "header.jsonl").write_text('{"model": "mnist_cnn"}\n')
    (tmp_path / "pretty.json").write_text('{\n  "loss": [1.0]\n}\n')
    assert viz_cli.main(["curves", str(tmp_path / "header.jsonl"), "--out", str(tmp_path / "c.png")]) == 2
    assert "header.jsonl' has no epoch to plot: none of its lines is a JSON object with any of" in \
        capsys.readouterr().err
    assert viz_cli.main(["curves", str(tmp_path / "pretty.json"), "--out", str(tmp_path / "c.png")]) == 2
    assert "line 1 is not JSON" in capsys.readouterr().err
