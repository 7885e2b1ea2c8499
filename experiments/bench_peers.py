"""The models and training loops that `bench_speed.py` compares: cnnjax, a Flax-linen per-step host loop, PyTorch.

Written for this project from public descriptions (the lecture notes' Keras models; the Flax MNIST example's
architecture as described in ../shared/anchors/RESULTS.md: conv32 3x3 SAME -> dropout 0.025 -> BatchNorm -> relu
-> avg_pool 2 -> conv64 3x3 SAME -> BatchNorm -> relu -> avg_pool 2 -> dense256 -> dropout 0.025 -> relu ->
dense10). Every framework gets the same architecture, initialiser family, optimizer, batch and float32 precision.

Model specs (``SPECS``): name -> layers, input shape, optimizer. Layer tuples:
``("conv", filters, kernel, padding)``, ``("bn",)``, ``("relu",)``, ``("dropout", rate)``, ``("maxpool", 2)``,
``("avgpool", 2)``, ``("flatten",)``, ``("dense", units)``. Convs and dense layers have biases; "glorot" or
"lecun" (normal, truncated as Flax's default) initialisers.
"""
from __future__ import annotations

import math
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

_FLAX_BODY = [("conv", 32, 3, "SAME"), ("dropout", 0.025), ("bn",), ("relu",), ("avgpool", 2),
              ("conv", 64, 3, "SAME"), ("bn",), ("relu",), ("avgpool", 2), ("flatten",), ("dense", 256),
              ("dropout", 0.025), ("relu",), ("dense", 10)]
SPECS = {
    "mnist_cnn": dict(layers=[("conv", 32, 3, "VALID"), ("relu",), ("maxpool", 2), ("flatten",), ("dense", 128),
                              ("relu",), ("dense", 10)],
                      input_shape=(28, 28, 1), dataset="mnist", init="glorot", optimizer=("adam", 1e-3)),
    "mnist_cnn2": dict(layers=[("conv", 32, 3, "VALID"), ("relu",), ("maxpool", 2), ("conv", 64, 3, "VALID"),
                               ("relu",), ("avgpool", 2), ("flatten",), ("dense", 64), ("relu",), ("dense", 10)],
                       input_shape=(28, 28, 1), dataset="mnist", init="glorot", optimizer=("adam", 1e-3)),
    "cifar10_cnn": dict(layers=[("conv", 32, 3, "VALID"), ("relu",), ("maxpool", 2), ("dropout", 0.25),
                                ("flatten",), ("dense", 512), ("relu",), ("dropout", 0.5), ("dense", 10)],
                        input_shape=(32, 32, 3), dataset="cifar10", init="glorot", optimizer=("adam", 1e-3)),
    "flax_cnn": dict(layers=_FLAX_BODY, input_shape=(28, 28, 1), dataset="mnist", init="lecun",
                     optimizer=("sgd", 0.1)),
    "flax_plain": dict(layers=[l for l in _FLAX_BODY if l[0] not in ("bn", "dropout")], input_shape=(28, 28, 1),
                       dataset="mnist", init="lecun", optimizer=("sgd", 0.1)),
    # The zoo's ResNet-20 (cnnjax.models.resnet; layers=None: no linen spec): He et al.'s CIFAR-10 net, option-A
    # shortcuts, BN momentum 0.9, SGD 0.1 momentum 0.9. Its torch peer is torch_resnet20().
    "resnet20": dict(layers=None, input_shape=(32, 32, 3), dataset="cifar10", init="he", optimizer=("sgd", 0.1)),
}
SPECS_BY_DATASET = {"mnist": (28, 28, 1), "cifar10": (32, 32, 3)}
BN_MOMENTUM, BN_EPSILON, SGD_MOMENTUM = 0.99, 1e-5, 0.9


def optimizer(spec):
    """The optax optimizer of a spec: Adam(lr) or SGD(lr, momentum 0.9)."""
    kind, lr = spec["optimizer"]
    return optax.adam(lr) if kind == "adam" else optax.sgd(lr, momentum=SGD_MOMENTUM)


def _init(kind):
    return nn.initializers.glorot_uniform() if kind == "glorot" else nn.initializers.lecun_normal()


# --- cnnjax ----------------------------------------------------------------------------------------------------

