"""A lean PyTorch training loop for pushbutton tasks.

`train(model, loss_fn, optimizer, trainloader, testloader, epochs)` runs the schedule of Zhang et
al. 2017 (SGD with momentum 0.9 from `sgd()`, learning rate x0.95 per epoch), logs per-epoch
`train_loss, train_acc, test_loss, test_acc, lr` with `pushbutton.log(step=epoch, ...)`, stops once
training accuracy reaches `stop_at_fit`, checkpoints after every epoch into the task folder and
resumes from there when the task is retried. It returns a flat dict of final metrics that a task
function can return as is.

Lean by design: losses and hit counts are summed on the device and read back once per epoch (no
per-batch host sync), in-memory loaders are moved to the device once, and nothing else runs per
batch, so it costs within a few percent of a hand-written loop (benchmarks/p4_train.py).
"""
from __future__ import annotations

import os
import random
import time
from pathlib import Path

import torch
from torch import nn

from pushbutton.core.files import replacing
from pushbutton.core.tasklog import current_task, log as _pb_log

CHECKPOINT_NAME = "checkpoint.pt"


def sgd(model: nn.Module, lr: float = 0.01, momentum: float = 0.9,
        weight_decay: float = 0.0) -> torch.optim.SGD:
    """SGD with momentum 0.9, the paper's optimiser (initial lr 0.1 or 0.01 in the paper)."""
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                           weight_decay=weight_decay)


def pick_device(device="auto") -> torch.device:
    """"auto" picks CUDA when present, then Apple MPS, else CPU."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    try:
        import numpy as np
        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover
        pass


def checkpoint_path(checkpoint) -> Path | None:
    """Where to checkpoint: True -> <task dir>/checkpoint.pt inside a pushbutton task (nothing
    outside one, where no retry could resume); a path -> that file; False/None -> nowhere."""
    if checkpoint is None or checkpoint is False:
        return None
    if checkpoint is True:
        task = current_task()
        return task.dir / CHECKPOINT_NAME if task.active or os.environ.get("PB_TASK_DIR") else None
    p = Path(checkpoint)
    return p / CHECKPOINT_NAME if p.is_dir() else p


def _save_atomic(state: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        torch.save(state, tmp)


def _on_device(loader, device):
    to = getattr(loader, "to", None)
    return to(device) if callable(to) and not isinstance(loader, torch.utils.data.DataLoader) \
        else loader


@torch.no_grad()
def evaluate(model: nn.Module, loss_fn, loader, device=None) -> tuple[float, float]:
    """(mean loss, accuracy) of `model` on `loader`, in eval mode."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device)
    hits = torch.zeros((), device=device, dtype=torch.long)
    n = 0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        out = model(x)
        loss_sum += loss_fn(out, y) * len(y)
        hits += (out.argmax(1) == y).sum()
        n += len(y)
    model.train(was_training)
    if n == 0:
        return float("nan"), float("nan")
    return loss_sum.item() / n, hits.item() / n


def train(model: nn.Module, loss_fn, optimizer, trainloader, testloader=None, epochs: int = 10,
          lr_decay: float | None = 0.95, device="auto", stop_at_fit: float | None = None,
          checkpoint=True, seed: int | None = None, log: bool = True, scheduler=None,
          eval_train: bool = False, verbose: bool = False) -> dict:
    """Train `model` for up to `epochs` epochs and return the final metrics.

    loss_fn: e.g. nn.CrossEntropyLoss() (mean over the batch).
    optimizer: built on the model's parameters, e.g. `sgd(model, lr=0.01)`.
    lr_decay: multiply the learning rate by this after every epoch (ExponentialLR); None/1 = off.
      Or pass your own epoch-wise `scheduler`.
    device: "auto" (CUDA, then MPS, then CPU), or any torch device.
    stop_at_fit: stop once training accuracy >= this (e.g. 1.0 or 0.999); None = run all epochs.
    checkpoint: True = <task dir>/checkpoint.pt inside a pushbutton task; a path; False = never.
      Model, optimiser, scheduler, RNG and loader state are saved atomically after each epoch and
      a run that finds the file resumes after the saved epoch.
    seed: seeds Python, NumPy and torch (CPU and CUDA) before training.
    eval_train: measure training loss/accuracy in a separate eval-mode pass after each epoch
      (exact, costs about a third of an epoch); by default they are the running averages over
      the epoch's batches, as most training loops report.
    Returns {train_loss, train_acc, test_loss, test_acc, epochs, epochs_to_fit, fitted, lr,
    seconds, resumed_from}.
    """
    t_start = time.perf_counter()
    if seed is not None:
        seed_everything(int(seed))
    device, scheduler, trainloader, testloader = _setup(model, optimizer, scheduler, lr_decay,
                                                        trainloader, testloader, device)
    loader_rng = getattr(trainloader, "generator", None)  # its state is checkpointed too

    ckpt = checkpoint_path(checkpoint)
    saved = (_resume(ckpt, model, optimizer, scheduler, loader_rng, device)
             if ckpt is not None and ckpt.exists() else {})
    resumed_from = saved.get("epoch")
    start_epoch = resumed_from or 0
    epochs_to_fit = saved.get("epochs_to_fit")
    seconds_before = float(saved.get("seconds", 0.0))
    last = dict(saved.get("metrics") or {})

    model.train()
    epoch = start_epoch
    fitted = stop_at_fit is not None and epochs_to_fit is not None  # (also: resumed after fit)
    while not fitted and epoch < epochs:
        epoch += 1
        last = _epoch(model, loss_fn, optimizer, scheduler, trainloader, testloader, device,
                      eval_train)
        _report(epoch, last, log, verbose)
        if stop_at_fit is not None and epochs_to_fit is None and last["train_acc"] >= stop_at_fit:
            epochs_to_fit, fitted = epoch, True
        if ckpt is not None:
            run = {"epoch": epoch, "epochs_to_fit": epochs_to_fit, "metrics": last,
                   "seconds": seconds_before + time.perf_counter() - t_start}
            _save_atomic(_checkpoint(model, optimizer, scheduler, loader_rng, device, run), ckpt)

    if not last:  # nothing trained and nothing saved (epochs=0)
        last = _untrained(model, loss_fn, optimizer, trainloader, testloader, device)
    out = {k: v for k, v in last.items()  # no test set: no test metrics
           if not (k in ("test_acc", "test_loss") and last.get("test_acc") is None)}
    out.update(epochs=int(epoch), epochs_to_fit=epochs_to_fit, fitted=fitted,
               seconds=seconds_before + time.perf_counter() - t_start,
               resumed_from=resumed_from, device=device.type)
    return out


