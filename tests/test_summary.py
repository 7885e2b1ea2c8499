"""cnnjax.summary and count_params: the lecture's Keras tables row by row, formulas, receptive fields."""
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cnnjax
from cnnjax import layers as L
from cnnjax import models
from cnnjax.model_summary import layer_table

ROW = re.compile(r"^ (\S+) \((\w+)\)\s+\(None, ([\d, ]+)\)\s+([\d,]+)")

# The lecture notes' model.summary() tables (SEED_EXAMPLES.md, "Models"), typed from the notes:
# (layer type, output shape without batch, params).
LECTURE_TABLES = {
    "mnist_cnn": ([("Conv2D", (26, 26, 32), 320), ("MaxPooling2D", (13, 13, 32), 0), ("Flatten", (5408,), 0),
                   ("Dense", (128,), 692_352), ("Dense", (10,), 1_290)], 693_962),
    "mnist_cnn2": ([("Conv2D", (26, 26, 32), 320), ("MaxPooling2D", (13, 13, 32), 0),
                    ("Conv2D", (11, 11, 64), 18_496), ("AveragePooling2D", (5, 5, 64), 0), ("Flatten", (1600,), 0),
                    ("Dense", (64,), 102_464), ("Dense", (10,), 650)], 121_930),
    "cifar10_cnn": ([("Conv2D", (30, 30, 32), 896), ("MaxPooling2D", (15, 15, 32), 0),
                     ("Dropout", (15, 15, 32), 0), ("Flatten", (7200,), 0), ("Dense", (512,), 3_686_912),
                     ("Dropout", (512,), 0), ("Dense", (10,), 5_130)], 3_692_938),
    # The notes list these two without numbers; the numbers are worked by hand: 784*128+128, 128*10+10; and
    # 3*3*1*32+32, 3*3*32*64+64, 3*3*64*64+64, 576*64+64, 64*10+10.
    "fashion_dnn": ([("Flatten", (784,), 0), ("Dense", (128,), 100_480), ("Dense", (10,), 1_290)], 101_770),
    "fashion_cnn": ([("Conv2D", (26, 26, 32), 320), ("MaxPooling2D", (13, 13, 32), 0),
                     ("Conv2D", (11, 11, 64), 18_496), ("MaxPooling2D", (5, 5, 64), 0),
                     ("Conv2D", (3, 3, 64), 36_928), ("Flatten", (576,), 0), ("Dense", (64,), 36_928),
                     ("Dense", (10,), 650)], 93_322),
}


def _parse(text):
    rows = []
    for line in text.splitlines():
        match = ROW.match(line)
        if match:
            name, kind, shape, params = match.groups()
            rows.append((kind, tuple(int(s) for s in shape.split(",") if s.strip()), int(params.replace(",", ""))))
    total = int(re.search(r"^Total params: ([\d,]+)$", text, re.M).group(1).replace(",", ""))
    trainable = int(re.search(r"^Trainable params: ([\d,]+)$", text, re.M).group(1).replace(",", ""))
    non_trainable = int(re.search(r"^Non-trainable params: ([\d,]+)$", text, re.M).group(1).replace(",", ""))
    return rows, total, trainable, non_trainable


@pytest.mark.parametrize("name", sorted(LECTURE_TABLES))
def test_lecture_summaries_match_the_notes_row_by_row(name):
    text = cnnjax.summary(models.get(name), models.input_shape(name), name=name)
    rows, total, trainable, non_trainable = _parse(text)
    expected_rows, expected_total = LECTURE_TABLES[name]
    assert rows == expected_rows
    assert (total, trainable, non_trainable) == (expected_total, expected_total, 0)
    assert text.startswith(f'Model: "{name}"')


def test_keras_names_and_layout():
    text = cnnjax.summary(models.get("mnist_cnn"), (28, 28, 1))
    lines = text.splitlines()
    assert lines[0] == 'Model: "simple_cnn"'           # the class in snake case, as Keras names models
    assert lines[2].split() == ["Layer", "(type)", "Output", "Shape", "Param", "#"]
    names = [line.split()[0] for line in lines if ROW.match(line)]
    assert names == ["conv2d", "max_pooling2d", "flatten", "dense", "dense_1"]
    assert " dense (Dense)" in text and "(None, 13, 13, 32)" in text and "692,352" in text


def test_sequential_readme_model_equals_the_zoo_model():
    model = L.Sequential([L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(), L.Flatten(),
                          L.Dense(128, activation="relu"), L.Dense(10)])
    assert _parse(cnnjax.summary(model, (28, 28, 1)))[:2] == _parse(cnnjax.summary(models.get("mnist_cnn"),
                                                                                 (28, 28, 1)))[:2]


