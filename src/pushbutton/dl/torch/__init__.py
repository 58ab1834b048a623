"""PyTorch helpers: `data.etl` (datasets with corrupted labels / pixels), `models` (the small
networks of Zhang et al. 2017) and `train.train` (SGD schedule, per-epoch logging, stop-at-fit,
checkpoint/resume).

    from pushbutton.dl.torch import data, models, train
    tr, te = data.etl("mnist", label_corruption=0.5, seed=1)
    net = models.mlp([512], input_shape=tr.input_shape)
    metrics = train.train(net, torch.nn.CrossEntropyLoss(), train.sgd(net, lr=0.01), tr, te, epochs=20)
"""
from __future__ import annotations

try:
    import torch as _torch  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    from pushbutton.core.errors import PushbuttonError
    raise PushbuttonError(
        "pushbutton.dl.torch needs PyTorch, which is not installed.\n"
        "  fix: pip install 'pushbutton[torch]'  (or pip install torch)") from e

from pushbutton.dl.torch import data
from pushbutton.dl.torch import models
from pushbutton.dl.torch import train  # noqa: E402

__all__ = ["data", "models", "train"]
