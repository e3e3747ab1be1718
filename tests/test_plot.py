"""Plots (matplotlib, optional extra): what each picture shows, and a clear message without matplotlib."""

import builtins
import json
import re
from pathlib import Path

import pytest

from memory_models.conversion import safe_io
from memory_models.training import plot

pytest.importorskip("matplotlib")

SUMMARY = {
    "steps": 4,
    "config": {"preset": "memory-transformer-tiny", "objective": "combined", "context": 32, "per_device_batch_size": 2},
    "train_loss_history": [[1, 9.1], [2, 8.7], [3, 8.2], [4, 7.9]],
    "eval_history": {"eval_clm_loss": [[2, 8.8], [4, 8.0]], "eval_clm_accuracy": [[2, 0.05], [4, 0.09]],
                     "eval_copy_accuracy": [[2, 0.04], [4, 0.11]]},
}


def png_size(path):
    from matplotlib import image

    return image.imread(path).shape


def svg_text(path):
    return path.read_text()


def test_training_plot_names_axes_series_and_command(tmp_path):
    """The training plot has a loss and an accuracy panel, a legend entry per series and the run in its title."""
    png, svg = plot.plot_training(SUMMARY, tmp_path / "curve")
    assert (png.name, svg.name) == ("curve.png", "curve.svg")
    height, width, _ = png_size(png)
    assert width > height > 200
    text = svg_text(svg)
    for label in ("train loss (combined objective)", "clm loss", "clm accuracy", "copy accuracy", "optimizer step",
                  "cross-entropy (nats)", "--preset memory-transformer-tiny --objective combined (4 steps"):
        assert label in text, label
    given = {**SUMMARY, "config": {**SUMMARY["config"], "preset": None, "model_class": "MemoryForCausalLM",
                                   "model_type": "memory_model"}}  # `train.run(job, model=...)`
    _, svg = plot.plot_training(given, tmp_path / "given")
    assert "train (MemoryForCausalLM, memory_model) --objective combined" in svg_text(svg)


def test_a_single_stream_that_is_the_loss_is_drawn_once(tmp_path):
    """Copy + blank copy trains one stream (`loss_copy`) that equals the total loss: the plot draws the total alone
    (a second curve would hide under it); a single stream that differs from it (another weight) is drawn."""
    losses = SUMMARY["train_loss_history"]
    same = {**SUMMARY, "config": {**SUMMARY["config"], "objective": "copy_and_blank_copy"},
            "train_stream_loss_history": {"loss_copy": [[step, round(value, 4)] for step, value in losses]}}
    text = svg_text(plot.plot_training(same, tmp_path / "same")[1])
    assert "train loss (copy_and_blank_copy objective)" in text and "train loss_copy" not in text
    halved = {**same, "train_stream_loss_history": {"loss_copy": [[step, 2 * value] for step, value in losses]}}
    text = svg_text(plot.plot_training(halved, tmp_path / "halved")[1])
    assert "train loss (copy_and_blank_copy: weighted sum)" in text and "train loss_copy" in text


def test_the_training_plot_keeps_its_legends_under_the_panels(tmp_path, monkeypatch):
    """Each panel's legend sits below its axes (inside, a long legend hid the demo's curves), and the two legends
    do not overlap."""
    figures = []
    monkeypatch.setattr(plot, "save_figure", lambda figure, output: figures.append(figure) or [])
    plot.plot_training({**SUMMARY, "train_stream_loss_history": {"loss_clm": [[1, 4.0]], "loss_copy": [[1, 5.0]]}},
                       tmp_path / "curve")
    (figure,) = figures
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    boxes = []
    for axis in figure.axes:
        legend, frame = axis.get_legend().get_window_extent(renderer), axis.get_window_extent(renderer)
        assert legend.y1 < frame.y0, (legend, frame)  # display coordinates: y grows upwards
        boxes.append(legend)
    assert len(boxes) == 2 and not boxes[0].overlaps(boxes[1])


def drawn_training_figure(summary, monkeypatch):
    """The figure `plot_training` draws for `summary`, drawn, and its renderer."""
    figures = []
    monkeypatch.setattr(plot, "save_figure", lambda figure, output: figures.append(figure) or [])
    plot.plot_training(summary, "unused")
    (figure,) = figures
    figure.canvas.draw()
    return figure, figure.canvas.get_renderer()


