"""pushbutton.dl.torch: data randomisation, models of Zhang et al. 2017, the training loop."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytestmark = pytest.mark.torch

try:
    import torch
except ImportError:  # pragma: no cover - depends on the environment
    if os.environ.get("CI", "").lower() == "true":
        raise
    pytest.skip("PyTorch is not installed", allow_module_level=True)

from pushbutton.dl.torch import data, models, train  # noqa: E402
from pushbutton.core.errors import PushbuttonError  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="module")
def mnist_clean():
    return data.etl("mnist", seed=3)


# ----------------------------------------------------------------------------- models

@pytest.mark.parametrize("build, expected", [
    (lambda: models.mini_alexnet(), 1_387_786),
    (lambda: models.mlp([512]), 1_209_866),
    (lambda: models.mlp([512, 512, 512]), 1_735_178),
    (lambda: models.inception_small(), 1_649_402),
])
def test_parameter_counts_match_the_paper(build, expected):
    net = build()
    assert models.count_parameters(net) == expected
    assert net(torch.zeros(2, 3, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("name", ["mlp", "mlp3x512", "mini_alexnet", "inception_small"])
def test_models_run_on_small_grey_images(name):
    net = models.build(name, input_shape=(1, 8, 8), num_classes=10)
    net.eval()
    assert net(torch.zeros(3, 1, 8, 8)).shape == (3, 10)


def test_fast_lrn_equals_pytorchs():
    x = torch.randn(4, 64, 7, 7, dtype=torch.float64)
    ours = models.LocalResponseNorm(64).double()
    ref = torch.nn.LocalResponseNorm(9, alpha=0.001, beta=0.75, k=1.0)
    assert torch.allclose(ours(x), ref(x), atol=1e-10)
    assert not list(ours.parameters()) and not ours.state_dict()


def test_unknown_model_is_a_clear_error():
    with pytest.raises(PushbuttonError, match="mini_alexnet"):
        models.build("resnet")


# ----------------------------------------------------------------------------- data

def test_loaders_look_like_dataloaders():
    tr, te = data.etl("digits", batch_size=100)
    assert len(tr.dataset) == 1500 and len(te.dataset) == 297
    assert len(tr) == 15 and tr.input_shape == (1, 8, 8) and tr.num_classes == 10
    batches = list(tr)
    assert len(batches) == 15 and batches[0][0].shape == (100, 1, 8, 8)
    assert batches[0][0].dtype == torch.float32 and batches[0][1].dtype == torch.int64
    seen = torch.cat([y for _, y in batches])
    assert sorted(seen.tolist()) == sorted(tr.y.tolist())  # every example once per epoch
    first, second = next(iter(tr))[1], next(iter(tr))[1]
    assert not torch.equal(first, second)  # reshuffled per epoch
    assert sum(len(y) for _, y in te) == 297


def test_label_corruption_fraction_is_about_0_9_p(mnist_clean):
    clean = mnist_clean[0].y.numpy()
    n = len(clean)
    for p in (0.2, 0.5, 1.0):
        tr, te = data.etl("mnist", label_corruption=p, seed=3)
        changed = float((tr.y.numpy() != clean).mean())
        sigma = np.sqrt(0.9 * p * (1 - 0.9 * p) / n)
        assert abs(changed - 0.9 * p) < 5 * sigma + 1e-3, (p, changed)
        assert torch.equal(te.y, mnist_clean[1].y)  # test labels are never corrupted
    # at p=1 labels are uniform and independent of the truth
    tr, _ = data.etl("mnist", label_corruption=1.0, seed=3)
    counts = np.bincount(tr.y.numpy(), minlength=10)
    assert counts.min() > 0.07 * n and counts.max() < 0.13 * n


def test_corruption_is_fixed_by_the_seed():
    a, _ = data.etl("digits", label_corruption=0.5, seed=7)
    b, _ = data.etl("digits", label_corruption=0.5, seed=7)
    c, _ = data.etl("digits", label_corruption=0.5, seed=8)
    assert torch.equal(a.y, b.y) and torch.equal(a.x, b.x)
    assert not torch.equal(a.y, c.y)


def _columns(x):
    """Multiset of pixel-position columns (one row per position, across all images)."""
    n, c, h, w = x.shape
    cols = x.numpy().reshape(n, c, h * w).transpose(2, 0, 1).reshape(h * w, -1)
    return sorted(map(bytes, np.ascontiguousarray(cols)))


def test_shuffled_pixels_use_one_permutation_for_train_and_test():
    tr0, te0 = data.etl("digits", seed=2)
    tr, te = data.etl("digits", inputs="shuffled", seed=2)
    assert tr.x.shape == tr0.x.shape and te.x.shape == te0.x.shape
    assert not torch.equal(tr.x, tr0.x)
    # one permutation of positions for every image of both sets: the columns are the same multiset
    both0, both = torch.cat([tr0.x, te0.x]), torch.cat([tr.x, te.x])
    assert _columns(both) == _columns(both0)
    assert torch.equal(tr.y, tr0.y)


def test_random_pixels_permute_each_image_differently():
    tr0, _ = data.etl("digits", seed=2)
    tr, te = data.etl("digits", inputs="random", seed=2)
    assert tr.x.shape == tr0.x.shape
    # each image keeps its own pixel values ...
    a = np.sort(tr.x.numpy().reshape(len(tr.x), -1), 1)
    b = np.sort(tr0.x.numpy().reshape(len(tr0.x), -1), 1)
    np.testing.assert_array_equal(a, b)
    # ... but the spatial structure is gone: the mean image becomes nearly flat
    assert tr.x.mean(0).std() < 0.25 * tr0.x.mean(0).std()
    assert _columns(tr.x) != _columns(tr0.x)


def test_gaussian_pixels_match_mean_and_variance(mnist_clean):
    tr0 = mnist_clean[0]
    tr, te = data.etl("mnist", inputs="gaussian", seed=3)
    assert tr.x.shape == tr0.x.shape and te.x.shape == mnist_clean[1].x.shape
    assert abs(float(tr.x.mean()) - float(tr0.x.mean())) < 0.01
    assert abs(float(tr.x.std()) / float(tr0.x.std()) - 1) < 0.01
    assert abs(float(tr.x[0].mean()) - float(tr0.x.mean())) < 0.1  # noise, image by image


def test_crop_and_per_image_whitening():
    tr, te = data.etl("mnist", crop=24, whiten=True, train_size=300, seed=1)
    assert tr.x.shape == (300, 1, 24, 24) and te.x.shape[1:] == (1, 24, 24)
    flat = tr.x.reshape(300, -1)
    assert torch.allclose(flat.mean(1), torch.zeros(300), atol=1e-4)
    assert torch.allclose(flat.std(1, unbiased=False), torch.ones(300), atol=1e-3)
    x = np.arange(2 * 3 * 6 * 6, dtype=np.float32).reshape(2, 3, 6, 6)
    np.testing.assert_array_equal(data.center_crop(x, 2), x[..., 2:4, 2:4])


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(PushbuttonError, match="inputs"):
        data.etl("digits", inputs="noise")
    with pytest.raises(PushbuttonError, match="unknown dataset"):
        data.etl("imagenet")
    with pytest.raises(PushbuttonError, match="label_corruption"):
        data.etl("digits", label_corruption=1.5)
    with pytest.raises(PushbuttonError, match="cifar-10-python.tar.gz"):
        data.etl("cifar10", root=tmp_path)


def test_cifar10_reads_the_python_batches(tmp_path):
    import pickle
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8),
                         "labels": list(rng.integers(0, 10, 20))}, f)
    tr, te = data.etl("cifar10", root=tmp_path, crop=28, whiten=True)
    assert tr.x.shape == (100, 3, 28, 28) and te.x.shape == (20, 3, 28, 28)


# ----------------------------------------------------------------------------- training

def _digits_run(**kw):
    tr, te = data.etl("digits", label_corruption=1.0, train_size=500, batch_size=32,
                      whiten=True, seed=1)
    torch.manual_seed(0)
    net = models.mlp([512, 512], input_shape=tr.input_shape)
    return net, tr, te


def test_random_labels_are_memorised_but_do_not_generalise():
    net, tr, te = _digits_run()
    m = train.train(net, torch.nn.CrossEntropyLoss(), train.sgd(net, lr=0.05), tr, te,
                    epochs=60, lr_decay=None, seed=0, stop_at_fit=0.99, checkpoint=False)
    assert m["train_acc"] >= 0.99 and m["fitted"] and m["epochs_to_fit"] == m["epochs"]
    assert m["test_acc"] < 0.25  # chance is 0.10
    for key in ("train_loss", "test_loss", "seconds", "epochs"):
        assert np.isfinite(m[key])
    json.dumps(m)  # returnable as a task's metrics


def test_true_labels_generalise():
    tr, te = data.etl("digits", batch_size=32, seed=1)
    torch.manual_seed(0)
    net = models.mlp([128], input_shape=tr.input_shape)
    m = train.train(net, torch.nn.CrossEntropyLoss(), train.sgd(net, lr=0.05), tr, te,
                    epochs=5, checkpoint=False, seed=0)
    assert m["test_acc"] > 0.85


def test_checkpoint_resume_continues_from_the_saved_epoch(tmp_path):
    loss = torch.nn.CrossEntropyLoss()

    def run(epochs, checkpoint):
        net, tr, te = _digits_run()
        opt = train.sgd(net, lr=0.05)
        m = train.train(net, loss, opt, tr, te, epochs=epochs, seed=0, checkpoint=checkpoint)
        return m, net, opt

    ref, ref_net, _ = run(6, False)
    ck = tmp_path / "ck.pt"
    first, _, _ = run(3, ck)
    assert first["epochs"] == 3 and first["resumed_from"] is None and ck.exists()
    assert not list(tmp_path.glob(".*tmp"))  # the atomic write left no temp file
    resumed, net, opt = run(6, ck)
    assert resumed["resumed_from"] == 3 and resumed["epochs"] == 6
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05 * 0.95 ** 6)
    # same batches, same state: identical to the uninterrupted run
    assert resumed["train_loss"] == pytest.approx(ref["train_loss"], rel=1e-5)
    for a, b in zip(net.parameters(), ref_net.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    again, _, _ = run(6, ck)  # finished: nothing left to train
    assert again["resumed_from"] == 6 and again["epochs"] == 6


def test_inside_a_task_logs_each_epoch_and_checkpoints_in_the_task_dir(tmp_path, monkeypatch):
    series = tmp_path / "series.jsonl"
    monkeypatch.setenv("PB_TASK_ID", "t1")
    monkeypatch.setenv("PB_SERIES", str(series))
    monkeypatch.setenv("PB_TASK_DIR", str(tmp_path / "task"))
    net, tr, te = _digits_run()
    m = train.train(net, torch.nn.CrossEntropyLoss(), train.sgd(net), tr, te, epochs=3)
    assert (tmp_path / "task" / "checkpoint.pt").exists()
    from pushbutton.core import tasklog as tl
    for f in tl._handles.values():
        f.flush()
    lines = [json.loads(s) for s in series.read_text().splitlines()]
    assert [d["step"] for d in lines] == [1, 2, 3]
    assert set(lines[0]["m"]) >= {"train_loss", "train_acc", "test_loss", "test_acc", "lr"}
    assert lines[-1]["m"]["test_acc"] == pytest.approx(m["test_acc"])
    tl._handles.pop(str(series)).close()


# ----------------------------------------------------------------------------- the example

def test_random_labels_example_task_and_specs_load():
    import importlib.util
    from pathlib import Path

    import pushbutton as pb
    folder = Path(__file__).resolve().parents[2] / "examples" / "random_labels"
    if not folder.exists():
        pytest.skip("examples/random_labels not present")
    spec = importlib.util.spec_from_file_location("random_labels_task", folder / "task.py")
    task = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(task)
    m = task.run(model="mlp", dataset="digits", corruption=0.5, epochs=2, train_size=300,
                 seed=4)
    json.dumps(m)
    assert m["epochs_trained"] == 2 and m["parameters"] == 64 * 512 + 512 + 5130
    assert 0.3 < m["labels_changed"] < 0.6 and m["test_error"] == pytest.approx(1 - m["test_acc"])
    for name in ("experiment.toml", "experiment-cifar10.toml"):
        exp = pb.load(folder / name)
        points = [exp.space[i] for i in range(len(exp.space))]
        assert {p["corruption"] for p in points} == {0.0, 0.2, 0.4, 0.6, 0.8, 1.0}
        assert {"mlp", "mini_alexnet"} <= {p["model"] for p in points}


@pytest.mark.slow
def test_two_experiments_with_the_same_grid_train_each_their_own(tmp_path, monkeypatch):
    """A checkpoint=True task never resumes another experiment's (or a --rerun's old)
    checkpoint: task folders belong to one experiment and one attempt lineage."""
    from pushbutton import Experiment, grid
    (tmp_path / "dltask.py").write_text(
        "import torch\n"
        "from pushbutton.dl.torch import data, models, train\n"
        "def run(epochs):\n"
        "    torch.set_num_threads(1)\n"
        "    tr, te = data.etl('digits', train_size=200, batch_size=50, seed=1)\n"
        "    torch.manual_seed(0)\n"
        "    net = models.mlp([32], input_shape=tr.input_shape)\n"
        "    m = train.train(net, torch.nn.CrossEntropyLoss(), train.sgd(net), tr, te,\n"
        "                    epochs=epochs, checkpoint=True)\n"
        "    return {'resumed_from': m['resumed_from'], 'epochs': m['epochs']}\n")
    monkeypatch.chdir(tmp_path)
    runs = []
    for name in ("dl-a", "dl-b"):
        exp = Experiment(name, function="dltask:run", space=grid(epochs=[2]), workers=1)
        exp.run()
        runs.append(exp.results())
    exp.run(rerun=True)
    runs.append(exp.results())
    for df in runs:
        assert (df["pb_status"] == "done").all(), df.to_dict("records")
        assert df["resumed_from"].isna().all() and (df["epochs"] == 2).all()
    assert runs[0]["pb_task_id"][0] == runs[1]["pb_task_id"][0]  # same parameters, same task id