def test_formulas_on_mnist_cnn():
    text = cnnjax.summary(models.get("mnist_cnn"), (28, 28, 1), formulas=True)
    rows = {row.split()[0]: row for row in text.splitlines() if ROW.match(row)}
    assert "(28 - 3)/1 + 1 = 26" in rows["conv2d"] and "3*3*1*32 + 32 = 320" in rows["conv2d"]
    assert "(26 - 2)/2 + 1 = 13" in rows["max_pooling2d"]
    assert "13*13*32 = 5408" in rows["flatten"]
    assert "5408*128 + 128 = 692,352" in rows["dense"] and "128*10 + 10 = 1,290" in rows["dense_1"]
    # receptive field and jump: conv 3x3 -> (3, 1); pool 2/2 -> 3 + (2-1)*1 = 4, jump 2; flatten sees all
    table = layer_table(models.get("mnist_cnn"), (28, 28, 1))["rows"]
    assert [(r["receptive_field"], r["jump"]) for r in table] == [("3", "1"), ("4", "2"), ("all", ""),
                                                                   ("all", ""), ("all", "")]
    assert "Note" not in text.splitlines()[2]        # nothing unused in the lecture model


def test_formulas_flag_unused_input():
    # The lecture: 11x11 input, 6x6 kernel, stride 4: valid -> 2 (last row/column unused); same -> 3 (pads 1+2).
    valid = layer_table(L.Conv2D(1, 6, strides=4), (11, 11, 1))["rows"][0]
    assert valid["shape_formula"] == "floor((11 - 6)/4) + 1 = 2"
    assert valid["note"] == "unused input: last 1 (H), last 1 (W)"
    same = layer_table(L.Conv2D(1, 6, strides=4, padding="same"), (11, 11, 1))["rows"][0]
    assert same["shape_formula"] == "ceil(11/4) = 3 (pad 1+2)" and same["note"] == ""
    # 7x7, 3x3, stride 3 -> 2 with one row lost; zero padding 1 -> 9x9 -> 3
    assert layer_table(L.Conv2D(1, 3, strides=3), (7, 7, 1))["rows"][0]["note"] == \
        "unused input: last 1 (H), last 1 (W)"
    padded = layer_table(L.Conv2D(1, 3, strides=3, padding=1), (7, 7, 1))["rows"][0]
    assert padded["shape_formula"] == "(7 + 2*1 - 3)/3 + 1 = 3" and padded["note"] == ""
    # 28x32 input, 5x5 filter, padding 2, stride 2 -> 14x16: different per axis
    rect = layer_table(L.Conv2D(1, 5, strides=2, padding=2), (28, 32, 1))["rows"][0]
    assert rect["shape_formula"] == "H: floor((28 + 2*2 - 5)/2) + 1 = 14; W: floor((32 + 2*2 - 5)/2) + 1 = 16"
    assert rect["output_shape"] == (1, 14, 16, 1)


def test_receptive_field_recurrence():
    # r_out = r_in + (k_eff - 1) * j_in, j_out = j_in * s: conv3 -> 3; conv3 dilation 2 (k_eff 5) -> 7;
    # pool 2 -> 8, jump 2; conv3 stride 2 -> 12, jump 4; transposed conv3 stride 2 -> jump 2, 12 + 2*2 = 16.
    model = L.Sequential([L.Conv2D(4, 3), L.Conv2D(4, 3, dilation_rate=2), L.MaxPooling2D(),
                          L.Conv2D(4, 3, strides=2, padding="same"), L.Conv2DTranspose(4, 3, strides=2),
                          L.GlobalAveragePooling2D()])
    rows = layer_table(model, (32, 32, 3))["rows"]
    assert [(r["receptive_field"], r["jump"]) for r in rows] == [
        ("3", "1"), ("7", "1"), ("8", "2"), ("12", "4"), ("16", "2"), ("all", "")]
    assert rows[1]["note"] == "dilated kernel spans 5x5"
    # 32 -> 30 -> 26 -> 13 -> ceil(13/2) = 7 -> transposed: 7*2 + max(3 - 2, 0) = 15
    assert rows[4]["shape_formula"] == "7*2 + max(3 - 2, 0) = 15"


def test_resnet20_summary_counts_batch_stats_as_non_trainable():
    text = cnnjax.summary(models.get("resnet20"), (32, 32, 3), formulas=True)
    rows, total, trainable, non_trainable = _parse(text)
    # 19 convs + 19 batch norms + pooling + dense; BN has 4*C values, 2*C of them non-trainable:
    # 2 * (16 * 7 + 32 * 6 + 64 * 6) = 1,376 (seven BNs of 16 channels: the stem and six in stage 1)
    assert [kind for kind, _, _ in rows].count("Conv2D") == 19
    assert [kind for kind, _, _ in rows].count("BatchNormalization") == 19
    assert non_trainable == 1_376 and trainable == 269_722 and total == trainable + non_trainable
    assert rows[1] == ("BatchNormalization", (32, 32, 16), 64)
    # receptive field grows by 2 * jump per 3x3 conv: 1 + 2*7 = 15, then jump 2 and 4: 15 + 2*1 + 4*5 + ... = 81
    table = layer_table(models.get("resnet20"), (32, 32, 3))["rows"]
    assert table[-3]["receptive_field"] == "81" and table[-3]["jump"] == "4"
    assert "[16] + [16]" in text