def test_tiny_accuracies_keep_the_panels_apart_and_steps_are_whole(monkeypatch):
    """A 2-step run's accuracies of about 1% (0.0125-style tick labels) do not push the accuracy panel's label into
    the loss panel, and its step axis shows 1 and 2, not 1.0, 1.2, ..."""
    tiny = {**SUMMARY, "steps": 2, "train_loss_history": [[1, 5.71], [2, 5.68]],
            "eval_history": {"eval_blank_copy_accuracy": [[1, 0.0179], [2, 0.0179]],
                             "eval_clm_accuracy": [[1, 0.0081], [2, 0.0162]], "eval_copy_accuracy": [[1, 0], [2, 0]]}}
    figure, renderer = drawn_training_figure(tiny, monkeypatch)
    loss, accuracy = figure.axes
    assert loss.get_window_extent(renderer).x1 < accuracy.yaxis.label.get_window_extent(renderer).x0
    for axis in (loss, accuracy):
        low, high = axis.get_xlim()
        shown = [label.get_text() for label in axis.get_xticklabels() if low <= label.get_position()[0] <= high]
        assert shown == ["1", "2"], shown


def test_both_files_are_cropped_as_a_tight_crop_would(tmp_path, monkeypatch):
    """`save_figure` measures the crop once for the PNG and the SVG; the PNG matches matplotlib's own
    `bbox_inches="tight"` within a few pixels."""
    figure, _ = drawn_training_figure(SUMMARY, monkeypatch)
    figure.savefig(tmp_path / "tight.png", dpi=150, bbox_inches="tight")
    monkeypatch.undo()
    png, svg = plot.save_figure(figure, tmp_path / "once")
    (height, width, _), (tight_height, tight_width, _) = png_size(png), png_size(tmp_path / "tight.png")
    assert abs(width - tight_width) <= 8 and abs(height - tight_height) <= 8, (width, height, tight_width, tight_height)
    points = [float(v) for v in re.search(r'width="([\d.]+)pt" height="([\d.]+)pt"', svg_text(svg)).groups()]
    assert points == pytest.approx([width * 72 / 150, height * 72 / 150], abs=1.0)


def test_an_eval_loss_far_above_training_stays_off_the_loss_axis(tmp_path):
    """An evaluation of a stream the run does not train (a blank-copy model's next-token loss, ~20 nats) does not
    stretch the loss axis: a series over twice the highest training loss is named off scale and the axis ends just
    above the others; one that is merely higher (the control's 8.4 against 6.7) stays on the axis."""
    losses = {"train loss": [(1, 6.0), (2, 1.0)], "eval blank copy loss": [(2, 0.9)], "eval clm loss": [(2, 20.9)]}
    top, above = plot.loss_axis_top(losses)
    assert top == pytest.approx(6.6) and above == ["eval clm loss"]
    assert plot.loss_axis_top({**losses, "eval clm loss": [(2, 8.4)]}) == (None, [])
    summary = {**SUMMARY, "eval_history": {**SUMMARY["eval_history"], "eval_clm_loss": [[2, 8.8], [4, 20.9]]}}
    _, svg = plot.plot_training(summary, tmp_path / "curve")
    assert "clm loss (off scale: last 20.9)" in svg_text(svg)


def test_retention_plot_has_one_line_per_encoder(tmp_path):
    """`plot retention` with two JSON files draws both encoders on log2 context axes."""
    for name, accuracy in (("autoencoder", 0.9), ("causal", 0.2)):
        rows = [{"context": c, "loss": 1.0, "entropy_ratio": accuracy / 2, "accuracy": accuracy / c * 8,
                 "encoder": name, "steps": 10} for c in (8, 16, 32)]
        (tmp_path / f"{name}.json").write_text(json.dumps({"settings": {"encoder": f"runs/{name}/final",
                                                                        "dataset": "records", "steps": 10},
                                                           "results": rows}))
    assert plot.main(["retention", str(tmp_path / "autoencoder.json"), str(tmp_path / "causal.json"),
                      "--output", str(tmp_path / "retention")]) == 0
    text = svg_text(tmp_path / "retention.svg")
    for label in ("runs/autoencoder/final", "runs/causal/final", "context length n_ctx (tokens)",
                  "reconstruction accuracy (%)", "H_r = 1 - CE / ln V", "--dataset records --steps 10"):
        assert label in text, label
    assert text.count("runs/causal/final") == 2  # one legend entry in each panel


