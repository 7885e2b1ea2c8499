"""cnnjax.export / cnnjax.load_export (a jax.export artifact with a symbolic batch and a checksummed sidecar),
export_saved_model (jax2tf, skipped without TensorFlow), and the CLI's `export` and `--version`.

References are independent of the export path: the model's own ``apply`` under ``jax.jit`` (train=False), the
definition of softmax and of the uint8 -> [0, 1] scaling, ``hashlib.blake2b`` of the file's bytes, and
``cnnjax.train.predict`` on the state that ``fit`` returned. Models are small (8x8 inputs; fashion_dnn for the zoo)
so the file stays within a few seconds.
"""
import hashlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export as jax_export

import cnnjax
from cnnjax.artifact import ExportCorruptError, export_saved_model
from cnnjax.cli import main
from test_parallel_worker import TinyCNN, toy_data


def _images(n, shape=(8, 8, 1), seed=0):
    return np.random.default_rng(seed).random((n, *shape)).astype(np.float32)


def _random_variables(model, seed):
    """Variables of `model` for 8x8x1 inputs, drawn with NumPy (model.init compiles its random ops: seconds on a
    CPU): normal(0, 0.3) weights, BatchNorm running variances in [0.5, 2] and means normal(0, 1), far from the
    (0, 1) that train=True's batch statistics would make."""
    abstract = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = path[-1].key
        values = rng.uniform(0.5, 2.0, leaf.shape) if name == "var" else rng.normal(0, 1 if name == "mean" else 0.3,
                                                                                    leaf.shape)
        return jnp.asarray(values, jnp.float32)
    return jax.tree_util.tree_map_with_path(fill, abstract)


def _sequential():
    model = cnnjax.Sequential([cnnjax.Conv2D(4, 3, activation="relu"), cnnjax.MaxPooling2D(), cnnjax.Flatten(),
                               cnnjax.Dense(3)])
    return model, _random_variables(model, 0)


def _bn_model():
    model = TinyCNN(batch_norm=True)
    variables = _random_variables(model, 1)
    assert set(variables) == {"params", "batch_stats"}
    return model, variables


@pytest.fixture(scope="module")
def sequential_artifact(tmp_path_factory):
    model, variables = _sequential()
    path = str(tmp_path_factory.mktemp("export") / "seq.jaxexport")
    meta = cnnjax.export(model, variables, path, input_shape=(8, 8, 1), platforms=("cpu", "cuda"))
    return model, variables, path, meta


def test_round_trip_equals_the_jitted_model_at_two_batch_sizes(sequential_artifact):
    model, variables, path, meta = sequential_artifact
    loaded = cnnjax.load_export(path)
    plain = jax_export.deserialize(bytearray(open(path, "rb").read()))   # the file is a plain jax.export artifact
    reference = jax.jit(lambda x: model.apply(variables, x, train=False))
    for n in (1, 3):
        x = _images(n, seed=n)
        want = np.asarray(reference(x))
        np.testing.assert_allclose(np.asarray(loaded(x)), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(plain.call(x)), want, rtol=1e-5, atol=1e-6)
    assert loaded(_images(0)).shape == (0, 3)           # an empty batch gets an empty answer
    # the platforms it was lowered for, in the loaded object, the Exported and the sidecar
    assert loaded.platforms == plain.platforms == ("cpu", "cuda")
    assert str(plain.in_avals[0].shape[0]) == "b"      # the batch is symbolic
    side = json.load(open(path + ".json"))
    assert side == meta
    data = open(path, "rb").read()
    assert side["bytes"] == len(data)
    assert side["blake2b"] == hashlib.blake2b(data, digest_size=32).hexdigest()
    assert side["platforms"] == ["cpu", "cuda"] and side["classes"] == 3
    assert side["input"] == {"shape": ["b", 8, 8, 1], "dtype": "float32", "range": "[0, 1]"}
    assert side["output"]["kind"] == "logits" and side["output"]["shape"] == ["b", 3]
    assert side["versions"] == {"cnnjax": cnnjax.__version__, "jax": jax.__version__,
                                "flax": __import__("flax").__version__}
    assert sorted(os.listdir(os.path.dirname(path))) == ["seq.jaxexport", "seq.jaxexport.json"]  # no temp files


