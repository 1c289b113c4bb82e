"""`evaluate()`: a predicted mask against truth -> metrics, a seam check, a report and a picture.

Truth is a label raster on exactly the prediction's grid (anything else is refused: resample it
first) or a vector file rasterised on that grid. Both are read in strips, so memory depends on
the width only. Pixels where truth is 255 (ignore) or the prediction has no data are left out
(the latter are counted). The seam check compares IoU in a band along the internal borders of
the prediction windows with IoU in the interior: a stitcher with seams scores worse in the band.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rasterio.crs import CRS

from seg import fs as segfs
from seg.classes import IGNORE
from seg.errors import ConfigError, InputError
from seg.evaluation.metrics import ConfusionMatrix, boundary_counts, boundary_f1, scores
from seg.evaluation.overlay import overlay_png
from seg.geo.grid import Window, axis_offsets
from seg.geo.labels import SceneLabels, VectorLabels, is_vector, stem
from seg.geo.raster import SceneInfo, open_raster, scene_info

STRIP = 512


@dataclass
class Report:
    data: dict[str, Any]
    markdown: str
    files: list[str] = field(default_factory=list)


def border_lines(length: int, size: int, stride: int, band: int) -> np.ndarray:
    """(length,) bool: within `band` px of a window edge that lies inside the scene."""
    near = np.zeros(length, bool)
    edges: set[int] = set()
    for o in axis_offsets(length, size, stride):
        edges.update(e for e in (o, o + size) if 0 < e < length)
    for e in edges:
        near[max(0, e - band) : min(length, e + band)] = True
    return near


def check_aligned(info: SceneInfo, truth: str) -> None:
    """Refuse a truth raster that is not on exactly the prediction's grid."""
    with open_raster(truth) as ds:
        problems = []
        if (ds.width, ds.height) != (info.width, info.height):
            problems.append(f"size {ds.width}x{ds.height} vs {info.width}x{info.height}")
        if ds.crs is not None and info.crs_wkt and ds.crs != CRS.from_wkt(info.crs_wkt):
            problems.append(f"CRS {ds.crs.to_string()} vs {CRS.from_wkt(info.crs_wkt).to_string()}")
        tol = abs(info.transform[0]) * 1e-3
        if not np.allclose(tuple(ds.transform)[:6], info.transform, rtol=0, atol=tol):
            problems.append("transform (origin or pixel size) differs")
        if problems:
            raise InputError(
                f"truth {truth} does not align with the prediction: {'; '.join(problems)};"
                " resample it onto the prediction's grid (gdalwarp -te/-ts/-t_srs) or pass the"
                " vector labels instead"
            )


def window_geometry(
    tags: dict[str, str], window_size: int | None, overlap: int | None
) -> tuple[int, int] | None:
    """(size, stride) from the flags, else from the mask's SEG_WINDOW tag; None if unknown."""
    if window_size is None and "SEG_WINDOW" in tags:
        saved = json.loads(tags["SEG_WINDOW"])
        window_size = int(saved["size"])
        overlap = int(saved["overlap"]) if overlap is None else overlap
    if window_size is None:
        return None
    overlap = overlap or 0
    if window_size < 1:
        raise ConfigError(f"--window-size {window_size} must be 1 or more (the predict window)")
    if not 0 <= overlap < window_size:
        raise ConfigError(f"--overlap {overlap} must be in 0..{window_size - 1}")
    return window_size, window_size - overlap


