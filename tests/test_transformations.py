"""The transformation table: every functional op and every zoo model under every JAX transformation, by value.

Columns: jit (= eager), vmap over the batch axis (= the batched call) and over a parameter axis (= a Python
loop), grad (= jvp, and = central finite differences), jvp (= finite differences), jacfwd (= jacrev), hessian
of a scalar loss on a 2-dim direction subspace (symmetric, = jacfwd(jacrev) = jacfwd(jacfwd) = finite
differences of the gradient), linearize (= jvp), remat (same value and grad), pmap and shard_map (4 forced CPU
devices in one subprocess, tests/transformations_worker.py). Ids are ``case-column`` (``max_pool-jvp``,
``resnet20-hessian``).

Float32 throughout, so finite differences get loose tolerances; exact identities (grad vs jvp, jacfwd vs
jacrev) tight ones. A model's columns are computed together in one jitted program (XLA shares the forward
passes), once per test run: the first xdist worker to need a model computes it under a file lock and leaves the
arrays for the other worker.

Models: by default three zoo models that cover the lecture's layers, at their real input size, batch 2 (see
DEFAULT_MODELS), plus ResNet-20 (BatchNorm and shortcuts) in the ``long`` run; ``CNNJAX_TRANSFORM_MODELS=all`` (or a comma list) runs every zoo model, which
costs minutes of XLA:CPU compile time on 2 cores. Programs compile with XLA's cheapest options (FAST_COMPILE).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from hypothesis import given, settings

import cnnjax
from cnnjax import functional as F
from cnnjax import shapes
from cnnjax.testing import strategies as cst
from transformations_worker import OP_NAMES, OPS_BY_NAME, model_input, model_variables

HERE = Path(__file__).resolve().parent
WORKER = HERE / "transformations_worker.py"

# by default (CI's time): the lecture's model (conv, max pool, dense), conv + max/avg pool, LeNet, and BatchNorm with
# identity and projection shortcuts; CNNJAX_TRANSFORM_MODELS=all adds the rest of the zoo (VGG, the speedrun
# nets with GELU, whitening and global max pool, the deeper ResNets, the Dense-only and dropout models)
# ResNet-20's rows (BatchNorm and shortcuts in a model; batch_norm's op rows cover BatchNorm in the default run)
# are marked `long`: outside README's test command, run by `pytest -m long` (not in the pmap/shard_map worker).
DEFAULT_MODELS = ["mnist_cnn", "mnist_cnn2", "lenet5"]
LONG_MODELS = ["resnet20"]
_ENV = os.environ.get("CNNJAX_TRANSFORM_MODELS", "").strip()
MODELS = (cnnjax.models.names() if _ENV == "all" else [m for m in _ENV.split(",") if m] if _ENV
          else [m for m in DEFAULT_MODELS if m in cnnjax.models.names()])
LONG_ROWS = [] if _ENV else [m for m in LONG_MODELS if m in cnnjax.models.names()]

COLUMNS = ["jit", "vmap_batch", "vmap_param", "grad", "jvp", "jacfwd_jacrev", "hessian", "linearize", "remat"]
PARALLEL_COLUMNS = ["pmap", "shard_map"]
EPS = 1e-3


# XLA's cheapest compilation: the table is compile-bound on 2 cores, and these options change no result's maths
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


@contextlib.contextmanager
def file_lock(path: str):
    """An exclusive lock on `path` (created if missing) between processes, e.g. the xdist workers."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _shared_dir() -> Path:
    """A directory shared by the xdist workers of this run (and only this run)."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid{os.getpid()}"
    path = Path(tempfile.gettempdir()) / f"cnnjax_transformations_{run}"
    path.mkdir(exist_ok=True)
    return path


def _norm(tree):
    return float(np.sqrt(sum(np.sum(np.square(np.asarray(a, np.float64))) for a in jax.tree_util.tree_leaves(tree))))


def assert_rel(got, want, rtol, atol=1e-6, what=""):
    """``|got - want| <= rtol * max(|got|, |want|) + atol`` in the Euclidean norm over the whole tree."""
    got, want = (jax.tree_util.tree_map(np.asarray, t) for t in (got, want))
    chex.assert_trees_all_equal_shapes(got, want)
    diff = _norm(jax.tree_util.tree_map(lambda a, b: np.asarray(a, np.float64) - np.asarray(b, np.float64),
                                        got, want))
    scale = max(_norm(got), _norm(want))
    assert diff <= rtol * scale + atol, f"{what}: |difference| {diff:.3g} > {rtol} * {scale:.3g} + {atol}"


def _tdot(a, b):
    return sum(jnp.vdot(u, v) for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def _axpy(t, d, x):
    return jax.tree_util.tree_map(lambda u, v: u + t * v, x, d)


def _like(tree, seed):
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda a: jnp.asarray(rng.normal(size=np.shape(a)), jnp.float32), tree)


# ------------------------------------------------------------------------------------------------ ops


def _op_setup(name):
    op = OPS_BY_NAME[name]
    p, x, aux = op.inputs()
    f = lambda p, x: op(p, x, aux)   # noqa: E731
    out = jax.eval_shape(f, p, x)
    w = _like(out, 99)
    loss = lambda p, x: sum(jnp.sum(wi * jnp.sin(yi)) for wi, yi in  # noqa: E731
                            zip(jax.tree_util.tree_leaves(w), jax.tree_util.tree_leaves(f(p, x))))
    return op, p, x, aux, f, loss


def _fd(fn, primals, tangents, eps=EPS):
    plus = fn(*[_axpy(eps, t, a) for a, t in zip(primals, tangents)])
    minus = fn(*[_axpy(-eps, t, a) for a, t in zip(primals, tangents)])
    return jax.tree_util.tree_map(lambda a, b: (a - b) / (2 * eps), plus, minus)


def _stack(*trees):
    return jax.tree_util.tree_map(lambda *ys: jnp.stack(ys), *trees)


def _op_columns(name):
    """One function per column, all of (p, x, dp, dx, dp2, dx2) -> {"got": ..., "want": ...} plus what the
    column checks besides; references are computed in the same program (finite differences, loops)."""
    op, p0, x0, aux, f, loss = _op_setup(name)
    fd = lambda fn, prim, tan: _fd(fn, prim, tan)   # noqa: E731

    def jit(p, x, dp, dx, dp2, dx2):
        return {"got": f(p, x)}

    def vmap_batch(p, x, dp, dx, dp2, dx2):
        if name == "softmax_cross_entropy":   # labels are per example too
            return {"got": jax.vmap(lambda xi, li: op(p, xi[None], li[None])[0])(x, aux), "want": f(p, x)}
        if name in ("batch_moments", "dropout"):
            # batch moments mix examples and a dropout mask is drawn for the whole batch: vmap over a stack
            xs = jnp.stack([x, x * 0.5 + 1.0])
            return {"got": jax.vmap(lambda xi: f(p, xi))(xs), "want": _stack(f(p, xs[0]), f(p, xs[1]))}
        return {"got": jax.vmap(lambda xi: f(p, xi[None])[0])(x), "want": f(p, x)}

    def vmap_param(p, x, dp, dx, dp2, dx2):
        if p:
            ps = jax.tree_util.tree_map(lambda a, d: jnp.stack([a, a + 0.3 * jnp.abs(d)]), p, dp)
            return {"got": jax.vmap(lambda q: f(q, x))(ps),
                    "want": _stack(*[f(jax.tree_util.tree_map(lambda a: a[i], ps), x) for i in range(2)])}
        if op.aux_stack is not None:
            auxs = op.aux_stack()
            return {"got": jax.vmap(lambda a: op(p, x, a))(auxs), "want": _stack(*[op(p, x, auxs[i]) for i in range(2)])}
        xs = jnp.stack([x, -x], axis=1)     # no parameters: vmap over a stacked axis that is not the leading one
        return {"got": jax.vmap(lambda xi: f(p, xi), in_axes=1)(xs), "want": _stack(*[f(p, xs[:, i]) for i in range(2)])}

    def grad(p, x, dp, dx, dp2, dx2):
        gp, gx = jax.grad(loss, argnums=(0, 1))(p, x)
        return {"along": _tdot(gp, dp) + _tdot(gx, dx), "jvp": jax.jvp(loss, (p, x), (dp, dx))[1],
                "fd": fd(loss, (p, x), (dp, dx)), "g": (gp, gx)}

    def jvp(p, x, dp, dx, dp2, dx2):
        y, t = jax.jvp(f, (p, x), (dp, dx))
        return {"got": y, "want": f(p, x), "t": t, "fd": fd(f, (p, x), (dp, dx))}

    def jacfwd_jacrev(p, x, dp, dx, dp2, dx2):   # the tiny op's full Jacobian in x, and along t -> f(p + t dp, x)
        h = lambda t: f(_axpy(t, dp, p), x)   # noqa: E731
        return {"got": (jax.jacfwd(f, argnums=1)(p, x), jax.jacfwd(h)(0.0)),
                "want": (jax.jacrev(f, argnums=1)(p, x), jax.jacrev(h)(0.0))}

    def hessian(p, x, dp, dx, dp2, dx2):
        g = lambda t: loss(_axpy(t[1], dp2, _axpy(t[0], dp, p)), x + t[0] * dx + t[1] * dx2)  # noqa: E731
        return _hessian_outputs(g)

    def linearize(p, x, dp, dx, dp2, dx2):
        y, fl = jax.linearize(f, p, x)
        twice = jax.tree_util.tree_map(lambda a: 2 * a, (dp, dx))
        y2, t2 = jax.jvp(f, (p, x), (dp, dx))
        return {"got": (y, fl(dp, dx), fl(*twice)),
                "want": (y2, t2, jax.tree_util.tree_map(lambda a: 2 * a, t2))}

    def remat(p, x, dp, dx, dp2, dx2):
        return {"got": (jax.checkpoint(f)(p, x), jax.grad(jax.checkpoint(loss), argnums=(0, 1))(p, x)),
                "want": (f(p, x), jax.grad(loss, argnums=(0, 1))(p, x))}

    cols = dict(jit=jit, vmap_batch=vmap_batch, vmap_param=vmap_param, grad=grad, jvp=jvp,
                jacfwd_jacrev=jacfwd_jacrev, hessian=hessian, linearize=linearize, remat=remat)
    args = (p0, x0, _like(p0, 1), _like(x0, 2), _like(p0, 3), _like(x0, 4))
    return op, f, cols, args


def _hessian_outputs(g):
    t0 = jnp.zeros(2, jnp.float32)
    gr = jax.grad(g)
    fd = jnp.stack([(gr(t0.at[i].set(EPS)) - gr(t0.at[i].set(-EPS))) / (2 * EPS) for i in range(2)])
    return {"h": jax.hessian(g)(t0), "fr": jax.jacfwd(jax.jacrev(g))(t0), "ff": jax.jacfwd(jax.jacfwd(g))(t0),
            "fd": fd}


def _run_columns(cols, args):
    """All columns in one jitted program; if that fails, each alone, to name the failing columns."""
    out, errors = {}, {}
    try:
        res = jax.jit(lambda *a: {c: fn(*a) for c, fn in cols.items()}, compiler_options=FAST_COMPILE)(*args)
        out = {c: jax.device_get(r) for c, r in res.items()}
    except Exception:   # noqa: BLE001
        for c, fn in cols.items():
            try:
                out[c] = jax.device_get(jax.jit(fn, compiler_options=FAST_COMPILE)(*args))
            except Exception as e:   # noqa: BLE001
                errors[c] = f"{type(e).__name__}: {e}"[:3000]
    return out, errors


def _with_eager(out, errors, eager):
    try:
        out.setdefault("jit", {})["want"] = jax.device_get(eager())
    except Exception as e:   # noqa: BLE001
        errors["jit"] = f"eager: {type(e).__name__}: {e}"[:3000]
    return out, errors


_CACHE = {}


def cached_results(kind, name, compute):
    """``compute(name)``, once per test run: the xdist workers share it through a pickle under a file lock."""
    if (kind, name) not in _CACHE:
        path = _shared_dir() / f"{kind}_{name}.pkl"
        with file_lock(str(path) + ".lock"):
            if path.exists():
                _CACHE[kind, name] = pickle.loads(path.read_bytes())
            else:
                _CACHE[kind, name] = compute(name)
                path.write_bytes(pickle.dumps(_CACHE[kind, name]))
    return _CACHE[kind, name]


def check_hessian(r, fd_rtol, fd_atol, fd=True):
    h = r["h"]
    chex.assert_shape(h, (2, 2))
    assert np.all(np.isfinite(h)) and _norm(h) > 0
    assert_rel(h, h.T, 1e-3, 1e-7, "hessian symmetric")
    assert_rel(h, r["fr"], 1e-5, 1e-7, "hessian vs jacfwd(jacrev)")
    assert_rel(h, r["ff"], 1e-3, 1e-7, "hessian vs jacfwd(jacfwd)")
    if fd:
        assert_rel(h, r["fd"], fd_rtol, fd_atol, "hessian vs finite differences of grad")


def _compute_op(name):
    op, f, cols, args = _op_columns(name)
    return _with_eager(*_run_columns(cols, args), lambda: f(*args[:2]))


def check_op(name, column):
    out, errors = cached_results("op", name, _compute_op)
    if column in errors:
        pytest.fail(f"{name} under {column}: {errors[column]}")
    r, tol = out[column], OPS_BY_NAME[name].fd_tol
    tight = dict(rtol=1e-5, atol=1e-6)
    if column == "grad":
        chex.assert_trees_all_equal_shapes(r["g"], OPS_BY_NAME[name].inputs()[:2])
        assert_rel(float(r["along"]), float(r["jvp"]), 1e-4, 1e-5, "grad vs jvp")
        assert_rel(float(r["along"]), float(r["fd"]), tol, 1e-3, "grad vs finite differences")
    elif column == "jvp":
        chex.assert_trees_all_close(r["got"], r["want"], **tight)
        assert_rel(r["t"], r["fd"], tol, 1e-3, "jvp vs finite differences")
    elif column == "hessian":
        check_hessian(r, tol * 2.5, 1e-3)
    else:
        chex.assert_trees_all_close(r["got"], r["want"], **tight)
        if column == "jacfwd_jacrev":
            _, x, _ = OPS_BY_NAME[name].inputs()
            for leaf, y in zip(jax.tree_util.tree_leaves(r["got"][0]), jax.tree_util.tree_leaves(out["jit"]["got"])):
                chex.assert_shape(leaf, y.shape + x.shape)
        if column == "vmap_param" and name == "dropout":   # two keys, two different masks
            assert not np.array_equal(np.asarray(r["got"][0]) != 0, np.asarray(r["got"][1]) != 0)


# ------------------------------------------------------------------------------------------------ models


def _model_columns(model, lab):
    """One function per column, all of (v, x, v2, dv, V) -> dict of arrays to compare."""
    f = lambda v, x: model.apply(v, x, train=False)   # noqa: E731
    loss = lambda v, x: jnp.mean(F.softmax_cross_entropy(f(v, x), lab))   # noqa: E731

    def jit(v, x, v2, dv, V):
        return {"got": f(v, x)}

    def vmap_batch(v, x, v2, dv, V):
        return {"got": jax.vmap(lambda xi: f(v, xi[None])[0])(x), "want": f(v, x)}

    def vmap_param(v, x, v2, dv, V):
        vs = jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), v, v2)
        return {"got": jax.vmap(lambda w: f(w, x))(vs), "want": jnp.stack([f(v, x), f(v2, x)])}

    def jvp(v, x, v2, dv, V):
        y, t = jax.jvp(lambda x: f(v, x), (x,), (V[0],))
        return {"got": y, "want": f(v, x), "t": t, "fd": (f(v, x + EPS * V[0]) - f(v, x - EPS * V[0])) / (2 * EPS)}

    def linearize(v, x, v2, dv, V):
        y, fl = jax.linearize(lambda x: f(v, x), x)
        y2, t2 = jax.jvp(lambda x: f(v, x), (x,), (V[0],))
        return {"got": (y, fl(V[0]), fl(2 * V[0])), "want": (y2, t2, 2 * t2)}

    def grad(v, x, v2, dv, V):
        gv, gx = jax.grad(loss, argnums=(0, 1))(v, x)
        plus, minus = loss(_axpy(EPS, dv, v), x + EPS * V[0]), loss(_axpy(-EPS, dv, v), x - EPS * V[0])
        return {"along": _tdot(gv, dv) + jnp.vdot(gx, V[0]), "jvp": jax.jvp(loss, (v, x), (dv, V[0]))[1],
                "fd": (plus - minus) / (2 * EPS), "g": (gv, gx)}

    def remat(v, x, v2, dv, V):
        lc, gc = jax.value_and_grad(jax.checkpoint(loss), argnums=(0, 1))(v, x)
        l, g = jax.value_and_grad(loss, argnums=(0, 1))(v, x)
        return {"got": (lc, gc, jax.checkpoint(f)(v, x)), "want": (l, g, f(v, x))}

    def jacfwd_jacrev(v, x, v2, dv, V):
        h = lambda t: f(v, x + t * V[0])   # noqa: E731
        return {"got": jax.jacfwd(h)(0.0), "want": jax.jacrev(h)(0.0)}

    def hessian(v, x, v2, dv, V):
        return _hessian_outputs(lambda t: loss(v, x + t[0] * V[0] + t[1] * V[1]))

    cols = dict(jit=jit, vmap_batch=vmap_batch, vmap_param=vmap_param, grad=grad, jvp=jvp,
                jacfwd_jacrev=jacfwd_jacrev, hessian=hessian, linearize=linearize, remat=remat)
    return f, cols


def _compute_model(name):
    model, v = model_variables(name)
    x = model_input(name, 2)
    lab = jnp.array([1, 7], jnp.int32)
    v2 = jax.tree_util.tree_map(lambda a, d: a * 0.9 + 0.05 * d, v, _like(v, 5))
    dv = jax.tree_util.tree_map(lambda d, a: d * (0.1 * jnp.std(a) + 1e-2), _like(v, 6), v)
    V = _like(jnp.zeros((2, *x.shape)), 7)
    f, cols = _model_columns(model, lab)
    out, errors = _run_columns(cols, (v, x, v2, dv, V))
    return _with_eager(out, errors, lambda: f(v, x))


def check_model(name, column):
    out, errors = cached_results("model", name, _compute_model)
    if column in errors:
        pytest.fail(f"{name} under {column}: {errors[column]}")
    r = out[column]
    tight = dict(rtol=1e-4, atol=1e-5)
    if column in ("jit", "vmap_batch", "vmap_param", "linearize", "remat", "jacfwd_jacrev"):
        chex.assert_trees_all_close(r["got"], r["want"], **tight)
        if column in ("jit", "jacfwd_jacrev"):
            chex.assert_shape(r["got"], (2, 10))
        if column == "vmap_param":
            chex.assert_shape(r["got"], (2, 2, 10))
            assert not np.allclose(r["got"][0], r["got"][1])
    elif column == "jvp":
        chex.assert_trees_all_close(r["got"], r["want"], **tight)
        assert _norm(r["t"]) > 0
        assert_rel(r["t"], r["fd"], 3e-2, 1e-3, "jvp vs finite differences")
    elif column == "grad":
        chex.assert_shape(r["g"][1], (2, *cnnjax.models.input_shape(name)))
        assert_rel(float(r["along"]), float(r["jvp"]), 1e-3, 1e-5, "grad vs jvp")
        assert_rel(float(r["along"]), float(r["fd"]), 5e-2, 2e-3, "grad vs finite differences")
    elif column == "hessian":
        # no finite differences for the ReLU/max-pool models: a step of the gradient crosses kinks whose jumps
        # dwarf the curvature autodiff sees (relu'' = 0), e.g. mnist_cnn2: H ~ 0.008, FD ~ 1.8
        check_hessian(r, 5e-2, 1e-4, fd=False)


# ------------------------------------------------------------------------------------------------ pmap, shard_map

_PARALLEL_TIMEOUT = 400


@pytest.fixture(scope="session", autouse=True)
def _start_parallel_worker():
    """Starts the 4-device worker once per run (whichever xdist worker gets here first), in the background."""
    d = _shared_dir()
    with file_lock(str(d / "parallel.lock")):
        if not (d / "parallel.started").exists():
            (d / "parallel.started").write_text(str(time.time()))
            env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE),
                                                               os.environ.get("PYTHONPATH", "")]))
            env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
            code = (f"import runpy, sys; sys.argv = {[str(WORKER), str(d / 'parallel.json'), *MODELS]!r}\n"
                    f"try:\n    runpy.run_path({str(WORKER)!r}, run_name='__main__'); rc = 0\n"
                    f"except BaseException:\n    import traceback; traceback.print_exc(); rc = 1\n"
                    f"open({str(d / 'parallel.done')!r}, 'w').write(str(rc))\n")
            with open(d / "parallel.log", "wb") as log:
                subprocess.Popen([sys.executable, "-c", code], env=env, stdout=log, stderr=subprocess.STDOUT,
                                 cwd=str(HERE.parent))
    yield


def parallel_results():
    d = _shared_dir()
    deadline = time.time() + _PARALLEL_TIMEOUT
    while not (d / "parallel.done").exists():
        if time.time() > deadline:
            pytest.fail(f"the pmap/shard_map worker did not finish in {_PARALLEL_TIMEOUT} s:\n"
                        + (d / "parallel.log").read_text()[-3000:])
        time.sleep(0.2)
    if not (d / "parallel.json").exists():
        pytest.fail("the pmap/shard_map worker failed:\n" + (d / "parallel.log").read_text()[-3000:])
    r = json.loads((d / "parallel.json").read_text())
    assert r["devices"] == 4
    return {c["case"]: c for c in r["results"]}


# ------------------------------------------------------------------------------------------------ the table

TABLE = ([pytest.param(("op", n, c), id=f"{n}-{c}") for c in COLUMNS for n in OP_NAMES]
         + [pytest.param(("model", n, c), id=f"{n}-{c}") for c in COLUMNS for n in MODELS]
         + [pytest.param(("model", n, c), id=f"{n}-{c}", marks=pytest.mark.long) for c in COLUMNS for n in LONG_ROWS])


@pytest.mark.parametrize("case", TABLE)
def test_transformation(case):
    kind, name, column = case
    (check_op if kind == "op" else check_model)(name, column)


@pytest.mark.parametrize("case", [f"{n}-{c}" for c in PARALLEL_COLUMNS for n in OP_NAMES + MODELS])
def test_parallel_transformation(case):
    r = parallel_results()
    assert case in r, f"{case} missing from the worker's results"
    assert r[case]["ok"], r[case]["error"]


# ------------------------------------------------------------------------------------------------ jit / no jit


class TestJitAndEager(chex.TestCase):
    """The op, its jvp and its grad, each with and without jit (chex variants), against finite differences."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*[(n, n) for n in OP_NAMES])
    def test_op(self, name):
        op, p, x, aux, f, loss = _op_setup(name)
        dp, dx = _like(p, 1), _like(x, 2)

        def all_three(p, x):
            return f(p, x), jax.jvp(f, (p, x), (dp, dx)), jax.grad(loss, argnums=(0, 1))(p, x)
        y, (y2, t), (gp, gx) = self.variant(all_three)(p, x)
        ref, fd_t, fd_l = jax.jit(lambda p, x: (f(p, x), _fd(f, (p, x), (dp, dx)), _fd(loss, (p, x), (dp, dx))))(p, x)
        chex.assert_trees_all_close((y, y2), (ref, ref), rtol=1e-5, atol=1e-6)
        assert_rel(t, fd_t, op.fd_tol, 1e-3, "jvp vs finite differences")
        assert_rel(float(_tdot(gp, dp) + _tdot(gx, dx)), float(fd_l), op.fd_tol, 1e-3, "grad vs finite differences")


