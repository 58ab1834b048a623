"""Figure 1 analogues of Zhang et al. (2017) from a finished (or partial) random-labels sweep,
plus a summary table printed as Markdown.

    cd <the folder you ran `pb run` from>
    python <this folder>/figures.py [experiment.toml] [--out figures/]

  fig1a-<model>.png  training loss per epoch, one curve per corruption level (mean over reps)
  fig1b.png          epochs to reach the fit threshold vs corruption, per model
  fig1c.png          test error vs corruption, per model (chance = 0.9)
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent


def summary(df):
    """One row per (model, corruption): means over replicates."""
    done = df[df["pb_status"] == "done"]
    done = done.assign(trained=done["epochs_trained"])  # the parameter "epochs" is the cap
    cols = ["train_acc", "test_acc", "test_error", "epochs_to_fit", "trained", "labels_changed",
            "seconds"]
    cols = [c for c in cols if c in done.columns]
    g = done.groupby(["model", "corruption"])[cols]
    out = g.mean()
    out["reps"] = g.size()
    out["fitted"] = done.groupby(["model", "corruption"])["fitted"].mean()
    return out.reset_index()


def markdown(table) -> str:
    head = ("| model | corruption | reps | labels changed | final train acc | test error | "
            "epochs to fit | seconds per run |")
    lines = [head, "|" + "---|" * 8]
    for r in table.itertuples():
        etf = "-" if r.epochs_to_fit != r.epochs_to_fit else f"{r.epochs_to_fit:.1f}"
        if r.fitted < 1:
            etf += f" ({r.fitted:.0%} fitted in {r.trained:.0f})"
        lines.append(f"| {r.model} | {r.corruption:.1f} | {r.reps} | {r.labels_changed:.3f} | "
                     f"{r.train_acc:.4f} | {r.test_error:.3f} | {etf} | {r.seconds:.0f} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec", nargs="?", default=str(HERE / "experiment.toml"))
    ap.add_argument("--out", default="figures")
    ap.add_argument("--project", default=None, help="folder holding .pushbutton (default: cwd)")
    a = ap.parse_args(argv)

    import matplotlib
    matplotlib.use("Agg")
    import pushbutton as pb
    from pushbutton.analysis import figures as F

    exp = pb.load(a.spec, project=a.project or os.getcwd())
    try:
        df = exp.results()
    except TypeError:  # older pandas-incompatible results(): read the done rows directly
        df = exp.sql("SELECT * FROM results")
    series = exp.series()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    units = {"corruption": "fraction of labels randomised"}
    if "inputs" in df.columns and df["inputs"].nunique() > 1:  # experiment-pixels.toml
        fig = F.learning_curves(series, metric="train_loss", hue="inputs", logy=True,
                                title="MLP: training loss, true labels, randomised inputs")
        fig.axes[0].set_xlabel("epoch")
        F.save(fig, out / "fig1a-inputs", formats=("png",))
        done = df[df["pb_status"] == "done"]
        done = done.assign(trained=done["epochs_trained"])
        print(done.groupby("inputs")[["train_acc", "test_error", "epochs_to_fit", "trained",
                                      "seconds"]].mean().round(4).to_string())
        print(f"\nfigures in {out}/")
        return
    for model in sorted(df["model"].dropna().unique()):
        part = series[series["model"] == model] if len(series) else series
        fig = F.learning_curves(part, metric="train_loss", hue="corruption", units=units,
                                title=f"{model}: training loss (Fig. 1a)", x="pb_step")
        fig.axes[0].set_xlabel("epoch")
        F.save(fig, out / f"fig1a-{model}", formats=("png",))
    fig = F.line(df, x="corruption", y="epochs_to_fit", hue="model", units=units,
                 title="Epochs to fit vs label corruption (Fig. 1b)")
    F.save(fig, out / "fig1b", formats=("png",))
    fig = F.line(df, x="corruption", y="test_error", hue="model", units=units,
                 title="Test error vs label corruption (Fig. 1c)")
    fig.axes[0].axhline(0.9, color="grey", ls="--", lw=1)
    F.save(fig, out / "fig1c", formats=("png",))
    table = summary(df)
    print(markdown(table))
    print(f"\nfigures in {out}/")


if __name__ == "__main__":
    main()
