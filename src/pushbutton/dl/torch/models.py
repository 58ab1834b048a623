"""The small networks of Zhang et al. (ICLR 2017), Appendix A, in PyTorch.

Parameter counts on 28x28x3 inputs (the paper's cropped CIFAR-10), matching the paper's Table 1:
  mini_alexnet()              1,387,786
  mlp([512])                  1,209,866
  mlp([512, 512, 512])        1,735,178
  inception_small()           1,649,402
Every builder takes `input_shape=(C, H, W)` and `num_classes`, so the same models run on MNIST
(1x28x28) or sklearn's digits (1x8x8).
"""
from __future__ import annotations

import math

import torch
from torch import nn


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _shape(input_shape):
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (channels, height, width), got {input_shape!r}")
    return tuple(int(v) for v in input_shape)


# ----------------------------------------------------------------------------- MLP

def mlp(hidden=(512,), input_shape=(3, 28, 28), num_classes: int = 10) -> nn.Sequential:
    """Multi-layer perceptron: flatten -> [Linear -> ReLU] per hidden width -> Linear."""
    if isinstance(hidden, int):
        hidden = [hidden]
    c, h, w = _shape(input_shape)
    layers: list[nn.Module] = [nn.Flatten()]
    width = c * h * w
    for n in hidden:
        layers += [nn.Linear(width, int(n)), nn.ReLU(inplace=True)]
        width = int(n)
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


# ----------------------------------------------------------------------------- small AlexNet

class LocalResponseNorm(nn.Module):
    """Across-channel LRN, numerically the same as `nn.LocalResponseNorm(size, alpha, beta, k)`:
    b_c = a_c / (k + alpha/size * sum_{|c'-c| <= size//2} a_c'^2) ** beta.

    The window sum is a 1x1 convolution with a fixed banded matrix, about 2.5x faster on CPU than
    PyTorch's avg_pool3d-based implementation. No trainable parameters.
    """

    def __init__(self, channels: int, size: int = 9, alpha: float = 1e-3, beta: float = 0.75,
                 k: float = 1.0):
        super().__init__()
        i = torch.arange(channels)
        band = ((i[:, None] - i[None, :]).abs() <= size // 2).float() * (alpha / size)
        self.register_buffer("band", band[:, :, None, None], persistent=False)
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x):
        return x / nn.functional.conv2d(x * x, self.band).add_(self.k).pow_(self.beta)

    def extra_repr(self):
        return f"{self.band.shape[0]}, size={self.size}, alpha={self.alpha}, beta={self.beta}, " \
               f"k={self.k}"


def _lrn(channels=64):
    # TensorFlow's CIFAR-10 tutorial LRN (used by the paper): depth_radius=4, bias=1,
    # alpha=0.001/9, beta=0.75. PyTorch's convention divides alpha by `size`, hence alpha=0.001.
    return LocalResponseNorm(channels, size=9, alpha=0.001, beta=0.75, k=1.0)


def mini_alexnet(input_shape=(3, 28, 28), num_classes: int = 10) -> nn.Sequential:
    """Two blocks of [conv 5x5 (64) + ReLU -> max-pool 3x3/2 -> LRN], then FC 384 -> 192 -> classes.

    Convolutions and pools use 'SAME' padding (conv padding 2, pool padding 1), so 28x28 becomes
    14x14 then 7x7, giving 64*7*7 = 3136 features into the first fully-connected layer.
    """
    c, h, w = _shape(input_shape)
    for _ in range(2):
        h, w = math.ceil(h / 2), math.ceil(w / 2)  # pool 3x3 stride 2 padding 1
    return nn.Sequential(
        nn.Conv2d(c, 64, 5, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=2, padding=1), _lrn(),
        nn.Conv2d(64, 64, 5, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=2, padding=1), _lrn(),
        nn.Flatten(),
        nn.Linear(64 * h * w, 384), nn.ReLU(inplace=True),
        nn.Linear(384, 192), nn.ReLU(inplace=True),
        nn.Linear(192, num_classes),
    )


# ----------------------------------------------------------------------------- small Inception

class Shift(nn.Module):
    """A learnable per-channel offset (the 'beta' of a batch norm without scale)."""

    def __init__(self, channels):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x):
        return x + self.bias


class ConvModule(nn.Sequential):
    """Conv -> BatchNorm -> ReLU (the paper's 'Conv' module of Figure 3).

    As in TF-slim (which the paper's count reflects): the convolution has no bias and the batch
    norm learns an offset (beta) but no scale (gamma).
    """

    def __init__(self, cin, cout, k, stride=1, padding=None):
        if padding is None:
            padding = k // 2
        super().__init__(nn.Conv2d(cin, cout, k, stride=stride, padding=padding, bias=False),
                         nn.BatchNorm2d(cout, eps=1e-3, affine=False), Shift(cout),
                         nn.ReLU(inplace=True))


class InceptionModule(nn.Module):
    """Concatenation of a 1x1 Conv module (ch1) and a 3x3 Conv module (ch3)."""

    def __init__(self, cin, ch1, ch3):
        super().__init__()
        self.b1 = ConvModule(cin, ch1, 1)
        self.b3 = ConvModule(cin, ch3, 3)
        self.out_channels = ch1 + ch3

    def forward(self, x):
        return torch.cat([self.b1(x), self.b3(x)], 1)


class DownsampleModule(nn.Module):
    """Concatenation of a 3x3 stride-2 Conv module (ch3) and a 3x3 stride-2 max-pool."""

    def __init__(self, cin, ch3):
        super().__init__()
        self.conv = ConvModule(cin, ch3, 3, stride=2, padding=0)
        self.pool = nn.MaxPool2d(3, stride=2)
        self.out_channels = ch3 + cin

    def forward(self, x):
        return torch.cat([self.conv(x), self.pool(x)], 1)


def inception_small(input_shape=(3, 28, 28), num_classes: int = 10) -> nn.Sequential:
    """The small Inception of the paper's Figure 3 (Conv 96 3x3 -> 2 Inception -> Downsample ->
    4 Inception -> Downsample -> 2 Inception -> global mean pool -> FC)."""
    c, _, _ = _shape(input_shape)
    layers: list[nn.Module] = [ConvModule(c, 96, 3)]
    width = 96
    plan = [("i", 32, 32), ("i", 32, 48), ("d", 80),
            ("i", 112, 48), ("i", 96, 64), ("i", 80, 80), ("i", 48, 96), ("d", 96),
            ("i", 176, 160), ("i", 176, 160)]
    for step in plan:
        m = InceptionModule(width, step[1], step[2]) if step[0] == "i" else \
            DownsampleModule(width, step[1])
        layers.append(m)
        width = m.out_channels
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes)]
    return nn.Sequential(*layers)


MODELS = {"mlp": lambda **kw: mlp([512], **kw),
          "mlp1x512": lambda **kw: mlp([512], **kw),
          "mlp3x512": lambda **kw: mlp([512, 512, 512], **kw),
          "mini_alexnet": mini_alexnet,
          "inception_small": inception_small}


def build(name: str, input_shape=(3, 28, 28), num_classes: int = 10) -> nn.Module:
    """A model by name: mlp (= mlp1x512), mlp3x512, mini_alexnet, inception_small."""
    try:
        factory = MODELS[name]
    except KeyError:
        from pushbutton.core.errors import PushbuttonError
        raise PushbuttonError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}") from None
    return factory(input_shape=input_shape, num_classes=num_classes)
