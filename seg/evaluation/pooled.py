"""Many masks scored at once: a test split or a folder of predictions against a folder of truth.

Each mask is scored in strips (`score_mask`), and only its counts are kept, so memory does not
grow with the number of scenes. The pooled figures come from the summed confusion matrices
(every pixel counts once, as when the scenes were one big scene), beside a per-scene table and
overlays of the worst scenes. Written: report.json, report.md, and report.html, a single file
that needs nothing else (its pictures are inside it).
"""

from __future__ import annotations

import base64
import errno
import html
import json
import os
from dataclasses import dataclass, field
from typing import Any

from seg import fs as segfs
from seg.errors import InputError
from seg.evaluation.evaluate import markdown, score_mask, summarise
from seg.evaluation.overlay import overlay_png
from seg.geo.labels import match_labels, stem
from seg.geo.raster import SceneInfo, expand_inputs, open_raster
from seg.report import SILENT, Reporter

MASK_SUFFIX = "_mask"  # what `seg predict` appends to a scene's name


@dataclass(frozen=True)
class Pair:
    """A predicted mask, its truth, and the scene it was predicted from (for the overlay)."""

    scene: str  # the scene's id (its file name without extension)
    prediction: str
    truth: str
    image: str | None = None


@dataclass
class PooledReport:
    data: dict[str, Any]
    markdown: str
    files: list[str] = field(default_factory=list)


def pair_masks(predictions: list[str], truth: str) -> list[Pair]:
    """Predicted masks (files, folders, globs) and their truth rasters in the folder `truth`,
    matched by the scene's name as `seg tile` matches labels (`x.tif` <- `x_mask.tif`, ...)."""
    masks = expand_inputs(predictions)
    sources: dict[str, str | None] = {}
    for mask in masks:
        with open_raster(mask) as ds:
            tags = ds.tags()
        if "SEG_CLASSES" not in tags:
            continue  # not a seg mask (a label or a scene in the same folder)
        source = tags.get("SEG_SOURCE")
        sources[mask] = source if source and segfs.exists(source) else None
    if not sources:
        raise InputError(f"no mask written by seg predict in {', '.join(predictions)}")
    ids = {m: stem(s) if s else stem(m).removesuffix(MASK_SUFFIX) for m, s in sources.items()}
    dupes = sorted({i for i in ids.values() if list(ids.values()).count(i) > 1})
    if dupes:
        raise InputError(f"several masks are of the same scene(s) {dupes[:5]}; score them apart")
    # Neither a mask nor the scene it was predicted from can be a truth.
    taken = {_real(p) for p in sources} | {_real(s) for s in sources.values() if s}
    files = [f for f in expand_inputs([truth]) if _real(f) not in taken]
    virtual = {f"{i}.tif": m for m, i in ids.items()}  # scene names, for the name rule
    _, found = match_labels(sorted(virtual), files)
    return [Pair(stem(v), virtual[v], found[v], sources[virtual[v]]) for v in sorted(virtual)]


def _real(path: str) -> str:
    return path if segfs.is_remote(path) else os.path.realpath(path)


def evaluate_many(
    pairs: list[Pair],
    *,
    out: str,
    border: int = 8,
    worst: int = 3,
    reporter: Reporter = SILENT,
) -> PooledReport:
    """Score every pair; pool the counts; write report.json / .md / .html (+ overlays) to `out`."""
    if not pairs:
        raise InputError("no masks to score")
    total: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    grids: dict[str, SceneInfo] = {}
    first = None
    with reporter.bar("scenes", len(pairs)) as bar:
        for pair in pairs:
            score = score_mask(pair.prediction, pair.truth, border=border)
            grids[pair.scene] = score.info  # small: for the worst scenes' overlays
            if first is None:
                first = score
            elif score.classes != first.classes:
                raise InputError(
                    f"{pair.prediction} has classes {score.classes}, {first.prediction} has"
                    f" {first.classes}: masks of different models cannot be pooled"
                )
            for key in ("cm", "cm_border", "cm_inner"):
                total[key] = total.get(key, 0) + getattr(score, key)
            total["unpredicted"] = total.get("unpredicted", 0) + score.unpredicted
            bounds = total.setdefault("boundary", {})
            for c, counts in score.boundary.items():
                bounds[c] = bounds.get(c, 0) + counts
            one = summarise(score)
            rows.append(
                {
                    "scene": pair.scene,
                    "prediction": pair.prediction,
                    "truth": pair.truth,
                    "miou": one["miou"],
                    "pixels": int(score.cm.sum()),
                    "iou": {n: v["iou"] for n, v in one["per_class"].items()},
                    "seams": one["seams"],
                }
            )
            bar.advance()
    assert first is not None
    data = summarise(
        first,
        cm=total["cm"],
        cm_border=total["cm_border"],
        cm_inner=total["cm_inner"],
        boundary=total["boundary"],
        unpredicted=total["unpredicted"],
    )
    data.update(prediction=None, truth=None, scenes=rows)
    order = sorted(rows, key=lambda r: r["miou"])
    data["worst"] = [r["scene"] for r in order[:worst]]
    report = PooledReport(data, pooled_markdown(data))
    report.files = _write(report, out, {p.scene: p for p in pairs}, data["worst"], grids=grids)
    return report


