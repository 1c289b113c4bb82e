"""What a run predicted: the time-lapse frames of its fixed validation windows (one per epoch,
written by training to RUN/previews/) for the run page's slider and play button."""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from seg import fs as segfs
from seg.training.timelapse import caption, frame_path, frames
from seg.ui.roots import Refused
from seg.ui.state import named_run


def frame_list(run_dir: str, records: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """[{epoch, step, miou, caption}] in epoch order; a run without frames gives [].
    `records`: metrics.jsonl's lines when the caller has read them already."""
    return [
        {**{k: v for k, v in dataclasses.asdict(f).items() if k != "path"}, "caption": caption(f)}
        for f in frames(run_dir, records)
    ]


async def frame_png(request: Request) -> Response:
    """GET /frame/EPOCH/RUN: that epoch's image | truth | prediction PNG."""
    name, run_dir = named_run(request)
    epoch = int(request.path_params["epoch"])
    path = frame_path(run_dir, epoch)
    if not segfs.exists(path):
        raise Refused(f"run {name!r} has no frame for epoch {epoch}")
    # no-cache: a resumed epoch rewrites its frame
    return Response(segfs.read_bytes(path), media_type="image/png",
                    headers={"Cache-Control": "no-cache"})  # fmt: skip
