"""The Starlette app of `seg ui`: server-rendered pages, JSON for the charts, server-sent events
for live updates, POSTs (with a CSRF token) for everything that changes something.

Every page and endpoint reads run folders through `seg.ui.runs` (a broken run shows as broken)
and names them only through `Roots` (nothing outside --runs is reachable). A `SegError` becomes
a page or a JSON error naming the fix; anything else a one-line 500, never a traceback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from seg import fs as segfs
from seg.checkpoint import read_checkpoint
from seg.errors import SegError
from seg.inference.describe import describe
from seg.ui import actions, config_form, maps, predictions, queue
from seg.ui.activations import activations, checkpoint_of, window_count
from seg.ui.model_view import describe_network
from seg.ui.roots import Refused, Roots
from seg.ui.runs import list_runs, read_json, series, summarise
from seg.ui.state import HERE, UiState, named_run, page, ui_of

TOKEN_COOKIE = "seg_token"


class Guard(BaseHTTPMiddleware):
    """The token (when the server has one) on every request; the CSRF token on every POST."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        ui: UiState = request.app.state.ui
        given = request.query_params.get("token") or request.cookies.get(TOKEN_COOKIE, "")
        given = request.headers.get("x-seg-token", given)
        if ui.token and not hmac.compare_digest(given.encode(), ui.token.encode()):
            return PlainTextResponse("seg ui: a token is needed (the one seg ui printed)", 401)
        form = request.headers.get("content-type", "").startswith(FORM_TYPES)
        # a form POST carries the token as a field, checked where the form is read (posted_form)
        if request.method == "POST" and not form and not _same(request, "x-csrf-token"):
            return REFUSED
        response = await call_next(request)
        if ui.token and request.query_params.get("token"):
            response.set_cookie(TOKEN_COOKIE, ui.token, httponly=True, samesite="strict")
        return response


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
REFUSED = PlainTextResponse("seg ui: refused a POST without this page's token", 403)


def _same(request: Request, header: str) -> bool:
    sent = request.headers.get(header, "")
    return hmac.compare_digest(sent.encode(), ui_of(request).csrf.encode())


async def posted_form(request: Request) -> dict[str, str] | None:
    """The fields of a form POST, or None when it lacks this server's CSRF token."""
    form = {k: str(v) for k, v in (await request.form()).items()}
    if not hmac.compare_digest(form.get("csrf", "").encode(), ui_of(request).csrf.encode()):
        return None
    return form