def markdown(data: dict[str, Any]) -> str:
    rows = [
        "| class | IoU | F1 | precision | recall | boundary F1 | support |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in data["per_class"].items():
        rows.append(
            f"| {name} | {m['iou']:.4f} | {m['f1']:.4f} | {m['precision']:.4f} |"
            f" {m['recall']:.4f} | {m['boundary_f1']:.4f} | {m['support']} |"
        )
    rows.append("")
    rows.append(
        f"mean IoU **{data['miou']:.4f}**, mean F1 {data['mf1']:.4f},"
        f" pixel accuracy {data['accuracy']:.4f}"
    )
    seams = data.get("seams")
    if seams:
        rows.append(
            f"seams: mean IoU {seams['border_miou']:.4f} within {seams['band']} px of internal"
            f" window borders vs {seams['interior_miou']:.4f} inside windows"
            f" ({seams['border_pixels']} / {seams['interior_pixels']} pixels)"
        )
    if data["unpredicted_pixels"]:
        rows.append(f"{data['unpredicted_pixels']} labelled pixels have no prediction (left out)")
    return "\n".join(rows)


@dataclass
class SceneScore:
    """One mask scored against its truth: the raw counts, to report or to pool with others."""

    prediction: str
    truth: str
    info: SceneInfo
    tags: dict[str, str]
    source: str | VectorLabels  # the truth as read (a raster path or rasterised vectors)
    classes: list[str] | None  # the mask's class names (SEG_CLASSES), if it has them
    cm: np.ndarray  # (255, 255) int64: every possible id, trimmed when reported
    cm_border: np.ndarray
    cm_inner: np.ndarray
    boundary: dict[int, np.ndarray]  # class id -> boundary F1 counts
    unpredicted: int
    geometry: tuple[int, int] | None  # (window size, stride) of the prediction, if known
    border: int

    def names(self, cm: np.ndarray | None = None) -> list[str]:
        """Class names for the ids seen (the mask's names, then ids as names)."""
        cm = self.cm if cm is None else cm
        used = [c for c in range(IGNORE) if cm[c].sum() or cm[:, c].sum()]
        k = max(len(self.classes or []), 2, max(used, default=0) + 1)
        return (self.classes or []) + [str(i) for i in range(len(self.classes or []), k)]


def score_mask(
    prediction: str,
    truth: str,
    *,
    window_size: int | None = None,
    overlap: int | None = None,
    border: int = 8,
    label_attr: str | None = None,
    label_crs: str | None = None,
) -> SceneScore:
    """Count `prediction` against `truth` in strips (memory: the width only)."""
    with open_raster(prediction) as ds:
        if ds.count != 1 or ds.dtypes[0] != "uint8":
            raise InputError(f"{prediction} is not a class mask (1 band of uint8 class ids)")
        info = scene_info(ds, prediction, [1], pixel_space=True)
        tags = ds.tags()
    classes = json.loads(tags["SEG_CLASSES"]) if "SEG_CLASSES" in tags else None
    source: str | VectorLabels
    if is_vector(truth):
        source = VectorLabels.load(
            truth, label_attr, classes or ["background", "foreground"], crs_override=label_crs
        )
    else:
        check_aligned(info, truth)
        source = truth
    labels = SceneLabels(info, source)
    geometry = window_geometry(tags, window_size, overlap)
    near_rows = near_cols = None
    if geometry is not None:
        near_rows = border_lines(info.height, *geometry, border)
        near_cols = border_lines(info.width, *geometry, border)

    # Counted for every possible id (255 x 255 is small), trimmed to the classes seen at the end.
    cm, cm_border, cm_inner = (ConfusionMatrix(IGNORE) for _ in range(3))
    bcounts: dict[int, np.ndarray] = {}
    unpredicted = 0
    with open_raster(prediction) as ds:
        for r in range(0, info.height, STRIP):
            h = min(STRIP, info.height - r)
            pred = ds.read(1, window=Window(r, 0, h, info.width).to_rasterio())  # (h, W)
            t = labels.strip(r, h)  # (h, W)
            top = int(t[t != IGNORE].max(initial=0))
            if classes and top >= len(classes):
                raise InputError(
                    f"truth {truth} holds class id {top} but the mask's classes are {classes};"
                    " score against labels of the same classes"
                )
            missing = (pred == IGNORE) & (t != IGNORE)
            unpredicted += int(missing.sum())
            t = np.where(missing, IGNORE, t).astype(np.uint8)
            cm.update(pred, t)
            for c in np.union1d(np.unique(pred), np.unique(t)):
                if c != IGNORE:
                    bcounts[int(c)] = bcounts.get(int(c), 0) + boundary_counts(pred, t, int(c))
            if near_rows is not None and near_cols is not None:
                band = near_rows[r : r + h, None] | near_cols[None, :]  # (h, W)
                cm_border.update(pred, np.where(band, t, IGNORE))
                cm_inner.update(pred, np.where(band, IGNORE, t))
    return SceneScore(prediction, truth, info, tags, source, classes, cm.cm, cm_border.cm,
                      cm_inner.cm, bcounts, unpredicted, geometry, border)  # fmt: skip


def summarise(
    score: SceneScore,
    *,
    cm: np.ndarray | None = None,
    cm_border: np.ndarray | None = None,
    cm_inner: np.ndarray | None = None,
    boundary: dict[int, np.ndarray] | None = None,
    unpredicted: int | None = None,
) -> dict[str, Any]:
    """The report's figures from a scene's counts, or from counts pooled over scenes (given)."""
    cm = score.cm if cm is None else cm
    cm_border = score.cm_border if cm_border is None else cm_border
    cm_inner = score.cm_inner if cm_inner is None else cm_inner
    boundary = score.boundary if boundary is None else boundary
    names = score.names(cm)
    k = len(names)
    data = scores(cm[:k, :k], names)
    for c, name in enumerate(names):
        data["per_class"][name]["boundary_f1"] = boundary_f1(boundary.get(c, np.zeros(4)))
    data.update(
        prediction=score.prediction,
        truth=score.truth,
        classes=names,
        unpredicted_pixels=score.unpredicted if unpredicted is None else unpredicted,
        seams=None,
    )
    if score.geometry is not None and cm_border.sum() + cm_inner.sum():
        data["seams"] = {
            "window_size": score.geometry[0],
            "stride": score.geometry[1],
            "band": score.border,
            "border_miou": scores(cm_border[:k, :k])["miou"],
            "interior_miou": scores(cm_inner[:k, :k])["miou"],
            "border_pixels": int(cm_border.sum()),
            "interior_pixels": int(cm_inner.sum()),
        }
    return data


def evaluate(
    prediction: str,
    truth: str,
    *,
    out: str | None = None,
    image: str | None = None,
    window_size: int | None = None,
    overlap: int | None = None,
    border: int = 8,
    label_attr: str | None = None,
    label_crs: str | None = None,
) -> Report:
    """Score `prediction` against `truth`; write report.json, report.md, overlay.png to `out`."""
    score = score_mask(
        prediction, truth, window_size=window_size, overlap=overlap, border=border,
        label_attr=label_attr, label_crs=label_crs,
    )  # fmt: skip
    data = summarise(score)
    report = Report(data, markdown(data))
    report.files = write_report(
        report, prediction, out=out, info=score.info, truth=score.source, image=image,
        tags=score.tags,
    )  # fmt: skip
    return report


def write_report(
    report: Report,
    prediction: str,
    *,
    out: str | None,
    info: SceneInfo,
    truth: str | VectorLabels,
    image: str | None,
    tags: dict[str, str],
) -> list[str]:
    folder = out or (os.path.splitext(prediction)[0] + "_eval")
    if image is None and tags.get("SEG_SOURCE") and segfs.exists(tags["SEG_SOURCE"]):
        image = tags["SEG_SOURCE"]
    png = overlay_png(info, prediction, truth, image)
    body = {
        "report.json": json.dumps(report.data, indent=2).encode(),
        "report.md": (f"# {stem(prediction)}\n\n" + report.markdown + "\n").encode(),
        "overlay.png": png,
    }
    try:
        files = segfs.write_files_atomic(folder, body)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise
        raise InputError(
            f"cannot write the report to {folder}: {exc}; choose a writable --out"
        ) from exc
    return files