def _setup(model, optimizer, scheduler, lr_decay, trainloader, testloader, device):
    """(device, scheduler, loaders): the model and in-memory loaders moved to the device, the
    learning-rate decay made a scheduler when none is given."""
    device = pick_device(device)
    model.to(device)
    # optimiser state created before .to() would stay on the old device; moving the parameters
    # in place keeps the optimiser's references valid.
    if scheduler is None and lr_decay is not None and lr_decay != 1:
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=lr_decay)
    trainloader = _on_device(trainloader, device)
    testloader = _on_device(testloader, device) if testloader is not None else None
    return device, scheduler, trainloader, testloader


def _resume(ckpt: Path, model, optimizer, scheduler, loader_rng, device) -> dict:
    """Load a checkpoint into the model, optimiser, scheduler and random number generators;
    returns what it saved about the run (epoch, epochs_to_fit, seconds, metrics)."""
    state = torch.load(ckpt, map_location=device, weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    if state.get("rng") is not None:
        torch.set_rng_state(state["rng"].cpu())
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
    if loader_rng is not None and state.get("loader_rng") is not None:
        loader_rng.set_state(state["loader_rng"].cpu())
    return {"epoch": int(state["epoch"]), "epochs_to_fit": state.get("epochs_to_fit"),
            "seconds": state.get("seconds", 0.0), "metrics": state.get("metrics")}


def _checkpoint(model, optimizer, scheduler, loader_rng, device, run: dict) -> dict:
    """What a checkpoint holds: the states of model, optimiser, scheduler and random number
    generators, and `run` (epoch, epochs_to_fit, metrics, seconds) for _resume."""
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
            "loader_rng": loader_rng.get_state() if loader_rng is not None else None, **run}


def _epoch(model, loss_fn, optimizer, scheduler, trainloader, testloader, device,
           eval_train) -> dict:
    """One pass over the training data, then the epoch's metrics. Losses and hits are summed on
    the device and read back once (no per-batch host sync)."""
    loss_sum = torch.zeros((), device=device)
    hits = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for x, y in trainloader:
        if x.device != device:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        out = model(x)
        loss = loss_fn(out, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            loss_sum += loss.detach() * len(y)
            hits += (out.argmax(1) == y).sum()
        seen += len(y)
    lr = optimizer.param_groups[0]["lr"]
    if scheduler is not None:
        scheduler.step()
    if eval_train:
        train_loss, train_acc = evaluate(model, loss_fn, trainloader, device)
    else:
        train_loss, train_acc = loss_sum.item() / max(seen, 1), hits.item() / max(seen, 1)
    if testloader is not None:
        test_loss, test_acc = evaluate(model, loss_fn, testloader, device)
    else:
        test_loss = test_acc = None
    return {"train_loss": train_loss, "train_acc": train_acc,
            "test_loss": test_loss, "test_acc": test_acc, "lr": lr}


def _report(epoch, metrics, log, verbose) -> None:
    """The epoch's metrics to pushbutton.log (a learning curve in the series) and/or stdout."""
    shown = {k: v for k, v in metrics.items() if v is not None}
    if log:
        _pb_log(step=epoch, **shown)
    if verbose:
        print(f"epoch {epoch}: " + " ".join(f"{k}={v:.4g}" for k, v in shown.items()), flush=True)


def _untrained(model, loss_fn, optimizer, trainloader, testloader, device) -> dict:
    """The metrics of a model that was not trained (epochs=0)."""
    train_loss, train_acc = evaluate(model, loss_fn, trainloader, device)
    test_loss, test_acc = (evaluate(model, loss_fn, testloader, device)
                           if testloader is not None else (None, None))
    return {"train_loss": train_loss, "train_acc": train_acc, "test_loss": test_loss,
            "test_acc": test_acc, "lr": optimizer.param_groups[0]["lr"]}
