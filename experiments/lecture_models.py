"""The lecture's Keras models trained with cnnjax: summary, parameters and test accuracy of each, in one table.

Models (SEED_EXAMPLES.md, "Models"): mnist_cnn and its variants strides=2 and padding="same", mnist_cnn2 on
MNIST; cifar10_cnn on CIFAR-10. Adam (lr 1e-3, Keras' default), softmax cross-entropy on logits, pixels / 255,
batch 128, no augmentation; test accuracy after each epoch on the whole test split.

    python experiments/lecture_models.py --out runs/lecture_models                 # the full run (see EXPERIMENTS.md)
    python experiments/lecture_models.py --quick --out /tmp/lm                     # seconds: 512 images, 1 epoch

Writes OUT/results.json, OUT/results.md (the table), OUT/<model>_curves.png for each model, and for mnist_cnn
and cifar10_cnn a predictions grid and a confusion matrix on the test split.
"""
from __future__ import annotations

import os

import numpy as np

import _common

# name, model name, keyword arguments, dataset
RUNS = {
    "mnist_cnn": ("mnist_cnn", {}, "mnist"),
    "mnist_cnn_strides2": ("mnist_cnn", {"strides": 2}, "mnist"),
    "mnist_cnn_same": ("mnist_cnn", {"padding": "same"}, "mnist"),
    "mnist_cnn2": ("mnist_cnn2", {}, "mnist"),
    "cifar10_cnn": ("cifar10_cnn", {}, "cifar10"),
}
PICTURES = ("mnist_cnn", "cifar10_cnn")
COLUMNS = ["run", "dataset", "params", "epochs", "train_images", "seconds", "train_accuracy", "test_accuracy"]   # runs that also get a predictions grid and a confusion matrix


def main(argv=None) -> int:
    p = _common.parser(__doc__, "runs/lecture_models")
    p.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS), help="which models to train")
    p.add_argument("--epochs", type=int, default=2, help="epochs for the MNIST models (default 2)")
    p.add_argument("--cifar-epochs", type=int, default=1, help="epochs for cifar10_cnn (default 1)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs = args.cifar_epochs = 1
        args.limit = args.limit or 512

    import jax

    from cnnjax import count_params, models, summary, viz
    from cnnjax.train import fit

    data = {}

    def dataset(name):
        if name not in data:
            if name == "mnist":
                train = _common.mnist("train", args.data_dir, quick=args.quick, limit=args.limit)
                test = _common.mnist("test", args.data_dir, quick=args.quick, limit=256 if args.quick else None)
            else:
                train = _common.cifar10("train", args.data_dir, quick=args.quick, per_class=52)
                test = _common.cifar10("test", args.data_dir, quick=args.quick, per_class=52)
                if args.limit:
                    train = type(train)(train.images[:args.limit], train.labels[:args.limit], train.class_names)
            data[name] = (train, test)
        return data[name]

    rows = []
    machine = _common.machine()
    for run in args.runs:
        name, kwargs, ds = RUNS[run]
        train, test = dataset(ds)
        model = models.get(name, **kwargs)
        shape = models.input_shape(name)
        print(summary(model, shape, name=run))
        epochs = args.cifar_epochs if ds == "cifar10" else args.epochs
        with _common.Timer() as t:
            state, history = fit(model, train, epochs=epochs, batch_size=args.batch_size, optimizer="adam",
                                 learning_rate=1e-3, validation_data=test, seed=args.seed, progress=False)
        params = count_params({"params": state.params})
        row = {"run": run, "model": name + "".join(f" {k}={v!r}" for k, v in kwargs.items()), "dataset": ds,
               "params": params, "epochs": epochs, "train_images": len(train.images),
               "test_images": len(test.images), "seconds": round(t.seconds, 1),
               "images_per_s": round(float(np.mean(history["images_per_s"])), 1),
               "train_accuracy": history["accuracy"][-1], "test_accuracy": history["val_accuracy"][-1],
               "test_loss": history["val_loss"][-1], "machine": machine}
        row["history"] = {k: history[k] for k in ("loss", "accuracy", "val_loss", "val_accuracy")}
        rows.append(row)
        print(f"{run}: {params:,} params, test accuracy {row['test_accuracy']:.4f} after {epochs} epochs, "
              f"{t.seconds:.1f} s", flush=True)
        viz.plot_curves(history, title=f"{run} on {ds}", path=os.path.join(args.out, f"{run}_curves.png"))
        if run in PICTURES:
            predicted = viz.predict(model, state, test.images)
            viz.plot_predictions(test.images, test.labels, predicted, class_names=test.class_names, n=24,
                                 ncols=8, seed=0, path=os.path.join(args.out, f"{run}_predictions.png"))
            matrix = viz.confusion_matrix(test.labels, predicted, num_classes=len(test.class_names))
            viz.plot_confusion_matrix(matrix, class_names=test.class_names,
                                      path=os.path.join(args.out, f"{run}_confusion.png"))
        jax.clear_caches()
        table = _common.write_results(args.out, rows, columns=COLUMNS)   # after every run: partial runs count
    print(table)
    print(f"machine: {machine}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
