"""What every page of `seg ui` shares: the server's state, the templates, and the one way a
request names a run (through `Roots`, so nothing outside --runs is reachable)."""

from __future__ import annotations

import dataclasses
import secrets
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from seg import fs as segfs
from seg.ui import actions
from seg.ui.roots import Refused, Roots

HERE = Path(__file__).parent


@dataclasses.dataclass
class UiState:
    roots: Roots
    token: str | None  # required on every request when set (a --host other than loopback)
    csrf: str = dataclasses.field(default_factory=lambda: secrets.token_urlsafe(24))
    launcher: actions.Launcher = dataclasses.field(default_factory=actions.Launcher)
    scheduler: str | None = None  # a Dask scheduler the start form submits `seg queue` jobs to


templates = Jinja2Templates(directory=str(HERE / "templates"))


def ui_of(request: Request) -> UiState:
    state: UiState = request.app.state.ui
    return state


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    ui = ui_of(request)
    context = {"csrf": ui.csrf, "runs_root": ui.roots.runs, **context}
    return templates.TemplateResponse(request, template, context, status_code=status)


def named_run(request: Request) -> tuple[str, str]:
    name = request.path_params["name"]
    run_dir = ui_of(request).roots.run_dir(name)
    if not segfs.exists(run_dir):
        raise Refused(f"no run {name!r} under {ui_of(request).roots.runs}")
    return name, run_dir