def _summary(
    ui: UiState, name: str, run_dir: str, epochs: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    ui.launcher.reap()
    info = dataclasses.asdict(summarise(name, run_dir, epochs))
    if ui.launcher.children.get(run_dir) and info["state"] != "running":
        info["state"] = "starting"
    info["exit_code"] = ui.launcher.exits.get(run_dir)  # of a process this server started
    return info


def _payload(ui: UiState, name: str, run_dir: str) -> dict[str, Any]:
    """What the run page's charts and figures draw."""
    facts = read_json(segfs.join(run_dir, "run.json")) or {}
    seen = series(run_dir)  # metrics.jsonl read once for the charts and the summary
    run = _summary(ui, name, run_dir, seen.epochs)
    frames = predictions.frame_list(run_dir, seen.epochs)
    return {**dataclasses.asdict(seen), "run": run, "budget_s": facts.get("budget_s"),
            "frames": frames, "facts": facts}  # fmt: skip


async def runs_page(request: Request) -> Response:
    ui = ui_of(request)
    ui.launcher.reap()
    return page(request, "runs.html", runs=list_runs(ui.roots.runs))


async def run_page(request: Request) -> Response:
    name, run_dir = named_run(request)
    facts = read_json(segfs.join(run_dir, "run.json")) or {}
    return page(request, "run.html", run=_summary(ui_of(request), name, run_dir), facts=facts)


async def compare_page(request: Request) -> Response:
    names = request.query_params.getlist("run")
    for name in names:
        ui_of(request).roots.run_dir(name)
    return page(request, "compare.html", names=names, runs=list_runs(ui_of(request).roots.runs))


async def series_json(request: Request) -> Response:
    name, run_dir = named_run(request)
    return JSONResponse(_payload(ui_of(request), name, run_dir))


async def events(request: Request) -> Response:
    """Server-sent events: the run's series whenever its files change (checked every second)."""
    name, run_dir = named_run(request)
    ui = ui_of(request)

    async def stream() -> AsyncIterator[str]:
        last = ""
        while not await request.is_disconnected():
            blob = json.dumps(_payload(ui, name, run_dir))
            if blob != last:
                last = blob
                yield f"event: update\ndata: {blob}\n\n"
            else:
                yield ": quiet\n\n"  # a comment keeps proxies from closing the stream
            await asyncio.sleep(1.0)

    return StreamingResponse(stream(), media_type="text/event-stream")


async def model_page(request: Request) -> Response:
    name, run_dir = named_run(request)
    path = checkpoint_of(run_dir)
    if path is None:
        raise Refused(f"run {name!r} has no checkpoint yet: the model page reads last.pt")
    info, _ = read_checkpoint(path)
    view = await asyncio.to_thread(describe_network, info)
    layer = request.query_params.get("layer") or view.blocks[0].name
    window = int(request.query_params.get("window") or 0)
    windows = await asyncio.to_thread(window_count, run_dir)
    return page(request, "model.html", name=name, view=view, checkpoint=path.rsplit("/", 1)[-1],
                layer=layer, window=window, windows=windows)  # fmt: skip


async def activations_png(request: Request) -> Response:
    """GET /activations/RUN?layer=L&window=I: that layer's feature maps for preview window I."""
    _, run_dir = named_run(request)
    layer = request.query_params.get("layer", "")
    window = int(request.query_params.get("window") or 0)
    grid = await asyncio.to_thread(activations, run_dir, layer=layer, window=window)
    headers = {"Cache-Control": "no-cache", "X-Seg-Shape": "x".join(map(str, grid.shape)),
               "X-Seg-Channels": ",".join(map(str, grid.channels))}  # fmt: skip
    return Response(grid.png, media_type="image/png", headers=headers)


def _configs(ui: UiState) -> list[str]:
    if not ui.roots.configs or not segfs.exists(ui.roots.configs):
        return []
    fs, root = segfs.filesystem(ui.roots.configs)
    return sorted(p.rsplit("/", 1)[-1] for p in fs.ls(root, detail=False) if p.endswith(".yaml"))


def _stores(ui: UiState) -> list[dict[str, Any]]:
    out = []
    for i, path in enumerate(ui.roots.data):
        try:
            facts = describe(path)
            fs, root = segfs.filesystem(path)
            out.append({"index": i, "path": path, **facts, "bytes": fs.du(root)})
        except SegError as exc:
            out.append({"index": i, "path": path, "error": str(exc)})
    return out


async def start_page(request: Request) -> Response:
    ui = ui_of(request)
    configs = _configs(ui)
    chosen = request.query_params.get("config") or (configs[0] if configs else "")
    return _start_form(request, chosen, values={}, error="", name="")


def _start_form(
    request: Request, chosen: str, *, values: dict[str, str], error: str, name: str
) -> Response:
    ui = ui_of(request)
    configs = _configs(ui)
    if chosen and chosen not in configs:
        raise Refused(f"no config {chosen!r} in {ui.roots.configs}")
    path = segfs.join(ui.roots.configs, chosen) if chosen and ui.roots.configs else None
    fields = config_form.form_fields(path)
    sections: dict[str, list[config_form.FormField]] = {}
    for f in fields:
        shown = dataclasses.replace(f, value=values.get(f.key, f.value))
        sections.setdefault(f.key.split(".")[0], []).append(shown)
    stores = _stores(ui)
    return page(request, "start.html", 400 if error else 200, configs=configs, chosen=chosen,
                scheduler=ui.scheduler,
                sections=sections, stores=stores, error=error, name=name)  # fmt: skip


async def start_run(request: Request) -> Response:
    ui = ui_of(request)
    form = await posted_form(request)
    if form is None:
        return REFUSED
    chosen, name = form.get("config", ""), form.get("name", "").strip()
    try:
        path = segfs.join(ui.roots.configs, chosen) if chosen and ui.roots.configs else None
        fields = config_form.form_fields(path)
        run_dir = ui.roots.run_dir(name)
        data = ui.roots.store(int(form.get("data", "0") or 0))
        sets = config_form.overrides(form, fields)
        if form.get("how") == "queue":
            queue.submit(ui.launcher, ui.roots.runs, name, config=path, overrides=sets,
                         data=data, scheduler=ui.scheduler)  # fmt: skip
            return RedirectResponse("/queue", status_code=303)
        actions.start(ui.launcher, run_dir, config=path, data=data, overrides=sets)
    except (SegError, ValueError) as exc:
        values = {k: v for k, v in form.items() if "." in k}
        return _start_form(request, chosen, values=values, error=str(exc), name=name)
    return RedirectResponse(f"/run/{name}", status_code=303)


async def act(request: Request) -> Response:
    """POST /action/{stop|resume|lr}/RUN -> {"message": ...} or {"error": ...}."""
    ui = ui_of(request)
    name, run_dir = named_run(request)
    what = request.path_params["what"]
    if what == "stop":
        message = actions.stop(run_dir)
    elif what == "resume":
        message = f"resumed: pid {actions.resume(ui.launcher, run_dir)}"
    elif what == "lr":
        body = await request.json()
        message = actions.set_lr(run_dir, float(body.get("lr", 0)))
    else:
        raise Refused(f"no action {what!r}: stop, resume or lr")
    return JSONResponse({"message": message, "run": _summary(ui, name, run_dir)})


async def on_error(request: Request, exc: Exception) -> Response:
    """A user-fixable error: its message; anything else: one line, no traceback."""
    known = isinstance(exc, SegError | ValueError)
    status = 404 if isinstance(exc, Refused) else 400 if known else 500
    text = str(exc) if known else f"internal error ({type(exc).__name__}): {exc}"
    if request.url.path.startswith(("/api/", "/action/")):
        return JSONResponse({"error": text}, status_code=status)
    return page(request, "error.html", status, message=text)


def create_app(
    roots: Roots, token: str | None = None, *, scheduler: str | None = None
) -> Starlette:
    routes = [
        Route("/", runs_page),
        Route("/run/{name:path}", run_page),
        Route("/model/{name:path}", model_page),
        Route("/activations/{name:path}", activations_png),
        Route("/compare", compare_page),
        Route("/start", start_page, methods=["GET"]),
        Route("/start", start_run, methods=["POST"]),
        Route("/frame/{epoch:int}/{name:path}", predictions.frame_png),
        Route("/queue", queue.queue_page),
        Route("/maps", maps.maps_page),
        Route("/map/{name:path}", maps.map_page),
        Route("/tiles/{layer}/{z:int}/{x:int}/{y:int}/{name:path}", maps.tile),
        Route("/api/series/{name:path}", series_json),
        Route("/api/events/{name:path}", events),
        Route("/action/{what}/{name:path}", act, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(Guard)],
        exception_handlers={SegError: on_error, ValueError: on_error, Exception: on_error},
    )
    app.state.ui = UiState(roots, token, scheduler=scheduler)
    return app
