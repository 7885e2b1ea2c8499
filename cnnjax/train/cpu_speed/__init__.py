"""What makes training fast on XLA:CPU, used by the trainer (`fit`, the CLI) and nowhere else.

:mod:`cnnjax.functional` computes every op with one plain ``lax`` call, so that every JAX transformation works
on it. A training step on a CPU needs only reverse mode, and there these pieces make it faster:

- :mod:`.swap`: :func:`with_cpu_forms` runs a loss with its convolutions and max/min pools replaced by the
  equivalent forms of :mod:`.conv_forms` (im2col for thin first layers, a batch-chunked kernel gradient) and
  :mod:`.pool_forms` (max over strided slices), which carry custom VJPs (reverse mode only);
- :mod:`.compile_options`: XLA:CPU compile options for the steps (convolutions by XLA's kernels, not YNNPACK's);
- :mod:`.host_memory`: glibc malloc settings that keep freed memory in the process (process-wide: used only
  when asked, ``fit(keep_freed_memory=True)`` or ``cnnjax train``);
- :mod:`.loop_choice`: the loop form of `fit` (per step, a ``lax.scan`` chunk, an unrolled chunk), by a fixed
  rule or, when asked, by measurement.

Measurements behind each choice are in ``experiments/SPEED.md``.
"""
from .compile_options import cpu_compiler_options
from .host_memory import keep_freed_memory
from .swap import with_cpu_forms

__all__ = ["with_cpu_forms", "cpu_compiler_options", "keep_freed_memory"]
