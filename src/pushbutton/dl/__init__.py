"""Deep-learning helpers for pushbutton tasks.

`pushbutton.dl.torch` holds PyTorch data pipelines, models and a lean training loop that logs
learning curves with `pushbutton.log` and checkpoints into the task folder. Nothing here is imported
by the core package: PyTorch loads only when `pushbutton.dl.torch` is imported.
"""
