"""Flax NNX models in cnnjax's linen-based machinery (``fit``, ``evaluate``, ``predict``, ``summary``, checkpoints,
``viz``): :func:`as_linen`, :func:`linen_variables`, :func:`update`.

``as_linen(model)`` returns a ``flax.linen`` Module (a linen module is returned as it is) that holds a snapshot of
the NNX module (``nnx.split``: its graph and its variables as they are now):

- ``init(key, x, train=False)`` returns the snapshot's variables, whatever the key: ``{"params": ...}`` from the
  ``nnx.Param`` variables, ``{"batch_stats": ...}`` from the ``nnx.BatchStat`` ones (other NNX variables, e.g. rng
  counters, stay constants of the snapshot). So ``fit(as_linen(model), ...)`` trains from the NNX model's weights
  (its ``seed`` only drives dropout and the data order), and every member of an ensemble starts from them.
- ``apply(variables, x, train=...)`` rebuilds the NNX module (``nnx.merge``), writes the given variables into it
  and runs the NNX module's own ``__call__`` (with ``train=`` where it takes one, after ``model.train()`` /
  ``model.eval()``); with ``mutable=["batch_stats"]`` it returns the statistics its BatchNormalization layers
  moved to.

Each call of a cnnjax NNX layer (:mod:`cnnjax.nnx.layers`, whose ``__call__`` is routed) runs inside a linen
submodule of its own, named after the layer's attribute path, so linen's tools see one module per layer:
``summary`` gets its rows (and, for the layers with a linen twin, its formulas), ``viz.layer_outputs`` its
feature maps, and a dropout layer draws its key from linen's ``"dropout"`` stream at its own path, exactly as the
linen layer at that path would. Variable paths: a variable at NNX path ``(a, b, ..., name)`` sits at the same
path in the linen variables, except that the path to a routed layer inside a container (``layers/0``) is joined
with ``_`` (``layers_0``). The zoo models of :mod:`cnnjax.nnx.models` name their layers as the linen zoo's
(``Conv2D_0``, ``Dense_1``, ...; ``layers_i`` in a Sequential), so both have the same variable trees: the same
checkpoints, the same summaries. Other NNX modules (``nnx.Linear``, ...) run inside the routed module that owns
them; their variables are that module's.

``update(model, state)`` writes trained variables (a ``TrainState`` or ``{"params", "batch_stats"}``) back into the
NNX module; ``linen_variables(model)`` reads them out in the linen layout.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Dict, List, Tuple

import flax.errors
import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from cnnjax import shapes
from cnnjax.layers.sequential import takes_train
from cnnjax.nnx import _route

__all__ = ["as_linen", "linen_variables", "update", "is_nnx", "NNXModel"]

_COLLECTIONS = ((nnx.BatchStat, "batch_stats"), (nnx.Param, "params"))


def is_nnx(obj: Any) -> bool:
    """Whether ``obj`` is a Flax NNX Module instance."""
    return isinstance(obj, nnx.Module)


def _collection(variable) -> str | None:
    for kind, name in _COLLECTIONS:
        if isinstance(variable, kind):
            return name
    return None


class _Plan:
    """Where everything sits in one NNX module graph: module paths, routed layers, and which routed layer owns
    each Param/BatchStat (its nearest routed ancestor; ``()`` is the root)."""

    def __init__(self, root):
        self.module_path: Dict[int, tuple] = {}
        self.routed = set()
        self.variables: List[Tuple[tuple, Any, str]] = []
        self.streams = set()
        self.dtyped = []
        for path, node in nnx.iter_graph(root):
            if isinstance(node, nnx.Variable):
                collection = _collection(node)
                if collection is not None:
                    self.variables.append((tuple(path), node, collection))
            elif isinstance(node, nnx.RngStream):
                self.streams.add(node.tag)
            elif isinstance(node, nnx.Module):
                self.module_path.setdefault(id(node), tuple(path))
                if path and _route.is_routed(node):
                    self.routed.add(tuple(path))
                if hasattr(node, "dtype"):
                    self.dtyped.append(node)
        self.owned: Dict[tuple, list] = {}
        for path, variable, collection in self.variables:
            owner = self.owner(path)
            self.owned.setdefault(owner, []).append((tuple(str(k) for k in path[len(owner):]), variable, collection))

    def owner(self, path: tuple) -> tuple:
        """The path of the nearest routed proper ancestor of ``path`` (``()``: the root)."""
        for i in range(len(path) - 1, 0, -1):
            if path[:i] in self.routed:
                return path[:i]
        return ()

    def linen_path(self, path: tuple) -> Tuple[str, ...]:
        """The path of the variable at NNX ``path`` in the linen variables (see the module docstring)."""
        out, previous = [], ()
        for i in range(1, len(path)):
            if path[:i] in self.routed:
                out.append("_".join(str(k) for k in path[len(previous):i]))
                previous = path[:i]
        return tuple(out) + tuple(str(k) for k in path[len(previous):])


def _nest(items):
    """``[(path, value)]`` as a nested dict; a single item with an empty path is the bare value."""
    if len(items) == 1 and not items[0][0]:
        return items[0][1]
    out: Dict[str, Any] = {}
    for path, leaf in items:
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = leaf
    return out


def _lookup(tree, path):
    for key in path:
        if not isinstance(tree, Mapping) or key not in tree:
            return None
        tree = tree[key]
    return tree


def _check_shape(where: str, given, variable) -> None:
    if tuple(jnp.shape(given)) != tuple(variable.shape):
        hint = (" (a leading axis: an ensemble's state? take one member with cnnjax.train.member(state, i))"
                if tuple(jnp.shape(given))[1:] == tuple(variable.shape) else "")
        raise ValueError(f"{where} has shape {tuple(jnp.shape(given))}, but the NNX model's variable there has shape "
                         f"{tuple(variable.shape)}{hint}; variables of another model or input shape?")


class _Router:
    """Runs routed layer calls inside linen submodules (one per layer, created in the calling module's scope)."""

    def __init__(self, plan: _Plan):
        self.plan = plan
        self.stack: List[Tuple[nn.Module, tuple]] = []
        self.shims: Dict[Tuple[int, int], nn.Module] = {}

    def call(self, module, fn, args, kwargs):
        parent, parent_path = self.stack[-1]
        path = self.plan.module_path.get(id(module))
        if path is None or path == parent_path:
            return fn(module, *args, **kwargs)      # the module running now, or one outside the model's graph
        if self.plan.owner(path) != parent_path:
            raise ValueError(f"as_linen: layer {'/'.join(map(str, path))} ({type(module).__name__}) is called by "
                             f"{'/'.join(map(str, parent_path)) or 'the model'}, not by the layer that holds it; "
                             "the linen view runs each layer inside its owner (call layers from the module that "
                             "holds them).")
        key = (id(parent), id(module))
        shim = self.shims.get(key)
        if shim is None:
            cls = _shim_class(type(module))
            twin = {name: getattr(module, name) for name in _twin_fields(cls) if hasattr(module, name)}
            shim = cls(**twin, router=self, target=module, nnx_path=path, fn=fn,
                       name="_".join(str(k) for k in path[len(parent_path):]))
            self.shims[key] = shim
        return shim(*args, **kwargs)

    def run(self, linen_module: nn.Module, path: tuple, call):
        """Declare the variables ``path`` owns in ``linen_module``, write them into the NNX variables, run ``call``
        and, where batch_stats are mutable (not at init), store the statistics it moved."""
        stats = []
        for collection in ("params", "batch_stats"):
            groups: Dict[str, list] = {}
            for tail, variable, kind in self.plan.owned.get(path, []):
                if kind == collection:
                    groups.setdefault(tail[0], []).append((tail[1:], variable))
            for name, items in groups.items():
                initial = _nest([(rest, variable.get_value()) for rest, variable in items])
                if collection == "params":
                    given = linen_module.param(name, lambda _key, v=initial: v)
                else:
                    ref = linen_module.variable(collection, name, lambda v=initial: v)
                    given = ref.value
                    stats.append((ref, items))
                for rest, variable in items:
                    leaf = _lookup({name: given}, (name, *rest))
                    where = f"as_linen: {collection} {'/'.join((*linen_module.scope.path, name, *rest))}"
                    if leaf is None:
                        raise ValueError(f"{where} is missing from the variables given to apply.")
                    _check_shape(where, leaf, variable)
                    variable.set_value(leaf)
        self.stack.append((linen_module, path))
        try:
            out = call()
        finally:
            self.stack.pop()
        if stats and linen_module.is_mutable_collection("batch_stats") and not linen_module.is_initializing():
            for ref, items in stats:
                ref.value = _nest([(rest, variable.get_value()) for rest, variable in items])
        return out

    def dropout_key(self, layer: str):
        module = self.stack[-1][0]
        try:
            return module.make_rng("dropout")
        except flax.errors.InvalidRngError:
            raise ValueError(f"{layer} {'/'.join(module.scope.path)}: training needs a dropout key; call apply(..., "
                             "train=True, rngs={'dropout': key}).") from None


class _LayerCall(nn.Module):
    """The linen submodule one routed NNX layer runs in (see :class:`_Router`)."""

    router: Any = None
    target: Any = None
    nnx_path: Any = ()
    fn: Any = None

    @nn.compact
    def __call__(self, *args, **kwargs):
        return self.router.run(self, self.nnx_path, lambda: self.fn(self.target, *args, **kwargs))


_SHIMS: Dict[type, type] = {}
_VIEWS: Dict[type, type] = {}


def _shim_class(nnx_class: type) -> type:
    """A :class:`_LayerCall` subclass named after ``nnx_class`` (so summaries name the layer type), also a subclass
    of the layer's linen twin where it has one (``linen_twin``), so the summary's formulas know its geometry."""
    if nnx_class not in _SHIMS:
        twin = getattr(nnx_class, "linen_twin", None)
        bases = (_LayerCall,) if twin is None else (_LayerCall, twin)
        _SHIMS[nnx_class] = type(nnx_class.__name__, bases, {"__module__": __name__})
    return _SHIMS[nnx_class]


def _twin_fields(cls: type) -> List[str]:
    twin = [b for b in cls.__mro__[1:] if b is not _LayerCall and issubclass(b, nn.Module) and b is not nn.Module]
    if not twin:
        return []
    own = {"router", "target", "nnx_path", "fn", "parent", "name"}
    return [f for f in twin[0].__dataclass_fields__ if f not in own and twin[0].__dataclass_fields__[f].init]


class NNXModel(nn.Module):
    """The linen view of an NNX module (made by :func:`as_linen`; see the module docstring).

    ``dtype``: the computation dtype set on every NNX layer with a ``dtype`` attribute before the call (``fit(...,
    dtype="bfloat16")`` clones the view with it); None leaves the layers as built. ``softmax``: whether the NNX
    model visibly ends in a softmax (``fit`` warns then: its loss takes logits).
    """

    snapshot: Any = None
    dtype: Any = None
    softmax: bool = False

    @nn.compact
    def __call__(self, x, train: bool = False):
        label = type(self).__name__
        train = shapes.check_flag(train, "train", label)
        graphdef, state = self.snapshot
        model = nnx.merge(graphdef, state, copy=True)  # fresh Variables in this trace: this call's writes stay here
        plan = _Plan(model)
        if self.dtype is not None:
            if not plan.dtyped:
                raise ValueError(f"{label}: dtype={self.dtype!r} needs NNX layers with a dtype attribute; this model "
                                 "has none.")
            for module in plan.dtyped:
                module.dtype = self.dtype
        if train:
            model.train()
            if plan.streams:                           # NNX rng streams of other layers: fresh keys every step
                key = self.make_rng("dropout")
                nnx.reseed(model, **{tag: jax.random.fold_in(key, i) for i, tag in enumerate(sorted(plan.streams))})
        else:
            model.eval()
        router = _Router(plan)
        with _route.active(router):
            if takes_train(model):
                return router.run(self, (), lambda: model(x, train=train))
            return router.run(self, (), lambda: model(x))


def _view_class(nnx_class: type) -> type:
    """An :class:`NNXModel` subclass named after ``nnx_class``: summaries title it, warnings name it, as for linen."""
    if nnx_class not in _VIEWS:
        _VIEWS[nnx_class] = type(nnx_class.__name__, (NNXModel,), {"__module__": __name__})
    return _VIEWS[nnx_class]


def _ends_in_softmax(model) -> bool:
    soft = getattr(model, "softmax", None)
    if isinstance(soft, bool):
        return soft
    layers = getattr(model, "layers", None)
    last = layers[-1] if isinstance(layers, (list, tuple)) and layers else None
    if last is None:
        return False
    act = getattr(last, "activation", last)
    return act is jax.nn.softmax or (isinstance(act, str) and act.lower() == "softmax")


class _Snapshot:
    """``nnx.split(model)``'s graph and state as one opaque value (linen leaves a field of this type as it is)."""

    def __init__(self, model):
        graphdef, state = nnx.split(model)          # split shares the model's Variable objects ...
        self.graphdef, self.state = graphdef, jax.tree.map(lambda a: a, state)    # ... these are new ones

    def __iter__(self):
        return iter((self.graphdef, self.state))


def as_linen(model: Any) -> nn.Module:
    """The linen view of an NNX ``model`` (:class:`NNXModel`, named after the model's class); a linen Module is
    returned unchanged, so ``model = as_linen(model)`` may open any entry point. TypeError for anything else."""
    if isinstance(model, nn.Module):
        return model
    if not is_nnx(model):
        raise TypeError(f"as_linen: model must be a Flax NNX Module (or a linen Module), got "
                        f"{type(model).__name__}.")
    return _view_class(type(model))(snapshot=_Snapshot(model), softmax=_ends_in_softmax(model))


def linen_variables(model: Any) -> Dict[str, Any]:
    """The NNX ``model``'s variables in the linen layout (what ``as_linen(model).init`` returns): ``{"params":
    ..., "batch_stats": ...}`` (``batch_stats`` only where the model has some)."""
    if not is_nnx(model):
        raise TypeError(f"linen_variables: model must be a Flax NNX Module, got {type(model).__name__}.")
    plan = _Plan(model)
    out: Dict[str, Any] = {}
    for collection in ("params", "batch_stats"):
        items = [(plan.linen_path(path), variable.get_value()) for path, variable, kind in plan.variables
                 if kind == collection]
        if items or collection == "params":
            out[collection] = _nest(items) if items else {}
    return out


def _flat(tree, prefix=()) -> List[tuple]:
    if isinstance(tree, Mapping):
        return [item for key, sub in tree.items() for item in _flat(sub, (*prefix, str(key)))]
    return [prefix]


def update(model: Any, variables: Any) -> Any:
    """Writes ``variables`` into the NNX ``model`` in place and returns it: a ``TrainState`` (its ``params`` and
    ``batch_stats``, e.g. from ``fit(as_linen(model), ...)`` or a checkpoint) or a dict ``{"params": ...,
    "batch_stats": ...}`` in the linen layout (:func:`linen_variables`).

    Every Param and BatchStat of the model must be given, with its shape (a dtype of the same kind is cast to
    the variable's); ValueError naming the path where one is missing, has another shape, or where the given
    variables hold one the model has not (variables of another model).
    """
    if not is_nnx(model):
        raise TypeError(f"update: model must be a Flax NNX Module, got {type(model).__name__}.")
    if hasattr(variables, "params"):
        trees = {"params": variables.params, "batch_stats": getattr(variables, "batch_stats", None) or {}}
    elif isinstance(variables, Mapping) and "params" in variables:
        trees = {"params": variables["params"], "batch_stats": variables.get("batch_stats") or {}}
    else:
        raise TypeError(f"update: variables must be a TrainState or a dict with a 'params' entry, got "
                        f"{type(variables).__name__}.")
    plan = _Plan(model)
    expected, writes = set(), []
    for path, variable, collection in plan.variables:
        where = plan.linen_path(path)
        expected.add((collection, where))
        given = _lookup(trees[collection], where)
        label = f"update: {collection} {'/'.join(where)}"
        if given is None:
            raise ValueError(f"{label} is missing from the variables given (variables of another model?).")
        _check_shape(label, given, variable)
        given = jnp.asarray(given)
        if given.dtype != variable.dtype:
            if jnp.issubdtype(given.dtype, jnp.floating) != jnp.issubdtype(variable.dtype, jnp.floating):
                raise TypeError(f"{label} has dtype {given.dtype}, the model's variable {variable.dtype}.")
            given = given.astype(variable.dtype)
        writes.append((variable, given))
    extra = [f"{collection} {'/'.join(path)}" for collection in ("params", "batch_stats")
             for path in _flat(trees[collection]) if path and (collection, path) not in expected]
    if extra:
        raise ValueError(f"update: the variables given hold {', '.join(extra[:4])}{' ...' if len(extra) > 4 else ''}, "
                         "which the NNX model has not (variables of another model?).")
    for variable, given in writes:         # all checked first: a refused update leaves the model as it was
        variable.set_value(given)
    return model