def pooled_markdown(data: dict[str, Any]) -> str:
    rows = [f"{len(data['scenes'])} scenes, pooled (confusion matrices summed):", ""]
    rows.append(markdown(data))
    names = data["classes"]
    rows += ["", "| scene | mIoU | " + " | ".join(names) + " | pixels |"]
    rows.append("|---" * (len(names) + 3) + "|")
    for r in sorted(data["scenes"], key=lambda r: r["miou"]):
        ious = " | ".join(f"{r['iou'].get(n, 0.0):.4f}" for n in names)
        rows.append(f"| {r['scene']} | {r['miou']:.4f} | {ious} | {r['pixels']} |")
    return "\n".join(rows)


def _write(
    report: PooledReport,
    out: str,
    pairs: dict[str, Pair],
    worst: list[str],
    *,
    grids: dict[str, SceneInfo],
) -> list[str]:
    pictures = {}
    for scene in worst:
        p = pairs[scene]
        pictures[scene] = overlay_png(grids[scene], p.prediction, p.truth, p.image)
    body = {
        "report.json": json.dumps(report.data, indent=2).encode(),
        "report.md": ("# seg eval\n\n" + report.markdown + "\n").encode(),
        "report.html": page(report.data, pictures).encode(),
        **{f"overlays/{scene}.png": png for scene, png in pictures.items()},
    }
    try:  # all or nothing: a full disk leaves no report without its pictures
        files = segfs.write_files_atomic(out, body)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise
        reason = f"cannot write the report to {out}: {exc}"
        raise InputError(f"{reason}; choose a writable --out") from exc
    return files


def page(data: dict[str, Any], pictures: dict[str, bytes]) -> str:
    """The report as one HTML file: tables and the worst scenes' overlays, nothing fetched."""
    names = data["classes"]
    esc = html.escape

    def table(head: list[str], body: list[list[str]]) -> str:
        th = "".join(f"<th>{esc(h)}</th>" for h in head)
        trs = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in body)
        return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"

    pooled = table(
        ["class", "IoU", "F1", "precision", "recall", "boundary F1", "support"],
        [
            [esc(n)]
            + [f"{m[k]:.4f}" for k in ("iou", "f1", "precision", "recall", "boundary_f1")]
            + [str(m["support"])]
            for n, m in data["per_class"].items()
        ],
    )
    scenes = table(
        ["scene", "mIoU", *names, "pixels"],
        [
            [esc(r["scene"]), f"{r['miou']:.4f}"]
            + [f"{r['iou'].get(n, 0.0):.4f}" for n in names]
            + [str(r["pixels"])]
            for r in sorted(data["scenes"], key=lambda r: r["miou"])
        ],
    )
    seams = data.get("seams")
    seam_line = (
        f"<p>Seams: mIoU {seams['border_miou']:.4f} within {seams['band']} px of internal window"
        f" borders vs {seams['interior_miou']:.4f} inside windows.</p>"
        if seams
        else ""
    )
    figures = "".join(
        f"<figure><img alt='{esc(s)}' src='data:image/png;base64,"
        f"{base64.b64encode(png).decode()}'><figcaption>{esc(s)}</figcaption></figure>"
        for s, png in pictures.items()
    )
    style = (
        "body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;"
        "margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}"
        "td:first-child,th:first-child{text-align:left}img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>seg eval</title>"
        f"<style>{style}</style></head><body><h1>seg eval: {len(data['scenes'])} scenes</h1>"
        f"<p>Mean IoU <b id='miou'>{data['miou']:.4f}</b>, mean F1 {data['mf1']:.4f}, pixel"
        f" accuracy {data['accuracy']:.4f} (confusion matrices summed over scenes).</p>"
        f"{pooled}{seam_line}<h2>Per scene, worst first</h2>{scenes}"
        f"<h2>Worst scenes</h2>{figures}</body></html>"
    )
