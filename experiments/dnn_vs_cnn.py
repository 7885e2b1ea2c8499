"""The notes' comparison: a dense network (Flatten, Dense(128, relu), Dense(10)) against a small CNN (three 3x3
convs 32/64/64 with max pooling, Dense(64), Dense(10)) on the same data, epochs and optimizer.

The notes use Fashion-MNIST. Its files are used when `--data-dir` holds them (fashion_mnist/*-ubyte.gz);
otherwise MNIST, and the output says which. Adam (lr 1e-3), batch 32 (Keras' default), pixels / 255,
softmax cross-entropy on logits; test accuracy on the whole test split after each epoch.

    python experiments/dnn_vs_cnn.py --out runs/dnn_vs_cnn --epochs 5        # the notes' 5 epochs
    python experiments/dnn_vs_cnn.py --quick --out /tmp/dc                   # seconds: 512 images, 1 epoch

Writes OUT/results.json, OUT/results.md and OUT/dnn_vs_cnn_curves.png (test accuracy per epoch, both models).
"""
from __future__ import annotations

import os

import _common


def pick_dataset(data_dir: str) -> str:
    from cnnjax.data.sources import find_idx_files

    return "fashion_mnist" if find_idx_files("fashion_mnist", data_dir) else "mnist"


def load_split(dataset: str, split: str, data_dir: str, *, quick: bool, limit):
    if dataset == "mnist":
        return _common.mnist(split, data_dir, quick=quick, limit=limit)
    from cnnjax.data import load

    s = load(dataset, split, data_dir=data_dir, progress=False)
    return s if limit is None else type(s)(s.images[:limit], s.labels[:limit], s.class_names)


def plot_comparison(histories: dict, dataset: str, path: str):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.2), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    for (name, h), colour in zip(histories.items(), ("tab:blue", "tab:orange")):
        epochs = h["epoch"]
        loss_ax.plot(epochs, h["loss"], "o-", color=colour, label=f"{name} train")
        loss_ax.plot(epochs, h["val_loss"], "s--", color=colour, label=f"{name} test")
        acc_ax.plot(epochs, h["accuracy"], "o-", color=colour, label=f"{name} train")
        acc_ax.plot(epochs, h["val_accuracy"], "s--", color=colour, label=f"{name} test ({h['val_accuracy'][-1]:.4f})")
    for ax, what in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"DNN vs CNN on {dataset}", fontsize=10)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=80)
    return fig


def main(argv=None) -> int:
    p = _common.parser(__doc__, "runs/dnn_vs_cnn")
    p.add_argument("--epochs", type=int, default=5, help="epochs for both models (the notes: 5)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size for both (Keras' default 32)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.limit = 1, args.limit or 512

    from cnnjax import count_params, models
    from cnnjax.train import fit

    dataset = pick_dataset(args.data_dir)
    note = "" if dataset == "fashion_mnist" else " (Fashion-MNIST files not found: MNIST instead)"
    print(f"dataset: {dataset}{note}")
    train = load_split(dataset, "train", args.data_dir, quick=args.quick, limit=args.limit)
    test = load_split(dataset, "test", args.data_dir, quick=args.quick, limit=256 if args.quick else None)
    rows, histories, machine = [], {}, _common.machine()
    for label, name in (("DNN", "fashion_dnn"), ("CNN", "fashion_cnn")):
        model = models.get(name)
        with _common.Timer() as t:
            state, history = fit(model, train, epochs=args.epochs, batch_size=args.batch_size, optimizer="adam",
                                 learning_rate=1e-3, validation_data=test, seed=args.seed, progress=False)
        histories[label] = history
        rows.append({"model": f"{label} ({name})", "dataset": dataset, "params": count_params({"params": state.params}),
                     "epochs": args.epochs, "batch_size": args.batch_size, "train_images": len(train.images),
                     "seconds": round(t.seconds, 1), "train_accuracy": history["accuracy"][-1],
                     "test_accuracy": history["val_accuracy"][-1], "machine": machine,
                     "history": {k: history[k] for k in ("loss", "accuracy", "val_loss", "val_accuracy")}})
        print(f"{label}: test accuracy {history['val_accuracy'][-1]:.4f} ({t.seconds:.1f} s)", flush=True)
    plot_comparison(histories, dataset, os.path.join(args.out, "dnn_vs_cnn_curves.png"))
    print(_common.write_results(args.out, rows, columns=["model", "dataset", "params", "epochs", "batch_size",
                                                         "seconds", "train_accuracy", "test_accuracy"]))
    print(f"machine: {machine}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
