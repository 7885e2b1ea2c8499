"""Training speed of cnnjax side by side with a Flax-linen host loop and PyTorch, on the same machine, in one run.

For each (model, loop) row: time of the first call (compile + one run), steady-state training images/s (after
warm-up, synchronised at the end of each timed run, median over `--repeats` runs of `--steps` steps), and with
`--epochs E`: the epoch time and the training time to `--target` test accuracy, mean ± std over `--seeds`.
Every row runs in its own process (`--no-isolate` to share one), one after the other, with the load average
(/proc/loadavg) recorded before and after it. Batch 128, float32, the optimizer of the model's recipe.
``--malloc keep`` (default) runs every row, whatever its framework, with glibc keeping freed memory in the
process (what ``cnnjax train`` and ``fit(keep_freed_memory=True)`` set: ``cnnjax/train/cpu_speed/host_memory.py``);
``--malloc default``
runs every row with glibc's defaults.

Rows are ``framework:model:mode``:
- ``cnnjax:M:fit``: the form ``fit(loop="auto")`` takes (the fixed rule of `cpu_speed/loop_choice.py`), with
  fit's chunk length; ``cnnjax:M:measure``: the form ``fit(loop="measure")`` picks here (it times step, scan and
  unrolled chunks first); the table shows the form, and the probe's figures go to the JSON. Every cnnjax row
  runs its step as `fit` does: on a CPU with the XLA:CPU forms swapped into the loss (`cpu_speed/swap.py`).
- ``cnnjax:M:step``: `cnnjax.train`'s jitted step, one call per batch, batch gathered on the host and put on the
  device (what ``fit(loop="step")`` does); ``scanK`` / ``unrollK``: K steps in one jitted `lax.scan`
  (``fit(loop="scan")`` with K = steps per segment) / the same scan fully unrolled (no while loop);
  a ``-dev`` suffix keeps the dataset on the device (uint8) and gathers each batch inside the jitted function.
- ``linen:M:host``: the Flax examples' loop in flax.linen (a jitted step per batch, float32 batches from the host).
- ``torch:M:eager`` / ``compile`` / ``compile-ro`` (``torch.compile(mode="reduce-overhead")``).
Models: ``mnist_cnn`` (the lecture's seed CNN, Adam 1e-3), ``flax_cnn`` (the Flax MNIST example CNN with
BatchNorm + dropout, SGD 0.1 momentum 0.9), ``flax_plain`` (without BatchNorm/dropout), ``mnist_cnn2``,
``cifar10_cnn`` (see bench_peers.py). FLOPs per image: 2 x multiply-adds of the convolutions and matrix products
in the forward pass (counted from the linen model's jaxpr), x 3 for training.

    python experiments/bench_speed.py --models mnist_cnn flax_cnn                      # steady state, CPU set
    python experiments/bench_speed.py --models flax_plain --epochs 6 --seeds 0 1 2     # + time to 99%
    python experiments/bench_speed.py --data-dir shared/data ...                       # GPU machine (no TF)
    python experiments/bench_speed.py --quick                                          # smoke run, seconds

Writes a markdown table to stdout and `--out` (.md and .json). Results and commands: experiments/SPEED.md.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _common  # noqa: E402
import bench_peers  # noqa: E402

DEFAULT_DATA = os.environ.get("CNNJAX_BENCH_DATA", os.path.join(HERE, "..", "..", "shared", "data"))
CPU_MODES = {"cnnjax": ["fit", "step", "unroll8"], "linen": ["host"], "torch": ["eager", "compile"]}
GPU_MODES = {"cnnjax": ["step-dev", "scan468-dev"], "linen": ["host"], "torch": ["eager", "compile", "compile-ro"]}
TARGETS = {"mnist": 0.99, "cifar10": 0.9066}


# --- data ------------------------------------------------------------------------------------------------------

def load_data(dataset, data_dir, synthetic=0, cache_dir=None):
    """(x_train, y_train, x_test, y_test): uint8 NHWC images and int32 labels, read with numpy / PIL only.

    `data_dir` holds ``mnist/*-idx?-ubyte.gz`` and ``cifar10-jpeg.tar.xz`` (the layout of ../shared/data).
    ``synthetic=n``: n random training images (and n // 4 test images) instead, for smoke runs.
    ``cache_dir``: keep the decoded CIFAR-10 arrays there as ``cifar10.npz`` and read them from it next time
    (decoding the JPEGs took 9.6 s on the 2-core CPU; every row's process reads the data again).
    """
    shape = bench_peers.SPECS_BY_DATASET[dataset]
    if synthetic:
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (synthetic + synthetic // 4, *shape), dtype=np.uint8)
        y = rng.integers(0, 10, len(x)).astype(np.int32)
        return x[:synthetic], y[:synthetic], x[synthetic:], y[synthetic:]
    from cnnjax.data import read_cifar10, read_idx_pair
    if dataset == "mnist":
        d = os.path.join(data_dir, "mnist")
        xtr, ytr = read_idx_pair(os.path.join(d, "train-images-idx3-ubyte.gz"),
                                 os.path.join(d, "train-labels-idx1-ubyte.gz"))
        xte, yte = read_idx_pair(os.path.join(d, "t10k-images-idx3-ubyte.gz"),
                                 os.path.join(d, "t10k-labels-idx1-ubyte.gz"))
        return xtr, ytr, xte, yte
    def decode():
        splits = read_cifar10(os.path.join(data_dir, "cifar10-jpeg.tar.xz"), progress=False)
        return (*splits["train"], *splits["test"])

    return _common.cached_arrays(os.path.join(cache_dir, "cifar10.npz"), decode) if cache_dir else decode()


# --- FLOPs and the matmul ceiling ------------------------------------------------------------------------------

def forward_flops(fn, *args):
    """2 x multiply-adds of every conv_general_dilated and dot_general in the jaxpr of fn(*args) (nested too)."""
    import jax

    def count(jaxpr):
        total = 0
        for eqn in jaxpr.eqns:
            name = eqn.primitive.name
            if name == "conv_general_dilated":
                rhs = eqn.invars[1].aval.shape
                out = eqn.outvars[0].aval.shape
                spec = eqn.params["dimension_numbers"].rhs_spec      # (out_feature, in_feature, *spatial)
                in_feat = rhs[spec[1]]
                window = int(np.prod([rhs[a] for a in spec[2:]]))
                total += 2 * int(np.prod(out)) * window * in_feat
            elif name == "dot_general":
                (lc, _), _ = eqn.params["dimension_numbers"]
                k = int(np.prod([eqn.invars[0].aval.shape[a] for a in lc]))
                total += 2 * int(np.prod(eqn.outvars[0].aval.shape)) * k
            for p in eqn.params.values():
                for sub in (p if isinstance(p, (tuple, list)) else (p,)):
                    inner = getattr(sub, "jaxpr", sub)
                    if hasattr(inner, "eqns"):
                        total += count(inner)
        return total

    return count(jax.make_jaxpr(fn)(*args).jaxpr)


def train_flops_per_image(model_name):
    """Training FLOPs per image (3 x forward) of the linen form of the model, counted at batch 1."""
    import jax
    import jax.numpy as jnp
    spec = bench_peers.SPECS[model_name]
    if spec["layers"] is None:     # a zoo model: its cnnjax form (plain lax ops)
        model = bench_peers.cnnjax_model(model_name)
    else:
        model = bench_peers.LinenSpecModel(tuple(spec["layers"]), spec["init"])
    x = jnp.zeros((1, *spec["input_shape"]), jnp.float32)
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
    return 3 * forward_flops(lambda v, x: model.apply(v, x, train=False), variables, x)


def matmul_ceiling(n=8192, repeats=10):
    """{dtype: measured TFLOP/s} of an n^3 matrix product at the default precision (median of `repeats`)."""
    import jax
    import jax.numpy as jnp
    out = {}
    for dtype in ("bfloat16", "float32"):
        a = jax.random.normal(jax.random.PRNGKey(0), (n, n), dtype)
        b = jax.random.normal(jax.random.PRNGKey(1), (n, n), dtype)
        f = jax.jit(jnp.matmul)
        f(a, b).block_until_ready()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            f(a, b).block_until_ready()
            times.append(time.perf_counter() - t)
        out[dtype] = 2 * n ** 3 / statistics.median(times) / 1e12
    return out


# --- runners: one interface for every framework ---------------------------------------------------------------

class CnnjaxRunner:
    """cnnjax.train's step / scan chunk / unrolled chunk (see the module docstring for the modes)."""

    def __init__(self, name, mode, data, batch, seed):
        import jax

        from cnnjax.train import create_state, make_eval_step, make_train_chunk, make_train_step
        from cnnjax.train.cpu_speed.compile_options import jit   # jax.jit with XLA:CPU's options on a CPU, as fit's
        self.jax, self.batch = jax, batch
        self.on_device = mode.endswith("-dev")
        form = mode[:-4] if self.on_device else mode
        spec = bench_peers.SPECS[name]
        self.model = bench_peers.cnnjax_model(name)
        self.tx = bench_peers.optimizer(spec)
        self.shape = spec["input_shape"]
        self._create = lambda s: create_state(self.model, self.tx, input_shape=self.shape,
                                              key=jax.random.PRNGKey(s))
        self.measured = None
        cpu_forms = jax.default_backend() == "cpu"      # fit's default: the XLA:CPU forms in the step on a CPU
        steps_per_epoch = len(data[0]) // batch
        if form == "fit":     # what cnnjax.train.fit(loop="auto") runs: its rule's form and chunk length
            import jax.numpy as jnp

            from cnnjax.train.cpu_speed import loop_choice
            x = jax.ShapeDtypeStruct((batch, *self.shape), jnp.float32)
            variables = jax.eval_shape(self.model.init, jax.random.PRNGKey(0), x)
            convolutions = loop_choice.xla_convolutions(lambda v, x: self.model.apply(v, x, train=False),
                                                        variables, x, cpu_forms=cpu_forms)
            form = loop_choice.rule(jax.default_backend(), convolutions)
            form = {"step": "step", "scan": f"scan{loop_choice.chunk_steps(steps_per_epoch)}",
                    "unroll": f"unroll{loop_choice.unroll_steps(steps_per_epoch)}"}[form]
            self.form = form
        elif form == "measure":     # what fit(loop="measure") runs: its measured choice and chunk length
            from cnnjax.train import make_strategy
            from cnnjax.train.cpu_speed import loop_choice
            strategy = make_strategy("none", self.model, self.tx)
            rows = lambda i: np.arange(i * batch, (i + 1) * batch) % len(data[0])   # noqa: E731
            probe = lambda i: (data[0][rows(i)], data[1][rows(i)])                 # noqa: E731
            self.measured = loop_choice.measure_loops(strategy, strategy.place_state(self._create(seed)), probe,
                                                      batch_size=batch,
                                                      unroll=loop_choice.unroll_probe(steps_per_epoch),
                                                      scan=loop_choice.chunk_steps(steps_per_epoch))
            form = loop_choice.choose(self.measured)
            form = {"step": "step", "scan": f"scan{loop_choice.chunk_steps(steps_per_epoch)}",
                    "unroll": f"unroll{loop_choice.unroll_steps(steps_per_epoch)}"}[form]
            self.form = form
        self.chunk = 1 if form == "step" else int(form.lstrip("scanunrol"))
        step = make_train_step(self.model, self.tx, cpu_forms=cpu_forms)
        if form == "step":
            body = lambda st, x, y: step(st, x, y)   # noqa: E731
        elif form.startswith("scan"):
            body = make_train_chunk(step)
        else:
            body = make_train_chunk(step, unroll=True)     # what fit(loop="unroll") runs
        self.xtr, self.ytr = data[0], data[1]
        if self.on_device:
            self.xd, self.yd = jax.device_put(self.xtr), jax.device_put(self.ytr)
            self.fn = jit(lambda st, xd, yd, idx: body(st, xd[idx], yd[idx]), donate_argnums=0)
        else:
            self.fn = jit(body, donate_argnums=0)
        self.eval_step = jit(make_eval_step(self.model, cpu_forms=cpu_forms))
        self.reset(seed)

    def reset(self, seed):
        self.state = self._create(seed)

    def call(self, order, t, k):
        rows = order[t * self.batch:(t + k) * self.batch]
        if self.chunk > 1:
            rows = rows.reshape(k, self.batch)
        if self.on_device:
            self.state, m = self.fn(self.state, self.xd, self.yd, self.jax.device_put(rows))
        else:
            x, y = self.jax.device_put(self.xtr[rows]), self.jax.device_put(self.ytr[rows])
            self.state, m = self.fn(self.state, x, y)
        return m

    def sync(self, m):
        self.jax.block_until_ready(m)

    def accuracy(self, x, y, batch=1000):
        correct = 0.0
        for i in range(0, len(x), batch):
            w = np.ones(len(x[i:i + batch]), np.float32)
            correct += float(self.eval_step(self.state, x[i:i + batch], y[i:i + batch], w)["correct"])
        return correct / len(x)


class LinenRunner:
    def __init__(self, name, mode, data, batch, seed):
        self.loop = bench_peers.LinenLoop(name, seed)
        self.xtr, self.ytr, self.batch, self.chunk, self.name = data[0], data[1], batch, 1, name

    def reset(self, seed):
        self.loop.reset(seed)

    def call(self, order, t, k):
        rows = order[t * self.batch:(t + 1) * self.batch]
        return self.loop.step(self.xtr[rows], self.ytr[rows])

    def sync(self, m):
        self.loop.sync(m)

    def accuracy(self, x, y):
        return self.loop.accuracy(x, y)


class TorchRunner:
    def __init__(self, name, mode, data, batch, seed):
        import torch
        torch.set_num_threads(os.cpu_count())
        self.args = (name, mode, data[0], data[1])
        self.loop = bench_peers.TorchLoop(*self.args, seed=seed)
        self.batch, self.chunk = batch, 1

    def reset(self, seed):
        self.loop.reset(seed)

    def call(self, order, t, k):
        return self.loop.step_at(order, t * self.batch, self.batch)

    def sync(self, m):
        self.loop.sync(m)

    def accuracy(self, x, y):
        return self.loop.accuracy(x, y)


RUNNERS = {"cnnjax": CnnjaxRunner, "linen": LinenRunner, "torch": TorchRunner}


# --- one row ---------------------------------------------------------------------------------------------------

def _loadavg():
    try:
        with open("/proc/loadavg") as f:
            return [float(v) for v in f.read().split()[:3]]
    except OSError:
        return None


def _epoch(runner, order, steps):
    """Run the steps of one epoch in chunks of runner.chunk (a shorter last chunk); return the seconds."""
    t0, t, m = time.perf_counter(), 0, None
    while t < steps:
        k = min(runner.chunk, steps - t)
        m = runner.call(order, t, k)
        t += k
    runner.sync(m)
    return time.perf_counter() - t0


def run_row(row, data, a):
    """Measure one row; returns a dict of figures (see the module docstring)."""
    fw, model, mode = row.split(":")
    out = {"row": row, "framework": fw, "model": model, "mode": mode, "batch": a.batch,
           "load_before": _loadavg()}
    compiled_torch = fw == "torch" and mode.startswith("compile")
    skips_before = _cudagraph_skips() if compiled_torch else None
    n = len(data[0])
    rng = np.random.default_rng(0)
    order = rng.permutation(n)
    t = time.perf_counter()
    runner = RUNNERS[fw](model, mode, data, a.batch, a.seeds[0])
    out["setup_s"] = time.perf_counter() - t
    if getattr(runner, "form", None):
        out["mode"] = f"{mode} -> {runner.form}"
    if getattr(runner, "measured", None):
        out["auto_probe"] = runner.measured
    k = runner.chunk
    steps_per_epoch = n // a.batch
    calls = max(1, -(-a.steps // k))
    if (calls + a.warmup + 1) * k * a.batch > n:
        order = np.concatenate([rng.permutation(n) for _ in range(-(-(calls + a.warmup + 1) * k * a.batch // n))])
    t = time.perf_counter()
    runner.sync(runner.call(order, 0, k))
    out["first_call_s"] = time.perf_counter() - t
    if a.epochs and steps_per_epoch % k:
        runner.sync(runner.call(order, 0, steps_per_epoch % k))     # compile the shorter last chunk too
    for i in range(a.warmup):
        runner.sync(runner.call(order, (1 + i) * k, k))
    rates = []
    start = (1 + a.warmup) * k
    for _ in range(a.repeats):
        t = time.perf_counter()
        m = None
        for c in range(calls):
            m = runner.call(order, start + c * k, k)
        runner.sync(m)
        rates.append(calls * k * a.batch / (time.perf_counter() - t))
    out.update(steps_per_repeat=calls * k, img_s=statistics.median(rates), img_s_repeats=rates)
    if a.epochs:
        runs = []
        target = TARGETS[bench_peers.SPECS[model]["dataset"]] if a.target is None else a.target
        for seed in a.seeds:
            runner.reset(seed)
            epochs, accs, evals = [], [], []
            for e in range(a.epochs):
                epoch_order = np.random.default_rng([seed, e]).permutation(n)
                epochs.append(_epoch(runner, epoch_order, steps_per_epoch))
                t = time.perf_counter()
                accs.append(runner.accuracy(data[2], data[3]))
                evals.append(time.perf_counter() - t)
            hit = next((i for i, acc in enumerate(accs) if acc >= target), None)
            runs.append({"seed": seed, "epoch_s": epochs, "test_acc": accs, "eval_s": evals,
                         "target": target, "epochs_to_target": None if hit is None else hit + 1,
                         "train_s_to_target": None if hit is None else sum(epochs[:hit + 1]),
                         "wall_s_to_target": None if hit is None else sum(epochs[:hit + 1]) + sum(evals[:hit + 1])})
        out["runs"] = runs
        out["epoch_s"] = statistics.median([s for r in runs for s in r["epoch_s"]])
    if compiled_torch:
        skips = _cudagraph_skips()
        out["cudagraph_skips"] = None if skips is None else skips - skips_before
    out["load_after"] = _loadavg()
    return out


def _cudagraph_skips():
    """Inductor's count of graphs (or functions) it decided to run without CUDA graphs in this process, e.g. for
    mutated inputs such as BatchNorm's running statistics, or on a CPU; it counts decisions, not steps, so one
    skip can mean that every step of a ``compile-ro`` row ran as plain ``compile``. None where this torch does not
    count them."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:
        return None
    return int(counters["inductor"]["cudagraph_skips"])


# --- orchestration and output ----------------------------------------------------------------------------------

def _version(pkg):
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info():
    import jax
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
    except OSError:
        pass
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu,
            "cpu_count": os.cpu_count(), "backend": jax.default_backend(),
            "devices": [d.device_kind for d in jax.devices()],
            "versions": {p: _version(p) for p in ("jax", "jaxlib", "flax", "optax", "numpy", "torch", "cnnjax")},
            "cnnjax_cpu_compiler_options": _cpu_options(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def _cpu_options():
    """What the cnnjax rows compile with on a CPU (``compile_options.py``), and why."""
    import jax

    from cnnjax.train.cpu_speed import compile_options
    if jax.default_backend() != "cpu":
        return {"options": None, "why": f"none on {jax.default_backend()}"}
    return {"options": compile_options.cpu_compiler_options(), "why": compile_options.reason()}


_PARENT_ONLY = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
_SET_FOR_PARENT: "set[str]" = set()      # the names of _PARENT_ONLY that main() set (a user's own setting stays)


def row_environment(malloc):
    """The environment of a row's process: with ``malloc="keep"`` glibc keeps freed memory in the process for
    *every* framework (cnnjax.train.cpu_speed.host_memory.ENVIRONMENT: what `cnnjax train` and
    fit(keep_freed_memory=True) set, here given to PyTorch and the linen loop too, so ratios compare like with
    like); ``"default"``: glibc's defaults for all, cnnjax's own setting off (CNNJAX_KEEP_FREED_MEMORY=0)."""
    from cnnjax.train.cpu_speed.host_memory import ENVIRONMENT
    env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT and k not in _SET_FOR_PARENT}
    if malloc == "keep":
        env.update(ENVIRONMENT)
    else:
        env["CNNJAX_KEEP_FREED_MEMORY"] = "0"
    return env


def _row_in_subprocess(row, argv, malloc, timeout=None):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        path = f.name
    cmd = [sys.executable, os.path.abspath(__file__), *argv, "--rows", row, "--no-isolate", "--_result", path]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=row_environment(malloc))
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        try:
            proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            pass            # a grandchild (e.g. a compile worker) still holds the pipes; it ends on its own
        os.unlink(path)
        return {"row": row, "error": [f"stopped after --row-timeout {timeout:g} s"]}
    try:
        if proc.returncode:
            return {"row": row, "error": (stderr or stdout).strip().splitlines()[-1:]}
        with open(path) as f:
            return json.load(f)["rows"][0]
    finally:
        os.unlink(path)


def _fmt(v, spec="{:,.0f}"):
    return "—" if v is None else spec.format(v)


def markdown(result):
    m = result["machine"]
    lines = [f"Machine: {m['cpu']} ({m['cpu_count']} CPUs), backend {m['backend']} {m['devices']}; "
             f"{m['platform']}; python {m['python']}; "
             + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v) + f"; {m['date']}; "
             f"malloc settings of every row: {result['settings'].get('malloc', 'default')}; cnnjax rows' XLA:CPU "
             f"options: {(m.get('cnnjax_cpu_compiler_options') or {}).get('why', 'not recorded')}.",
             f"Command: `{result['command']}`", ""]
    if result.get("ceiling"):
        lines += ["Matmul ceiling (8192^3, TFLOP/s): " + ", ".join(f"{k} {v:.0f}" for k, v in
                                                                  result["ceiling"].items()), ""]
    lines += ["| framework | model | mode | img/s (median) | runs min–max | cnnjax best / row | first call s | "
              "epoch s | TFLOP/s | to target: epochs, train s (mean ± std) | test acc (last epoch) | load before → after |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    best = {}
    for r in result["rows"]:
        if r.get("framework") == "cnnjax" and "img_s" in r:
            best[r["model"]] = max(best.get(r["model"], 0), r["img_s"])
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['row'].replace(':', ' | ')} | error: {' '.join(r['error'])[:120]} |"
                         + " |" * 9)
            continue
        flops = result["flops"].get(r["model"])
        tta, acc = "—", "—"
        if r.get("runs"):
            hits = [x for x in r["runs"] if x["train_s_to_target"] is not None]
            if hits:
                ts = [x["train_s_to_target"] for x in hits]
                es = [x["epochs_to_target"] for x in hits]
                sd = statistics.stdev(ts) if len(ts) > 1 else 0.0
                tta = (f"{statistics.mean(es):.1f}, {statistics.mean(ts):.2f} ± {sd:.2f} "
                       f"({len(hits)}/{len(r['runs'])} seeds ≥ {r['runs'][0]['target']:.2%})")
            else:
                tta = f"never ≥ {r['runs'][0]['target']:.2%} in {len(r['runs'][0]['epoch_s'])} epochs"
            accs = [x["test_acc"][-1] for x in r["runs"]]
            acc = f"{statistics.mean(accs):.2%}"
        ratio = best.get(r["model"], 0) / r["img_s"] if r["img_s"] else None
        mode = r["mode"] + (f" (inductor skipped CUDA graphs for {r['cudagraph_skips']} graph(s))"
                            if r.get("cudagraph_skips") and r["mode"] == "compile-ro" else "")
        lines.append(
            f"| {r['framework']} | {r['model']} | {mode} | {r['img_s']:,.0f} | "
            f"{min(r['img_s_repeats']):,.0f}–{max(r['img_s_repeats']):,.0f} | {_fmt(ratio, '{:.2f}x')} | "
            f"{r['first_call_s']:.2f} | {_fmt(r.get('epoch_s'), '{:.2f}')} | "
            f"{_fmt(flops and r['img_s'] * flops / 1e12, '{:.3f}')} | {tta} | {acc} | "
            f"{r['load_before'] and r['load_before'][0]} → {r['load_after'] and r['load_after'][0]} |")
    lines += ["", "FLOPs per training image (3 x forward, conv + matmul): "
              + ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in result["flops"].items())]
    return "\n".join(lines)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["mnist_cnn", "flax_cnn"], choices=sorted(bench_peers.SPECS))
    p.add_argument("--frameworks", nargs="+", default=["cnnjax", "linen", "torch"], choices=sorted(RUNNERS))
    p.add_argument("--modes", nargs="+", default=None,
                   help="cnnjax/torch modes (default: a CPU or a GPU set, see CPU_MODES / GPU_MODES)")
    p.add_argument("--rows", nargs="+", default=None, help="explicit framework:model:mode rows")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=100, help="training steps per timed run")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per row (the median is reported)")
    p.add_argument("--warmup", type=int, default=2, help="calls after the first (compile) call before timing")
    p.add_argument("--epochs", type=int, default=0, help="full epochs per seed for epoch time / time to target")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--target", type=float, default=None, help="test accuracy target (default: 99%% MNIST, "
                   "90.66%% CIFAR-10 JPEG copy)")
    p.add_argument("--data-dir", "--device-data", dest="data_dir", default=DEFAULT_DATA,
                   help="folder with mnist/*.gz and cifar10-jpeg.tar.xz (read with numpy/PIL; no tensorflow)")
    p.add_argument("--synthetic", type=int, default=0, help="use N random images instead of the data")
    p.add_argument("--cache-dir", default=None, help="keep the decoded CIFAR-10 arrays in this folder for the "
                   "next row or run")
    p.add_argument("--ceiling", action="store_true", help="measure the matmul ceiling (default: on GPU)")
    p.add_argument("--no-isolate", dest="isolate", action="store_false", help="run all rows in this process")
    p.add_argument("--row-timeout", type=float, default=None, help="stop a row's process after this many "
                   "seconds and report it as an error (the other rows go on)")
    p.add_argument("--malloc", choices=["keep", "default"], default="keep",
                   help="glibc malloc settings of every row's process: 'keep' freed memory (what cnnjax train "
                        "sets on a CPU; given to every framework), or glibc's 'default' for all (see row_environment)")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny synthetic data, few steps, in-process")
    p.add_argument("--out", default=None, help="write OUT.md and OUT.json")
    p.add_argument("--_result", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.quick:
        a.synthetic, a.steps, a.repeats, a.warmup, a.isolate = a.synthetic or 512, 4, 2, 1, False
        a.epochs = min(a.epochs, 1)
        if a.modes is None:
            a.modes = ["step", "unroll2", "scan2", "host", "eager"]
    return a


def rows_for(a, backend):
    if a.rows:
        return a.rows
    table = GPU_MODES if backend == "gpu" else CPU_MODES
    rows = []
    for model in a.models:
        for fw in a.frameworks:
            modes = table[fw] if a.modes is None else [m for m in a.modes if _mode_ok(fw, m)]
            if (fw == "torch" and _version("torch") is None) or (
                    fw == "linen" and bench_peers.SPECS[model]["layers"] is None):
                continue
            rows += [f"{fw}:{model}:{m}" for m in modes]
    return rows


def _mode_ok(fw, mode):
    if fw == "cnnjax":
        return mode.split("-")[0].rstrip("0123456789") in ("fit", "measure", "step", "scan", "unroll")
    return mode in (["host"] if fw == "linen" else ["eager", "compile", "compile-ro"])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    a = parse_args(argv)
    if a.isolate and a._result is None:
        # This process only measures the matmul ceiling and starts the rows' processes: it must not keep JAX's
        # default 75% of the GPU's memory while they run. Set before the backend starts; not passed to the rows.
        for name, value in _PARENT_ONLY.items():
            if name not in os.environ:
                os.environ[name] = value
                _SET_FOR_PARENT.add(name)
    import jax
    backend = jax.default_backend()
    if a.malloc == "keep" and not a.isolate:
        from cnnjax.train.cpu_speed.host_memory import keep_freed_memory
        keep_freed_memory()
    rows = rows_for(a, backend)
    datasets = {}

    def data_for(model):
        ds = bench_peers.SPECS[model]["dataset"]
        if ds not in datasets:
            datasets[ds] = load_data(ds, a.data_dir, a.synthetic, a.cache_dir)
        return datasets[ds]

    results = []
    result = {"machine": machine_info(), "command": "python experiments/bench_speed.py " + " ".join(argv),
              "settings": {k: v for k, v in vars(a).items() if not k.startswith("_")}, "rows": results,
              "flops": {m: train_flops_per_image(m) for m in sorted({r.split(":")[1] for r in rows})}}
    if a._result is None and (a.ceiling or backend == "gpu"):   # first: a run cut short still has it
        try:
            result["ceiling"] = matmul_ceiling(4096 if backend == "cpu" else 8192)
        except Exception as err:     # noqa: BLE001 -- the rows are still worth measuring
            result["ceiling_error"] = f"{type(err).__name__}: {err}"
        if a.out:
            _write_result(a.out, result)
    for row in rows:
        if a.isolate:
            r = _row_in_subprocess(row, [x for x in argv if x != "--quick"] if not a.quick else argv, a.malloc,
                                   a.row_timeout)
        else:
            r = run_row(row, data_for(row.split(":")[1]), a)
        results.append(r)
        if a._result is None:
            print(f"# {row}: " + (f"{r['img_s']:,.0f} img/s" if "img_s" in r else f"error {r.get('error')}"),
                  file=sys.stderr, flush=True)
            if a.out:                   # rewritten after every row: a run cut short keeps the rows it finished
                _write_result(a.out, result)
    if a._result is not None:
        with open(a._result, "w") as f:
            json.dump(result, f)
        return result
    text = markdown(result)
    print(text)
    if a.out:
        _write_result(a.out, result, text)
    return result


def _write_result(out, result, text=None):
    """``OUT.json`` (and ``OUT.md``: the table so far), each written whole to a temporary file, then renamed."""
    _common.write_whole(out + ".json", json.dumps(result, indent=1))
    _common.write_whole(out + ".md", (text or markdown(result)) + "\n")


if __name__ == "__main__":
    main()
