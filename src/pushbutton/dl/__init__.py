"""Floor 5: deep-learning helpers for pushbutton tasks. May import core up to execution (today
only core's task-side API and file helpers).

`pushbutton.dl.torch` holds PyTorch data pipelines, models and a lean training loop that logs
learning curves with `pushbutton.log` and checkpoints into the task folder. Nothing here is imported
by the core package: PyTorch loads only when `pushbutton.dl.torch` is imported.
"""