class CnnjaxSpecModel(nn.Module):
    """A spec built from cnnjax.layers (for the models the zoo does not hold, e.g. the Flax example CNN)."""
    layers: tuple
    init_kind: str = "lecun"

    @nn.compact
    def __call__(self, x, train: bool = False):
        from cnnjax import layers as L
        for layer in self.layers:
            kind = layer[0]
            if kind == "conv":
                x = L.Conv2D(layer[1], layer[2], padding=layer[3].lower(), kernel_init=_init(self.init_kind))(x)
            elif kind == "dense":
                x = L.Dense(layer[1], kernel_init=_init(self.init_kind))(x)
            elif kind == "bn":
                x = L.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON)(x, train=train)
            elif kind == "relu":
                x = jax.nn.relu(x)
            elif kind == "dropout":
                x = L.Dropout(layer[1])(x, train=train)
            elif kind == "maxpool":
                x = L.MaxPooling2D(layer[1])(x)
            elif kind == "avgpool":
                x = L.AveragePooling2D(layer[1])(x)
            elif kind == "flatten":
                x = L.Flatten()(x)
        return x


def cnnjax_model(name):
    """The cnnjax model for `name`: the zoo's model where it has one, else the spec built from cnnjax.layers."""
    from cnnjax import models
    if name in models.names():
        return models.get(name)
    return CnnjaxSpecModel(tuple(SPECS[name]["layers"]), SPECS[name]["init"])


# --- Flax linen, the Flax examples' own style ------------------------------------------------------------------

class LinenSpecModel(nn.Module):
    """The spec in plain flax.linen (nn.Conv, nn.BatchNorm, nn.Dropout, nn.avg_pool/max_pool, nn.Dense)."""
    layers: tuple
    init_kind: str = "lecun"

    @nn.compact
    def __call__(self, x, train: bool = False):
        for layer in self.layers:
            kind = layer[0]
            if kind == "conv":
                x = nn.Conv(layer[1], (layer[2], layer[2]), padding=layer[3], kernel_init=_init(self.init_kind))(x)
            elif kind == "dense":
                x = nn.Dense(layer[1], kernel_init=_init(self.init_kind))(x)
            elif kind == "bn":
                x = nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON)(x)
            elif kind == "relu":
                x = nn.relu(x)
            elif kind == "dropout":
                x = nn.Dropout(layer[1], deterministic=not train)(x)
            elif kind == "maxpool":
                x = nn.max_pool(x, (layer[1], layer[1]), strides=(layer[1], layer[1]))
            elif kind == "avgpool":
                x = nn.avg_pool(x, (layer[1], layer[1]), strides=(layer[1], layer[1]))
            elif kind == "flatten":
                x = x.reshape((x.shape[0], -1))
        return x


