"""Where TensorFlow's CPU kernels are known to disagree with the definition, so comparisons against them skip it.

Found with TensorFlow 2.21 (``tests/test_conv.py::test_tensorflow_conv3d_same_bug`` holds the smallest case and
skips itself once a TensorFlow release gets it right). TensorFlow's 1- and 2-D convolutions and its max/avg
pooling showed no such errors: 3-D SAME pooling with strides was right in 3,000 random configurations of
``strategies.pool_configs`` (which never draws an input narrower than its window) and in a sweep of small
shapes that does (inputs up to 5x5x3, windows up to 3 wide, strides 1-3).
"""
from __future__ import annotations

from typing import Sequence

__all__ = ["conv3d_same_may_be_wrong"]


def conv3d_same_may_be_wrong(spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int]) -> bool:
    """True where ``tf.nn.conv3d(..., padding="SAME")`` on CPU can give wrong values (TensorFlow 2.21).

    ``spatial`` is the input's (depth, height, width), ``kernel`` the kernel's and ``strides`` the strides. The
    class: an axis with a stride above 1 on which the input is narrower than the kernel or the stride is larger
    than the kernel. Every wrong case found was in it, and most cases in it are right:
    - a sweep of small shapes (inputs up to 5x5x3, one channel, 1-3 wide kernels, strides 1-3): 324 of the
      11,060 cases in the class wrong, none of the others;
    - 2,338 random configurations with a stride above 1 from ``strategies.conv_configs(ranks=(3,))`` (up to 8
      wide, 1-3 channels, any layout and dilation): 17 of the 1,599 in the class wrong, none of the 739 outside it.
    """
    if len(spatial) != 3:
        return False
    return any(s > 1 and (n < k or s > k) for n, k, s in zip(spatial, kernel, strides))