def test_summary_of_a_model_too_big_to_run():
    # 2.5e9 parameters (10 GB in float32): jax.eval_shape never allocates them.
    model = L.Sequential([L.Flatten(), L.Dense(50_000)])
    rows, total, _, _ = _parse(cnnjax.summary(model, (50_000,)))
    assert total == 50_000 * 50_000 + 50_000
    assert rows[-1] == ("Dense", (50_000,), 2_500_050_000)


class _Named(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = L.Conv2D(8, 3, name="stem")(x)
        return L.Sequential([L.Flatten(), L.Dense(4)])(x)


def test_user_named_layers_and_nested_sequential():
    model = _Named()
    text = cnnjax.summary(model, (8, 8, 1))
    names = [line.split()[0] for line in text.splitlines() if ROW.match(line)]
    assert names == ["stem", "flatten", "dense"]


def test_count_params():
    assert cnnjax.count_params({"kernel": np.zeros((3, 3, 1, 32)), "bias": np.zeros(32)}) == 320   # 3*3*1*32+32
    assert cnnjax.count_params([jnp.zeros((5408, 128)), jnp.zeros(128)]) == 692_352
    assert cnnjax.count_params({}) == 0


def test_count_params_refuses_a_module_and_none():
    """A Module is a pytree of one leaf (it counted 1); None has no leaves (it counted 0)."""
    with pytest.raises(TypeError, match=r"count_params: got a flax Module; pass its params "
                                        r"\(variables\[\"params\"\] from model\.init\(\.\.\.\)\)"):
        cnnjax.count_params(L.Sequential([L.Dense(3)]))
    with pytest.raises(TypeError, match=r"count_params: got None"):
        cnnjax.count_params(None)
    with pytest.raises(TypeError, match=r"count_params: the leaf at \['kernel'\] is str"):
        cnnjax.count_params({"kernel": "zeros"})
    variables = L.Dense(3).init(jax.random.key(0), jnp.zeros((1, 4)))
    assert cnnjax.count_params(variables["params"]) == cnnjax.count_params(variables) == 4 * 3 + 3
    assert cnnjax.count_params(jax.eval_shape(lambda: variables)) == 15 and cnnjax.count_params(2.0) == 1


def test_summary_of_a_model_name_points_to_models_get():
    with pytest.raises(TypeError, match=r"summary: model must be a flax Module, got str 'mnist_cnn'; use "
                                        r"cnnjax\.models\.get\('mnist_cnn'\)"):
        cnnjax.summary("mnist_cnn", (28, 28, 1))
    with pytest.raises(TypeError, match=r"layer_table: model must be a flax Module .*, got int\."):
        layer_table(3, (28, 28, 1))


@pytest.mark.parametrize("shape", [(), (28, 0, 1), "28x28", (1, 28, 28, 1.0)])
def test_bad_input_shape(shape):
    with pytest.raises(ValueError, match=r"summary: input_shape="):
        cnnjax.summary(models.get("mnist_cnn"), shape)


def test_an_input_shape_with_the_batch_axis_says_so():
    # (1, 28, 28, 1) is a batch, not one example: the first layer sees rank 5, one axis too many
    with pytest.raises(ValueError, match=r"has rank 5, .*one axis too many\? An input_shape .* without the batch axis"):
        cnnjax.summary(models.get("mnist_cnn"), (1, 28, 28, 1))
    with pytest.raises(ValueError, match=r"has rank 3, .*add a batch axis with x\[None\]"):
        models.get("mnist_cnn").init(jax.random.key(0), jnp.zeros((28, 28, 1)))


def test_channels_first_formulas_and_receptive_fields():
    # 15 -conv3-> 13 (RF 3) -pool2 same-> ceil(13/2) = 7 (RF 4, jump 2) -depthwise3-> 5 (RF 4 + 2*2 = 8);
    # channel pool keeps the spatial axes; global pooling and Dense on (N, C) see everything.
    model = L.Sequential([L.Conv2D(8, 3, data_format="channels_first"),
                          L.MaxPool2D(padding="same", data_format="NCHW"),
                          L.DepthwiseConv2D(3, depth_multiplier=2, data_format="NCHW"),
                          L.ChannelMaxPool(2, data_format="NCHW"), L.GlobalMaxPool2D(data_format="NCHW"),
                          L.Dense(4, use_bias=False)])
    rows = layer_table(model, (3, 15, 15))["rows"]
    assert [r["output_shape"][1:] for r in rows] == [(8, 13, 13), (8, 7, 7), (16, 5, 5), (8, 5, 5), (8,), (4,)]
    assert [r["shape_formula"] for r in rows[:5]] == [
        "(15 - 3)/1 + 1 = 13", "ceil(13/2) = 7 (pad 0+1)", "(7 - 3)/1 + 1 = 5", "channels: (16 - 2)/2 + 1 = 8",
        "max over 5x5"]
    assert [r["param_formula"] for r in rows] == ["3*3*3*8 + 8 = 224", "", "3*3*1*16 + 16 = 160", "", "",
                                                  "8*4 = 32"]
    assert [r["receptive_field"] for r in rows] == ["3", "4", "8", "8", "all", "all"]
