"""The model zoo: the lecture's Keras models, LeNet-5, CIFAR ResNets and VGGs, all Flax linen Modules.

Every model is called as ``model.apply(variables, x, train=False)`` on NHWC inputs and returns float32 logits
(the final softmax is left to the loss). Dropout draws from the ``"dropout"`` rng stream when ``train=True``;
BatchNormalization keeps its running statistics in ``"batch_stats"`` (pass ``mutable=["batch_stats"]`` when
training). ``dtype`` sets the computation dtype (e.g. ``jnp.bfloat16``), parameters stay float32.

>>> model = cnnjax.models.get("mnist_cnn")
>>> cnnjax.models.names(), cnnjax.models.input_shape("mnist_cnn")
"""
from cnnjax.models.lecture import SimpleCNN, cifar10_cnn, fashion_cnn, fashion_dnn, mnist_cnn, mnist_cnn2
from cnnjax.models.lenet import LeNet5
from cnnjax.models.registry import ModelInfo, dataset, get, info, input_shape, names, register
from cnnjax.models.resnet import ResidualBlock, ResNet, resnet18, resnet20, resnet32, resnet44, resnet56, resnet110
from cnnjax.models.airbench import SpeedrunNet, speedrun, whitening_kernel
from cnnjax.models.vgg import VGG, vgg11, vgg13, vgg16, vgg19

__all__ = [
    "get", "names", "info", "input_shape", "dataset", "register", "ModelInfo",
    "SimpleCNN", "mnist_cnn", "mnist_cnn2", "cifar10_cnn", "fashion_dnn", "fashion_cnn", "LeNet5",
    "SpeedrunNet", "speedrun", "whitening_kernel",
    "ResNet", "ResidualBlock", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet18",
    "VGG", "vgg11", "vgg13", "vgg16", "vgg19",
]
