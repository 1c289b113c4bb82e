"""`seg ui`: serve the local web front end."""

from __future__ import annotations

import typer

from seg.cli.app import app, command


@command(app, "ui")
def ui_command(
    runs: str = typer.Option("runs", "--runs", help="The folder of run folders (local or gs://)."),
    data: list[str] = typer.Option(
        [], "--data", help="A window store the start form offers (repeat for more)."
    ),
    configs: str = typer.Option(
        "configs", "--configs", help="A folder of experiment YAMLs for the start form."
    ),
    predictions: str | None = typer.Option(
        None, "--predictions", help="A folder of `seg predict` outputs to show on a map."
    ),
    scenes: str | None = typer.Option(
        None, "--scenes", help="The folder of the predicted scenes (the map's scene layer)."
    ),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on; any but loopback needs the token."
    ),
    port: int = typer.Option(8765, "--port", help="Port to listen on (0: any free one)."),
    scheduler: str | None = typer.Option(
        None, "--scheduler", help="Dask scheduler (tcp://HOST:8786) for Submit to seg queue."
    ),
) -> None:
    """Watch, steer and compare runs in a browser: live curves, Stop / Resume / LR, the model,
    the predictions' time-lapse, and predicted scenes on a map.

    Example: seg ui --runs runs --data ds.zarr --predictions preds --scenes scenes
    """
    from seg import fs as segfs
    from seg.ui.roots import Roots
    from seg.ui.server import serve

    shown = configs if segfs.exists(configs) else None
    roots = Roots(runs=runs, data=tuple(data), configs=shown, predictions=predictions,
                  scenes=scenes)  # fmt: skip
    serve(roots, host=host, port=port, scheduler=scheduler,
          ready=lambda url: typer.echo(f"seg ui: {url}", err=False))  # fmt: skip