def test_batchnorm_uint8_and_probabilities(tmp_path):
    """A uint8 artifact divides by 255 inside; probabilities are the softmax of the logits; BatchNorm uses its
    running statistics (train=False). The reference is written from the definitions."""
    model, variables = _bn_model()
    path = tmp_path / "bn.jaxexport"
    cnnjax.export(model, variables, path, input_shape=np.zeros((2, 8, 8, 1), np.uint8), probabilities=True)
    loaded = cnnjax.load_export(path)
    assert loaded.input_dtype == "uint8" and loaded.outputs == "probabilities"
    here = jax_export.default_export_platform()
    assert loaded.platforms == (("cpu",) if here == "cpu" else ("cpu", here))       # the default
    x = np.random.default_rng(3).integers(0, 256, (3, 8, 8, 1)).astype(np.uint8)
    logits = np.asarray(jax.jit(model.apply)(variables, x / np.float32(255)), np.float64)      # train=False
    want = np.exp(logits - logits.max(-1, keepdims=True))
    want /= want.sum(-1, keepdims=True)
    got = np.asarray(loaded(x))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.allclose(got.sum(-1), 1, atol=1e-6)
    with pytest.raises(TypeError, match="takes uint8 images"):
        loaded(_images(1))


def test_a_float_artifact_takes_uint8_as_x_over_255_and_refuses_bad_images(sequential_artifact):
    model, variables, path, _ = sequential_artifact
    loaded = cnnjax.load_export(path)
    x8 = np.random.default_rng(5).integers(0, 256, (3, 8, 8, 1)).astype(np.uint8)
    np.testing.assert_allclose(np.asarray(loaded(x8)), np.asarray(loaded(x8.astype(np.float32) / 255)),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(jax.jit(loaded)(x8)), np.asarray(loaded(x8)), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"values up to 255.*\[0, 1\]"):
        loaded(x8.astype(np.float32))
    with pytest.raises(ValueError, match=r"values up to 255.*\[0, 1\]"):
        loaded(jnp.asarray(x8, jnp.float32))
    with pytest.raises(ValueError, match=r"batch \[N, 8, 8, 1\], got shape \(3, 8, 8\)"):
        loaded(np.zeros((3, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"got shape \(1, 9, 8, 1\)"):
        loaded(np.zeros((1, 9, 8, 1), np.float32))
    with pytest.raises(TypeError, match="dtype int32"):
        loaded(np.zeros((1, 8, 8, 1), np.int32))


def test_damaged_truncated_and_unverifiable_artifacts_are_named(sequential_artifact, tmp_path):
    _, _, path, _ = sequential_artifact
    data = open(path, "rb").read()
    copy = tmp_path / "copy.jaxexport"
    open(str(copy) + ".json", "w").write(open(path + ".json").read())
    copy.write_bytes(data[:len(data) // 2])
    with pytest.raises(ExportCorruptError, match=rf"{copy}.* is truncated: it has {len(data) // 2:,} bytes"):
        cnnjax.load_export(copy)
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0xFF
    copy.write_bytes(bytes(flipped))
    with pytest.raises(ExportCorruptError, match=rf"{copy}.* does not match the BLAKE2b checksum"):
        cnnjax.load_export(copy)
    os.remove(str(copy) + ".json")
    with pytest.raises(FileNotFoundError, match="has no sidecar"):
        cnnjax.load_export(copy)
    with pytest.raises(FileNotFoundError, match="no artifact file at"):
        cnnjax.load_export(tmp_path / "missing.jaxexport")


def test_an_artifact_for_another_platform_is_refused_when_called(tmp_path):
    model, variables = _sequential()
    path = tmp_path / "tpu.jaxexport"
    cnnjax.export(model, variables, path, input_shape=(8, 8, 1), platforms="tpu")
    loaded = cnnjax.load_export(path)
    assert loaded.platforms == ("tpu",)
    here = jax_export.default_export_platform()
    with pytest.raises(ValueError, match=f"lowered for tpu, and this process runs on '{here}'"):
        loaded(_images(1))


def test_argument_errors_name_the_argument_and_what_is_valid(tmp_path):
    model, variables = _sequential()
    out = tmp_path / "m.jaxexport"
    cases = [
        (dict(model="mnist_cnn"), TypeError, r"use cnnjax.models.get\('mnist_cnn'\)"),
        (dict(variables={"weights": {}}), TypeError, r"with 'params'.*got a dict with keys \['weights'\]"),
        (dict(input_shape=None), TypeError, r"input_shape is needed"),
        (dict(input_shape=(8, 8)), ValueError, r"input_shape=\(8, 8\) must be the image shape \(H, W, C\)"),
        (dict(input_shape=(8, 0, 1)), ValueError, r"every size >= 1"),
        (dict(platforms=("cpu", "gpu")), ValueError, r"unknown platform 'gpu'.*'cuda'.*valid: cpu, cuda, rocm, tpu"),
        (dict(platforms=()), TypeError, r"non-empty sequence"),
        (dict(input_dtype="int8"), ValueError, r"input_dtype='int8'; valid: 'float32'"),
        (dict(dtype="bfloat16"), TypeError, r"dtype='bfloat16' needs a model with a dtype field.*Sequential"),
        (dict(dtype="int32"), ValueError, r"valid compute dtypes"),
        (dict(probabilities=1), TypeError, r"probabilities must be True or False"),
        (dict(path=tmp_path / "no" / "m.jaxexport"), FileNotFoundError, r"its folder .*no' does not exist"),
        (dict(path=tmp_path), IsADirectoryError, r"is a folder"),
    ]
    for change, error, message in cases:
        kwargs = dict(model=model, variables=variables, path=out, input_shape=(8, 8, 1))
        kwargs.update(change)
        with pytest.raises(error, match=message):
            cnnjax.export(kwargs.pop("model"), kwargs.pop("variables"), kwargs.pop("path"), **kwargs)
    assert os.listdir(tmp_path) == []          # nothing written


def test_saved_model_round_trip(tmp_path):
    tf = pytest.importorskip("tensorflow")
    model, variables = _sequential()
    folder = export_saved_model(model, variables, tmp_path / "saved", input_shape=(8, 8, 1))
    serve = tf.saved_model.load(folder).signatures["serving_default"]
    for n in (1, 3):
        x = _images(n, seed=10 + n)
        want = np.asarray(jax.jit(lambda a: model.apply(variables, a, train=False))(x))
        np.testing.assert_allclose(serve(images=tf.constant(x))["outputs"].numpy(), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(FileExistsError, match="not an empty folder"):
        export_saved_model(model, variables, folder, input_shape=(8, 8, 1))


def test_saved_model_without_tensorflow_names_the_extra(monkeypatch, tmp_path):
    import sys
    monkeypatch.setitem(sys.modules, "tensorflow", None)        # import tensorflow -> ImportError
    model, variables = _sequential()
    with pytest.raises(ImportError, match=r'needs TensorFlow.*pip install "cnnjax\[tf\]"'):
        export_saved_model(model, variables, tmp_path / "saved", input_shape=(8, 8, 1))
    assert os.listdir(tmp_path) == []


def _run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_version(capsys):
    import flax
    code, out, _ = _run(["--version"], capsys)
    assert code == 0 and out.strip() == f"cnnjax {cnnjax.__version__} (jax {jax.__version__}, flax {flax.__version__})"


def test_cli_export_of_a_trained_checkpoint(tmp_path, capsys):
    from cnnjax import models
    from cnnjax.train import fit, predict

    x, y = toy_data(16, size=28)
    ck, out = str(tmp_path / "ck"), str(tmp_path / "dnn.jaxexport")
    model = models.get("fashion_dnn")
    state, _ = fit(model, (x, y), epochs=1, batch_size=16, progress=False, checkpoint_dir=ck,
                   meta={"model": "fashion_dnn"})
    code, _, err = _run(["export", "--checkpoint-dir", ck, "--out", out, "--platforms", "cpu,gpu"], capsys)
    assert code == 2 and "unknown platform 'gpu'; valid: cpu, cuda, rocm, tpu" in err
    code, _, err = _run(["export", "--checkpoint-dir", ck, "--out", str(tmp_path / "no" / "f")], capsys)
    assert code == 2 and "cannot be written" in err
    code, _, err = _run(["export", "--checkpoint-dir", ck, "--out", out, "--model", "lenet5"], capsys)
    assert code == 2 and "holds a checkpoint of model 'fashion_dnn', not 'lenet5'" in err
    assert not os.path.exists(out)
    code, stdout, err = _run(["export", "--checkpoint-dir", ck, "--out", out, "--platforms", "cpu,cuda"], capsys)
    assert code == 0, err
    assert stdout.startswith(f"wrote {out} (") and "fashion_dnn" in stdout and "platforms cpu, cuda" in stdout
    loaded = cnnjax.load_export(out)
    assert loaded.platforms == ("cpu", "cuda") and loaded.input_shape == (28, 28, 1) and loaded.classes == 10
    want = predict(model, state, x[:3], probabilities=False)       # the state fit returned, not the checkpoint
    np.testing.assert_allclose(np.asarray(loaded(x[:3])), want, rtol=1e-5, atol=1e-6)
