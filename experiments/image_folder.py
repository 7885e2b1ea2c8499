"""The notes' "your own images" workflow (cats and dogs): a folder per class -> `cnnjax.data.load` (resized to one
size, pixels / 255) -> a trained CNN -> predictions on held-out images, as a picture.

The class folders come from `--folder ROOT` (ROOT/<class>/<image> or ROOT/<split>/<class>/<image>), or are
written from the CIFAR-10 JPEG copy (`--data-dir`/cifar10-jpeg.tar.xz): the first `--per-class` training and
`--test-per-class` test JPEGs of each of `--classes` (default cat and dog), in archive order, under
`--work-dir` (default OUT/cats_and_dogs) as train/<class>/*.jpg and test/<class>/*.jpg.
The model is the notes' CIFAR-10 CNN (`cifar10_cnn`) with one output per class; Adam (lr 1e-3).

    python experiments/image_folder.py --out runs/image_folder                           # cat vs dog, 32x32
    python experiments/image_folder.py --quick --out /tmp/if                             # seconds

Writes OUT/results.json, OUT/results.md, OUT/image_folder_predictions.png, OUT/image_folder_curves.png and
OUT/image_folder_confusion.png.
"""
from __future__ import annotations

import os
import tarfile

import _common


def extract_classes(archive: str, root: str, classes, *, per_split: dict) -> dict:
    """Write the first ``per_split[split]`` JPEGs of each class of ``classes`` from the CIFAR-10 JPEG archive
    (members ``[top/]<split>/<class>/<file>``) to ``root/<split>/<class>/<file>``; returns the counts written.
    One streaming pass; existing files are overwritten."""
    counts = {(s, c): 0 for s in per_split for c in classes}
    with tarfile.open(archive, "r|*") as tar:
        for member in tar:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) < 3:
                continue
            split, cls, base = parts[-3:]
            if (split, cls) not in counts or counts[(split, cls)] >= per_split[split]:
                continue
            folder = os.path.join(root, split, cls)
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, base), "wb") as f:
                f.write(tar.extractfile(member).read())
            counts[(split, cls)] += 1
            if all(counts[k] >= per_split[k[0]] for k in counts):
                break
    missing = [f"{s}/{c}" for (s, c), n in counts.items() if n == 0]
    if missing:
        raise SystemExit(f"image_folder: {archive!r} has no images for {missing}; CIFAR-10 classes are airplane, "
                         "automobile, bird, cat, deer, dog, frog, horse, ship, truck.")
    return counts


def main(argv=None) -> int:
    p = _common.parser(__doc__, "runs/image_folder")
    p.add_argument("--folder", default=None, help="an existing class-folder tree (skips the CIFAR-10 extraction)")
    p.add_argument("--work-dir", default=None, help="where to write the class folders (default OUT/cats_and_dogs)")
    p.add_argument("--classes", nargs="+", default=["cat", "dog"], help="CIFAR-10 classes to extract")
    p.add_argument("--per-class", type=int, default=5000, help="training images per class (CIFAR-10 has 5000)")
    p.add_argument("--test-per-class", type=int, default=1000, help="test images per class (CIFAR-10 has 1000)")
    p.add_argument("--image-size", type=int, default=32, help="images are resized to SIZE x SIZE on load")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args(argv)
    if args.quick:
        args.epochs = 1
        args.per_class, args.test_per_class = min(args.per_class, 64), min(args.test_per_class, 16)
        args.batch_size = min(args.batch_size, 32)

    from cnnjax import count_params, models, viz
    from cnnjax.data import load
    from cnnjax.data.sources import find_cifar10_source
    from cnnjax.train import fit

    root = args.folder
    if root is None:
        archive = find_cifar10_source(args.data_dir)
        if archive is None or not archive.endswith(("tar.xz", ".tar")):
            raise SystemExit(f"image_folder: no CIFAR-10 JPEG archive under {args.data_dir!r}; pass --data-dir or "
                             "--folder ROOT")
        root = args.work_dir or os.path.join(args.out, "cats_and_dogs")
        with _common.Timer() as t:
            counts = extract_classes(archive, root, args.classes,
                                     per_split={"train": args.per_class, "test": args.test_per_class})
        print(f"wrote {sum(counts.values())} JPEGs to {root} ({t.seconds:.1f} s): "
              + ", ".join(f"{s}/{c}={n}" for (s, c), n in counts.items()))
    size = (args.image_size, args.image_size)
    with _common.Timer() as t_load:
        train = load(root, "train", image_size=size, validation_fraction=0.0, progress=False)
        try:
            test = load(root, "test", image_size=size, progress=False)
        except ValueError:   # no test/ folder: hold out 20% of each class
            train = load(root, "train", image_size=size, validation_fraction=0.2, seed=args.seed, progress=False)
            test = load(root, "validation", image_size=size, validation_fraction=0.2, seed=args.seed,
                        progress=False)
    print(f"classes {train.class_names}: train {train.images.shape}, test {test.images.shape} "
          f"({t_load.seconds:.1f} s to load)")

    model = models.get("cifar10_cnn", num_classes=len(train.class_names))
    with _common.Timer() as t:
        state, history = fit(model, train, epochs=args.epochs, batch_size=args.batch_size, optimizer="adam",
                             learning_rate=1e-3, validation_data=test, seed=args.seed, progress=False)
    predicted = viz.predict(model, state, test.images)
    accuracy = float((predicted == test.labels).mean())
    viz.plot_predictions(test.images, test.labels, predicted, class_names=train.class_names, n=24, ncols=8, seed=0,
                         title=f"{' vs '.join(train.class_names)}: predicted (true), test accuracy {accuracy:.4f}",
                         path=os.path.join(args.out, "image_folder_predictions.png"))
    viz.plot_curves(history, title=f"cifar10_cnn on {root}", path=os.path.join(args.out, "image_folder_curves.png"))
    viz.plot_confusion_matrix(viz.confusion_matrix(test.labels, predicted, len(train.class_names)),
                              class_names=train.class_names,
                              path=os.path.join(args.out, "image_folder_confusion.png"))
    machine = _common.machine()
    rows = [{"classes": " / ".join(train.class_names), "image_size": f"{size[0]}x{size[1]}",
             "train_images": len(train.images), "test_images": len(test.images),
             "params": count_params({"params": state.params}), "epochs": args.epochs,
             "load_seconds": round(t_load.seconds, 1), "train_seconds": round(t.seconds, 1),
             "train_accuracy": history["accuracy"][-1], "test_accuracy": accuracy, "machine": machine}]
    print(_common.write_results(args.out, rows, columns=["classes", "image_size", "train_images", "test_images",
                                                         "params", "epochs", "train_seconds", "test_accuracy"]))
    print(f"machine: {machine}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
