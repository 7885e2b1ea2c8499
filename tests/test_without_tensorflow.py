"""The base install's promise, with TensorFlow hidden (``sys.modules["tensorflow"] = None`` makes every
``import tensorflow`` raise ImportError, as where it is not installed): in a fresh process, `import cnnjax`, a
functional op, MNIST from small local IDX files through `load` and `cnnjax data import`, a one-epoch `fit`, an
evaluation, and an export served by `load_export` all work, print only cnnjax's lines, and load neither TensorFlow nor tensorflow-datasets; asking for a
tfds copy names the `cnnjax[tf]` extra in one line."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from test_data_load import write_idx_set

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import sys
    sys.modules["tensorflow"] = None          # import tensorflow -> ImportError, as without the package
    src, prepared = sys.argv[1], sys.argv[2]

    import jax.numpy as jnp
    import cnnjax
    from cnnjax import functional as F
    x = jnp.array([[1., 2, 3], [4, 5, 6], [7, 8, 9]]).reshape(1, 3, 3, 1)
    out = F.conv2d(x, jnp.ones((2, 2, 1, 1)), padding="valid")[0, :, :, 0]
    assert out.tolist() == [[12, 16], [24, 28]], out          # README's functional example, by hand

    from cnnjax.data import load
    from cnnjax.cli.data_commands import main as data_main
    assert data_main(["import", "mnist", "--data-dir", src, "--prepared-dir", prepared]) == 0
    train = load("mnist", "train", prepared_dir=prepared, download=False, as_uint8=True)
    test = load("mnist", "test", data_dir=src, prepared_dir=prepared, as_uint8=True)
    assert train.images.shape == (40, 28, 28, 1) and test.labels.tolist() == [k % 10 for k in range(10)]
    assert data_main(["import", "mnist", "--data-dir", src, "--prepared-dir", prepared, "--tfds"]) == 2

    from cnnjax import Sequential, Conv2D, Flatten, Dense
    from cnnjax.train import evaluate, fit
    model = Sequential([Conv2D(2, 3, activation="relu"), Flatten(), Dense(10)])
    state, history = fit(model, train, epochs=1, batch_size=20, progress=False)
    assert len(history["loss"]) == 1 and jnp.isfinite(history["loss"][0]), history
    assert 0.0 <= evaluate(model, state, test)["accuracy"] <= 1.0
    import os
    import numpy as np
    from cnnjax.train import predict
    path = os.path.join(prepared, "model.jaxexport")         # export and serve, still without TensorFlow
    cnnjax.export(model, state, path, input_shape=(28, 28, 1), input_dtype="uint8")
    served = cnnjax.load_export(path)(test.images[:3])
    np.testing.assert_allclose(np.asarray(served), predict(model, state, test.images[:3], probabilities=False),
                               rtol=1e-5, atol=1e-5)
    loaded = sorted(m for m in sys.modules if m.startswith(("tensorflow.", "tensorflow_datasets", "keras"))
                    or (m == "tensorflow" and sys.modules[m] is not None))
    assert not loaded, loaded
    print("ALL OK")
""")


def test_base_install_path_works_without_tensorflow(tmp_path):
    src = write_idx_set(tmp_path / "src" / "mnist", n_train=40, n_test=10).parent
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "CNNJAX_VERBOSE")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["JAX_PLATFORMS"] = "cpu"
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(src), str(tmp_path / "p")], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 0 and "ALL OK" in result.stdout, (result.stdout[-2000:], result.stderr[-3000:])
    err = result.stderr.splitlines()
    assert err[0] == f"preparing MNIST from {src / 'mnist'} once (into {tmp_path / 'p'}/_cnnjax_arrays/mnist/3.0.1)"
    assert len(err) == 2 and err[1].startswith("python -m cnnjax.data: error: --tfds: ") and "cnnjax[tf]" in err[1], \
        result.stderr[-3000:]