def test_plot_rejects_empty_inputs(tmp_path):
    """Nothing to plot is a ValueError naming what was given, and no file is written."""
    with pytest.raises(ValueError, match="no finite loss"):
        plot.plot_training({"train_loss_history": [], "eval_history": {}}, tmp_path / "empty")
    with pytest.raises(ValueError, match="neither training nor inference"):
        plot.plot_benchmark({"training": [], "inference": []}, tmp_path / "empty")
    with pytest.raises(ValueError, match="takes one JSON file, got 2"):
        (tmp_path / "a.json").write_text("{}")
        plot.main(["training", str(tmp_path / "a.json"), str(tmp_path / "a.json"), "--output", str(tmp_path / "x")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_without_matplotlib_the_message_names_the_extra(monkeypatch, tmp_path, capsys):
    """Without matplotlib, plotting raises ImportError naming `[plot]`; writers beside JSON skip with the hint."""
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.split(".")[0] == "matplotlib":
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ImportError, match=r"\[plot\]"):
        plot.plot_training(SUMMARY, tmp_path / "curve")
    assert plot.plot_beside(tmp_path / "metrics.json", lambda stem: plot.plot_training(SUMMARY, stem)) == []
    assert "[plot]" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_accuracy_curves_share_one_legend_and_a_model_keeps_its_colour(tmp_path):
    """`plot_curves` (reproduce's pictures): one legend for all panels with each model once, and a model that has
    no curve in one panel does not shift the colours of the others there."""
    names = ["combined objective", "causal objective", "memories ablated"]
    curves = {name: {"copy accuracy": [[(1, 0.1 * i), (2, 0.2 * i)]]} for i, name in enumerate(names, 1)}
    for name in names[1:]:
        curves[name]["CLM accuracy"] = [[(1, 0.2), (2, 0.3)]]
    (png, svg) = plot.plot_curves(curves, tmp_path / "curves", "title")
    text = svg_text(svg)
    assert png.stat().st_size > 0 and all(text.count(name) == 1 for name in names)
    # data lines (and their legend handles) are the 1.5-wide strokes: the first model (one panel) has 2, the others 3
    strokes = re.findall(r"stroke: (#[0-9a-f]{6}); stroke-width: 1.5", text)
    assert {colour: strokes.count(colour) for colour in set(strokes)} == {"#1f77b4": 2, "#ff7f0e": 3, "#2ca02c": 3}


def test_plot_replaces_its_own_pictures_and_never_a_file_of_yours(tmp_path):
    """Every picture carries memory-models' mark in its metadata, so `plot --output STEM` draws again over its own
    STEM.png / STEM.svg; a file it did not draw at either path is a ValueError naming it, and stays as it was."""
    (tmp_path / "metrics.json").write_text(json.dumps(SUMMARY))
    command = ["training", str(tmp_path / "metrics.json"), "--output", str(tmp_path / "curve")]
    assert plot.main(command) == 0
    for name in ("curve.png", "curve.svg"):
        assert safe_io.is_our_picture(tmp_path / name), name
    assert plot.main(command) == 0  # a rerun over its own pictures
    (tmp_path / "curve.svg").write_text("<svg>my drawing</svg>")
    with pytest.raises(ValueError, match=r"curve\.svg.*did not draw"):
        plot.main(command)
    assert (tmp_path / "curve.svg").read_text() == "<svg>my drawing</svg>"
    (tmp_path / "mine.png").write_bytes(b"\x89PNG my picture")
    with pytest.raises(ValueError, match=r"mine\.png.*did not draw"):
        plot.main(["training", str(tmp_path / "metrics.json"), "--output", str(tmp_path / "mine.png")])
    assert (tmp_path / "mine.png").read_bytes() == b"\x89PNG my picture" and not (tmp_path / "mine.svg").exists()


def test_a_failed_save_leaves_the_pictures_as_they_were(tmp_path, monkeypatch):
    """A picture is written to a hidden file and renamed into place: a save that fails half-way (here after
    writing part of the file) leaves the earlier picture untouched and no temporary file behind."""
    png, _ = plot.plot_training(SUMMARY, tmp_path / "curve")
    before = png.read_bytes()
    figure, _ = drawn_training_figure(SUMMARY, monkeypatch)
    monkeypatch.undo()

    def broken(path, **kwargs):
        Path(path).write_bytes(b"half a picture")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(figure, "savefig", broken)
    with pytest.raises(OSError, match="No space left"):
        plot.save_figure(figure, tmp_path / "curve")
    assert png.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.png", "curve.svg"]
