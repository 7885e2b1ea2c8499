"""Training input as a stream of batches, for data that is not one in-memory array.

`fit` takes, besides ``(images, labels)`` arrays, any of these as its `data`:

* an iterable that can be iterated again (a list of batches, ``tfds.as_numpy(dataset)``): each epoch is one pass over it, up to `steps_per_epoch` batches;
* a one-shot iterator (a generator): epochs take consecutive `steps_per_epoch` batches from it;
* a function ``epoch -> iterable``: epoch ``e`` is a pass over ``data(e)`` (the `cnnjax.data.pipeline`
  functions return one). This is the form that resumes exactly, since a resumed run asks for the same epoch's batches again (e.g. a pipeline shuffled with seed
  ``(seed, e)``).

Each batch is ``(images, labels)`` or a dict with keys ``image``/``images`` and ``label``/``labels`` (tfds'
``as_supervised=False`` form); images ``[B, H, W, C]`` uint8 or float in [0, 1], labels ``[B]`` integers. Every
batch is checked as an in-memory dataset is (shape, dtype, value range, label range). A batch of another size than
the first (the last batch of a pass without ``drop_remainder``) is trained on in its own step (one more
compilation), as Keras does.

A background thread reads and checks the next `PREFETCH` batches while the device computes; each batch is copied
to the device (asynchronously) when its step is dispatched, while the previous steps still run, so reading,
decoding and the copy overlap the computation.

Resuming in the middle of an epoch reads and skips the batches already trained on (for a one-shot iterator:
every batch of the earlier epochs too), so the resumed run sees the same batches where the stream repeats its
order.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterator

import numpy as np

PREFETCH = 2       # batches read ahead by the reading thread

_END = object()


def is_stream(data) -> bool:
    """Whether `fit` takes `data` as a stream of batches rather than in-memory ``(images, labels)`` arrays."""
    if isinstance(data, (tuple, dict, np.ndarray)) or (hasattr(data, "images") and hasattr(data, "labels")):
        return False
    if isinstance(data, list):
        return not (len(data) == 2 and all(hasattr(a, "shape") and hasattr(a, "ndim") for a in data))
    if hasattr(data, "shape") and hasattr(data, "dtype"):      # a jax or other array
        return False
    return callable(data) or hasattr(data, "__iter__")


def as_pair(fn: str, batch, index: int):
    """`batch` as (images, labels) NumPy arrays: from a pair, or a dict with image(s) and label(s) keys."""
    if isinstance(batch, dict):
        image_key = next((k for k in ("image", "images") if k in batch), None)
        label_key = next((k for k in ("label", "labels") if k in batch), None)
        if image_key is None or label_key is None:
            raise ValueError(f"{fn}: batch {index} of data is a dict with keys {sorted(batch)}; it needs 'image' "
                             "(or 'images') and 'label' (or 'labels').")
        images, labels = batch[image_key], batch[label_key]
    elif isinstance(batch, (tuple, list)) and len(batch) == 2:
        images, labels = batch
    else:
        raise TypeError(f"{fn}: batch {index} of data is {type(batch).__name__}; each batch must be (images, labels) "
                        "or a dict with 'image' and 'label' keys.")
    return np.asarray(images), np.asarray(labels)


class StreamEnded(Exception):
    """The stream gave fewer batches than an epoch needs."""


class _Reader:
    """Reads `iterator` in a daemon thread, `check`ing each batch, at most `depth` batches ahead."""

    def __init__(self, iterator: Iterator, check: Callable[[Any, int], Any], depth: int, first_index: int):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(iterator, check, first_index), daemon=True,
                                        name="cnnjax-batch-reader")
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, iterator, check, index):
        try:
            for batch in iterator:
                if not self._put(("batch", check(batch, index))):
                    return
                index += 1
            self._put(("end", None))
        except BaseException as err:      # noqa: BLE001 - handed to the training thread, raised there
            self._put(("error", err))

    def next(self):
        kind, value = self._queue.get()
        if kind == "batch":
            return value
        if kind == "error":
            raise value
        raise StreamEnded

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
            self._thread.join(timeout=0.05)


class BatchStream:
    """`fit`'s view of a stream of batches: the first batch (for shapes), the steps of an epoch, and each epoch's
    batches read ahead in a thread."""

    def __init__(self, data, *, fn: str, steps_per_epoch: int | None, epochs: int):
        self.fn = fn
        self._factory = data if callable(data) and not hasattr(data, "__iter__") else None
        source = self._factory(0) if self._factory is not None else data
        if not hasattr(source, "__iter__"):
            raise TypeError(f"{fn}: data(0) must return an iterable of batches, got {type(source).__name__}.")
        self._source = source
        iterator = iter(source)
        self.one_shot = self._factory is None and iterator is source
        try:
            self.first = as_pair(fn, next(iterator), 0)
        except StopIteration:
            raise ValueError(f"{fn}: data is a stream of batches that gave no batch.") from None
        self._pending: tuple[int, Iterator] | None = (0, iterator)     # (epoch or stream position, the iterator)
        if steps_per_epoch is None:
            if self.one_shot and epochs > 1:
                raise ValueError(f"{fn}: data is a one-shot iterator (a generator?) and epochs={epochs}; pass "
                                 "steps_per_epoch=N (each epoch takes the next N batches), or give a list, an "
                                 "iterable such as tfds.as_numpy(dataset), or a function epoch -> batches.")
            try:
                steps_per_epoch = len(source)
            except TypeError:
                raise ValueError(f"{fn}: data is a stream of batches without a length ({type(source).__name__}); "
                                 "pass steps_per_epoch=N (the batches of one epoch).") from None
        self.steps_per_epoch = int(steps_per_epoch)
        if self.steps_per_epoch < 1:
            raise ValueError(f"{fn}: the stream has {self.steps_per_epoch} batches per epoch; it needs at least 1.")

    @property
    def batch_size(self) -> int:
        return len(self.first[0])

    def _iterator(self, epoch: int, skip: int) -> tuple[Iterator, int]:
        """(an iterator at batch `skip` of `epoch`, the index of its next batch)."""
        if self.one_shot:
            where = epoch * self.steps_per_epoch + skip        # epochs are consecutive slices of one stream
        else:
            where = skip
        pending, self._pending = self._pending, None
        if pending is not None and (self.one_shot or pending[0] == epoch):
            position, iterator = pending
            first_used = position == 0 if self.one_shot else True
            start = 0
            if first_used:                   # its first batch was read for the shapes: put it back
                iterator = _chain_first(self.first, iterator)
            if self.one_shot:
                start = position
        else:
            if self.one_shot:
                raise RuntimeError("a one-shot stream cannot be read again")   # fit reads epochs in order
            iterator, start = iter(self._factory(epoch) if self._factory is not None else self._source), 0
        for index in range(start, where):
            try:
                next(iterator)
            except StopIteration:
                raise ValueError(f"{self.fn}: the stream ended after {index} batches while skipping to batch "
                                 f"{where} (resuming epoch {epoch + 1}).") from None
        return iterator, where

    def epoch(self, epoch: int, skip: int, check: Callable[[tuple, int], Any]) -> "EpochBatches":
        """The batches of `epoch` from its batch `skip` on, read ahead in a thread and passed through `check`."""
        iterator, where = self._iterator(epoch, skip)
        return EpochBatches(self, epoch, iterator, where, check)


def _chain_first(first, rest):
    yield first
    yield from rest


class EpochBatches:
    """One epoch's batches: `take(k)` returns the next k (checked) batches; `close()` stops the reader and, for a
    one-shot stream, hands the iterator on to the next epoch."""

    def __init__(self, stream: BatchStream, epoch: int, iterator, where: int, check):
        self._stream, self._epoch, self._iterator = stream, epoch, iterator
        self._taken = where
        self._start = where
        limit = stream.steps_per_epoch - (where - epoch * stream.steps_per_epoch if stream.one_shot else where)
        self._reader = _Reader(_limited(iterator, limit), lambda b, i: check(as_pair(stream.fn, b, i), i),
                               PREFETCH, where)

    def take(self, k: int) -> list:
        out = []
        for _ in range(k):
            try:
                out.append(self._reader.next())
            except StreamEnded:
                got = self._taken - (self._epoch * self._stream.steps_per_epoch if self._stream.one_shot else 0)
                raise ValueError(f"{self._stream.fn}: the stream gave only {got} batches in epoch {self._epoch + 1}, "
                                 f"but an epoch has steps_per_epoch={self._stream.steps_per_epoch}; pass the "
                                 "number of batches one pass gives as steps_per_epoch.") from None
            self._taken += 1
        return out

    def close(self) -> None:
        self._reader.close()
        if self._stream.one_shot:
            self._stream._pending = (self._taken, self._iterator)


def _limited(iterator, n: int):
    """The first `n` items of `iterator` (leaving the rest in it)."""
    for _ in range(n):
        try:
            yield next(iterator)
        except StopIteration:
            return