# ------------------------------------------------------------------------------------------------ hypothesis


def _tangent(x):
    return jnp.cos(x) + 0.5


@settings(max_examples=8, deadline=None)
@given(cst.conv_configs())
def test_conv_configs_under_jvp_and_vmap(cfg):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=cfg["input_shape"]), jnp.float32)
    k = jnp.asarray(rng.normal(size=cfg["kernel_shape"]), jnp.float32)
    kw = {key: cfg[key] for key in ("strides", "padding", "dilation", "groups", "data_format")}
    want = shapes.conv_output_shape(cfg["input_shape"], cfg["kernel_shape"], **kw)
    f = lambda x, k: F.conv(x, k, **kw)   # noqa: E731
    y, t = jax.jvp(f, (x, k), (_tangent(x), _tangent(k)))
    chex.assert_shape([y, t], want)
    ys = jax.vmap(f, in_axes=(None, 0))(x, jnp.stack([k, -k]))   # a stack of two kernels
    chex.assert_shape(ys, (2, *want))
    chex.assert_trees_all_close(ys[0], y, rtol=1e-5, atol=1e-5)
    chex.assert_trees_all_close(ys[1], -y, rtol=1e-5, atol=1e-5)


@settings(max_examples=8, deadline=None)
@given(cst.pool_configs())
def test_pool_configs_under_jvp_and_vmap(cfg):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=cfg["input_shape"]), jnp.float32)
    kw = {key: cfg[key] for key in ("strides", "padding", "data_format", "ceil_mode")}
    want = shapes.pool_output_shape(cfg["input_shape"], cfg["pool_size"], **kw)
    for pool in (F.max_pool, F.avg_pool):
        f = lambda x: pool(x, cfg["pool_size"], **kw)   # noqa: E731
        y, t = jax.jvp(f, (x,), (_tangent(x),))
        chex.assert_shape([y, t], want)
        assert np.all(np.isfinite(np.asarray(t)))
        ys = jax.vmap(f)(jnp.stack([x, 2 * x]))         # a stack of two inputs
        chex.assert_shape(ys, (2, *want))
        chex.assert_trees_all_close(ys[0], y, rtol=1e-5, atol=1e-5)
        chex.assert_trees_all_close(ys[1], 2 * y, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------ what cannot work


def test_grad_with_respect_to_integer_labels_is_refused():
    # jax.grad refuses integer inputs before softmax_cross_entropy is called, so the message is jax's own
    # (clear, but it cannot name the op); the op's labels are indices, not a differentiable input.
    logits = jnp.zeros((2, 3))
    with pytest.raises(TypeError, match="grad requires real- or complex-valued inputs"):
        jax.grad(lambda lab: F.softmax_cross_entropy(logits, lab).sum())(jnp.array([0, 1]))
    # with allow_int the labels get a float0 zero cotangent
    g = jax.grad(lambda lab: F.softmax_cross_entropy(logits, lab).sum(), allow_int=True)(jnp.array([0, 1]))
    assert g.dtype == jax.dtypes.float0


@pytest.mark.parametrize("transform", ["jit", "vmap", "grad"])
def test_traced_dropout_rate_is_refused_naming_the_op(transform):
    x, key = jnp.ones((2, 4)), jax.random.key(0)
    f = lambda r: F.dropout(x, r, rng=key).sum()   # noqa: E731
    t = {"jit": jax.jit, "vmap": jax.vmap, "grad": jax.grad}[transform]
    arg = jnp.array([0.5, 0.25]) if transform == "vmap" else jnp.float32(0.5)
    with pytest.raises(TypeError, match=r"dropout: rate must be a Python or NumPy number \(a static value\)"):
        t(f)(arg)


@pytest.mark.parametrize("transform", ["jit", "vmap", "grad"])
def test_traced_label_smoothing_is_taken(transform):
    """label_smoothing may be traced (e.g. differentiated): the same losses as the static value."""
    logits, lab = jnp.array([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]]), jnp.array([0, 1])
    f = lambda a: F.softmax_cross_entropy(logits, lab, label_smoothing=a).sum()   # noqa: E731
    want = f(0.1)
    if transform == "jit":
        chex.assert_trees_all_close(jax.jit(f)(jnp.float32(0.1)), want, rtol=1e-6)
    elif transform == "vmap":
        chex.assert_trees_all_close(jax.vmap(f)(jnp.array([0.1, 0.0])), jnp.stack([want, f(0.0)]), rtol=1e-6)
    else:   # d loss / d a = sum(picked log p) - sum(mean log p) ... checked against a central difference
        g = jax.grad(f)(jnp.float32(0.1))
        chex.assert_trees_all_close(g, (f(0.1 + 1e-3) - f(0.1 - 1e-3)) / 2e-3, rtol=1e-2)
    with pytest.raises(TypeError, match="softmax_cross_entropy: label_smoothing must be a Python or NumPy number"):
        F.softmax_cross_entropy(logits, lab, label_smoothing="0.1")
    with pytest.raises(ValueError, match=r"label_smoothing=Array\(1.5.* must be in \[0, 1\)"):
        F.softmax_cross_entropy(logits, lab, label_smoothing=jnp.float32(1.5))      # concrete: checked
    with pytest.raises(ValueError, match=r"label_smoothing must be one number, got an array of shape \(2,\)"):
        F.softmax_cross_entropy(logits, lab, label_smoothing=jnp.array([0.1, 0.2]))
