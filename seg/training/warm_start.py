"""`model.init_from`: start a new run from an earlier model's weights (fine-tuning).

Only the segmentation network's weights are taken (for a pix2pix checkpoint, its generator;
for pix2pix, a UNet checkpoint warm-starts the generator): the optimizer, schedule, counters and
the normalisation are this run's own. When the classes differ the classification head (its last
layer) starts afresh and one warning says so; other bands or another architecture are refused
in one line.
"""

from __future__ import annotations

from torch import nn

from seg.checkpoint import read_checkpoint
from seg.errors import CheckpointError
from seg.report import SILENT, Reporter

HEAD = "segmentation_head."  # smp's name of the last (1x1 -> classes) layer
CONDITIONER = "conditioner."  # the metadata conditioner (seg.models.conditioning)


def warm_start(
    net: nn.Module, path: str, *, bands: int, classes: list[str], reporter: Reporter = SILENT
) -> None:
    """Load the weights of the checkpoint at `path` into `net` (this run's fresh network)."""
    info, state = read_checkpoint(path)
    if info.in_channels != bands:
        raise CheckpointError(
            f"model.init_from {path} was trained on {info.in_channels} bands; this store has"
            f" {bands}: start from a model of the same bands, or from scratch"
        )
    weights = dict(state["state_dict"])
    if list(info.class_names) != list(classes):
        weights = {k: v for k, v in weights.items() if not k.startswith(HEAD)}
        reporter.warn(
            f"model.init_from {path} has classes {list(info.class_names)}, this run {classes}:"
            " its classification head starts afresh"
        )
    ours = net.state_dict()
    have = {k for k in weights if k.startswith(CONDITIONER)}
    want = {k for k in ours if k.startswith(CONDITIONER)}
    if have and (have != want or any(weights[k].shape != ours[k].shape for k in have)):
        weights = {k: v for k, v in weights.items() if not k.startswith(CONDITIONER)}
        reporter.warn(
            f"model.init_from {path} was conditioned on other metadata than this run:"
            " its metadata conditioner is left out"
        )
    elif want and not have:
        reporter.note(
            f"model.init_from {path} has no metadata conditioner; this run's starts at"
            " identity (the start is exactly that model)"
        )
    fix = "its model options (decoder_channels, ...) must be this run's"
    try:
        result = net.load_state_dict(weights, strict=False)
    except RuntimeError as exc:  # the same names with other shapes
        reason = " ".join(str(exc).split())[:200]
        raise CheckpointError(
            f"model.init_from {path} does not fit this model ({reason}); {fix}"
        ) from exc
    wrong = [k for k in result.missing_keys if not k.startswith((HEAD, CONDITIONER))]
    if wrong or result.unexpected_keys:
        raise CheckpointError(
            f"model.init_from {path} does not fit this model (missing {wrong[:3]}, unexpected"
            f" {list(result.unexpected_keys)[:3]}); {fix}"
        )