class LinenLoop:
    """The Flax (linen) examples' loop: a jitted ``train_step(state, images, labels, key)`` per batch, fed float32
    numpy batches from the host (``x / 255``), returning the loss and accuracy of the batch."""

    def __init__(self, name, seed=0):
        if SPECS[name]["layers"] is None:
            raise ValueError(f"LinenLoop: {name} has no flax.linen spec here (its cnnjax form is the zoo's "
                             "model); compare it with cnnjax and torch rows only.")
        spec = SPECS[name]
        self.model = LinenSpecModel(tuple(spec["layers"]), spec["init"])
        self.tx = optimizer(spec)
        self.input_shape = spec["input_shape"]
        self._step = jax.jit(self._train_step)
        self._eval = jax.jit(self._eval_logits)
        self.reset(seed)

    def reset(self, seed):
        """Fresh parameters, optimizer state and dropout key from `seed` (the compiled step is kept)."""
        variables = jax.jit(partial(self.model.init, train=False))(
            jax.random.PRNGKey(seed), jnp.zeros((1, *self.input_shape), jnp.float32))
        self.params, self.stats = variables["params"], variables.get("batch_stats", {})
        self.opt_state = self.tx.init(self.params)
        self.key = jax.random.PRNGKey(seed + 1)
        self.n = 0

    def _train_step(self, params, stats, opt_state, images, labels, key):
        def loss_fn(p):
            v = {"params": p, "batch_stats": stats} if stats else {"params": p}
            out = self.model.apply(v, images, train=True, rngs={"dropout": key},
                                   mutable=["batch_stats"] if stats else False)
            logits, new = out if stats else (out, {"batch_stats": stats})
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
            return loss, (logits, new["batch_stats"])
        (loss, (logits, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = self.tx.update(grads, opt_state, params)
        acc = jnp.mean(jnp.argmax(logits, -1) == labels)
        return optax.apply_updates(params, updates), new_stats, opt_state, {"loss": loss, "accuracy": acc}

    def _eval_logits(self, params, stats, images):
        v = {"params": params, "batch_stats": stats} if stats else {"params": params}
        return self.model.apply(v, images, train=False)

    def step(self, images_u8, labels):
        """One training step on a host batch (uint8 NHWC numpy); returns the metrics (device arrays)."""
        x = images_u8.astype(np.float32) / np.float32(255.0)
        key = jax.random.fold_in(self.key, self.n)
        self.n += 1
        self.params, self.stats, self.opt_state, m = self._step(self.params, self.stats, self.opt_state, x,
                                                                 labels.astype(np.int32), key)
        return m

    def sync(self, m):
        jax.block_until_ready(m)

    def accuracy(self, images_u8, labels, batch=1000):
        correct = 0
        for i in range(0, len(images_u8), batch):
            x = images_u8[i:i + batch].astype(np.float32) / np.float32(255.0)
            correct += int(jnp.sum(jnp.argmax(self._eval(self.params, self.stats, x), -1) == labels[i:i + batch]))
        return correct / len(images_u8)


# --- PyTorch ----------------------------------------------------------------------------------------------------

def torch_resnet20():
    """ResNet-20 (He et al. 2016, CIFAR-10) in PyTorch, the same network as ``cnnjax.models.resnet20``: 3x3
    convs without bias + BatchNorm (momentum 0.9, eps 1e-5) + ReLU, three stages of 3 basic blocks (16, 32, 64
    filters; stride 2 at the first block of stages 2 and 3), option-A shortcuts (subsample, zero-pad channels),
    global average pooling, Dense 10; He-normal kernels. Same parameter count (269,722) and FLOPs; the only
    difference is where a stride-2 3x3 conv pads (PyTorch 1 on each side, TensorFlow's SAME 0 before and 1
    after), which moves the sampled grid by a pixel and changes no cost."""
    import torch
    from torch import nn as tnn

    class Block(tnn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.conv1 = tnn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(c_out, momentum=0.1, eps=1e-5)
            self.conv2 = tnn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(c_out, momentum=0.1, eps=1e-5)
            self.stride, self.extra = stride, c_out - c_in

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            if self.stride > 1 or self.extra:
                x = tnn.functional.pad(x[:, :, ::self.stride, ::self.stride],
                                       (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
            return torch.relu(y + x)

    layers = [tnn.Conv2d(3, 16, 3, 1, 1, bias=False), tnn.BatchNorm2d(16, momentum=0.1, eps=1e-5), tnn.ReLU()]
    c = 16
    for stage, width in enumerate((16, 32, 64)):
        for block in range(3):
            layers.append(Block(c, width, 2 if stage > 0 and block == 0 else 1))
            c = width
    layers += [tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(64, 10)]
    model = tnn.Sequential(*layers)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, tnn.Conv2d):
                tnn.init.trunc_normal_(m.weight, std=1.0, a=-2.0, b=2.0)   # He normal as Flax: truncated
                m.weight.mul_(math.sqrt(2.0 / m.weight[0].numel()) / 0.87962566103423978)
            elif isinstance(m, tnn.Linear):
                tnn.init.xavier_uniform_(m.weight)
                tnn.init.zeros_(m.bias)
    return model


def torch_model(name):
    """The spec as a torch.nn.Sequential (NCHW), initialised like the Flax/cnnjax models."""
    import torch
    from torch import nn as tnn
    if name == "resnet20":
        return torch_resnet20()
    spec = SPECS[name]
    h, w, c = spec["input_shape"]
    mods = []
    shape = (c, h, w)
    for layer in spec["layers"]:
        kind = layer[0]
        if kind == "conv":
            pad = "same" if layer[3] == "SAME" else 0
            mods.append(tnn.Conv2d(shape[0], layer[1], layer[2], padding=pad))
            k = layer[2]
            shape = (layer[1], shape[1] if pad else shape[1] - k + 1, shape[2] if pad else shape[2] - k + 1)
        elif kind == "dense":
            mods.append(tnn.Linear(int(np.prod(shape)), layer[1]))
            shape = (layer[1],)
        elif kind == "bn":
            mods.append(tnn.BatchNorm2d(shape[0], momentum=1 - BN_MOMENTUM, eps=BN_EPSILON))
        elif kind == "relu":
            mods.append(tnn.ReLU())
        elif kind == "dropout":
            mods.append(tnn.Dropout(layer[1]))
        elif kind in ("maxpool", "avgpool"):
            mods.append((tnn.MaxPool2d if kind == "maxpool" else tnn.AvgPool2d)(layer[1]))
            shape = (shape[0], shape[1] // layer[1], shape[2] // layer[1])
        elif kind == "flatten":
            mods.append(tnn.Flatten())    # NCHW order: a permutation of the dense rows, same FLOPs
            shape = (int(np.prod(shape)),)
    model = tnn.Sequential(*mods)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (tnn.Conv2d, tnn.Linear)):
                fan_in = m.weight[0].numel()
                fan_out = m.weight.shape[0] * (m.weight[0, 0].numel() if m.weight.dim() == 4 else 1)
                if spec["init"] == "glorot":
                    bound = math.sqrt(6.0 / (fan_in + fan_out))
                    tnn.init.uniform_(m.weight, -bound, bound)
                else:   # lecun normal: truncated normal with variance 1 / fan_in, as Flax
                    tnn.init.trunc_normal_(m.weight, std=1.0, a=-2.0, b=2.0)
                    m.weight.mul_(math.sqrt(1.0 / fan_in) / 0.87962566103423978)
                tnn.init.zeros_(m.bias)
    return model


class TorchLoop:
    """PyTorch training: data as a uint8 NCHW tensor on the device, batches by index, ``x / 255`` in float32,
    cross-entropy, ``zero_grad(set_to_none=True)``, ``backward``, optimizer step; on CUDA float32 matmuls and
    convs in TF32, as JAX's default precision computes them there. ``config``: "eager",
    "compile" (``torch.compile(model)``) or "compile-ro" (``mode="reduce-overhead"``, CUDA graphs on GPU)."""

    def __init__(self, name, config, images_u8, labels, seed=0):
        import torch
        self.torch = torch
        torch.manual_seed(seed)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.device == "cuda":
            torch.backends.cudnn.benchmark = True
            # The same precision as the JAX rows: JAX's default lets XLA compute float32 matmuls and convs in
            # TF32 on recent GPUs; torch uses TF32 for cuDNN convs by default but not for matmuls.
            torch.backends.cudnn.allow_tf32 = True
            torch.set_float32_matmul_precision("high")
        self.name = name
        self.model = torch_model(name).to(self.device)
        self._new_optimizer()
        self.forward = self.model
        if config == "compile":
            self.forward = torch.compile(self.model)
        elif config == "compile-ro":
            self.forward = torch.compile(self.model, mode="reduce-overhead")
        self.x = torch.from_numpy(np.ascontiguousarray(images_u8.transpose(0, 3, 1, 2))).to(self.device)
        self.y = torch.from_numpy(labels.astype(np.int64)).to(self.device)

    def _new_optimizer(self):
        kind, lr = SPECS[self.name]["optimizer"]
        params = self.model.parameters()
        self.opt = (self.torch.optim.Adam(params, lr=lr) if kind == "adam"
                    else self.torch.optim.SGD(params, lr=lr, momentum=SGD_MOMENTUM))

    def reset(self, seed):
        """Fresh weights (copied in place, so a compiled model stays compiled) and optimizer from `seed`."""
        self.torch.manual_seed(seed)
        self.model.load_state_dict(torch_model(self.name).state_dict())
        self._new_optimizer()

    def step_at(self, order, start, batch):
        """One step on the rows ``order[start:start + batch]``. ``order`` (a numpy index array) goes to the device
        the first time it is seen and is sliced there, so a step copies nothing from the host: a copy from
        pageable host memory would wait for the GPU to finish the previous step, losing the overlap of host and
        device that CUDA graphs and asynchronous launches give."""
        if getattr(self, "_order", None) is not order:
            self._order = order
            self._order_dev = self.torch.from_numpy(np.ascontiguousarray(order)).to(self.device)
        return self._step(self._order_dev[start:start + batch])

    def _step(self, idx):
        torch = self.torch
        self.model.train()
        x = self.x[idx].float() / 255.0
        logits = self.forward(x)
        loss = torch.nn.functional.cross_entropy(logits, self.y[idx])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss

    def sync(self, _=None):
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def accuracy(self, images_u8, labels, batch=1000):
        torch = self.torch
        self.model.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(images_u8), batch):
                x = torch.from_numpy(np.ascontiguousarray(images_u8[i:i + batch].transpose(0, 3, 1, 2)))
                logits = self.model(x.to(self.device).float() / 255.0)
                correct += int((logits.argmax(-1).cpu().numpy() == labels[i:i + batch]).sum())
        return correct / len(images_u8)
