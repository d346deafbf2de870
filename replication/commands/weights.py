"""``spl weights convert``: timm's pre-activation ResNet weights → our layout, for ``pretrained: PATH``."""
from __future__ import annotations

from pathlib import Path

import click

from replication.models.pretrained import convert_weights, sidecar_path
from replication.vocabulary import INPUT_NORMS


@click.group(name="weights")
def command() -> None:
    """Pretrained weights: convert ImageNet checkpoints into the faithful layout (no downloads)."""


@command.command("convert")
@click.option("--from", "source", required=True, metavar="timm:NAME|PATH",
              help="timm:<model-name> from the local Hugging Face / torch hub cache (e.g. "
                   "timm:resnetv2_101.a1h_in1k), or a timm .safetensors/.pth file.")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Weights in our layout (e.g. weights/preact_resnet101_in1k.pt); OUT.json describes them.")
@click.option("--input-norm", type=click.Choice(["auto", *INPUT_NORMS]), default="auto", show_default=True,
              help="Input normalisation the weights expect; auto: from timm's config (or the config.json "
                   "beside a file).")
def convert_cmd(source: str, out: Path, input_norm: str) -> None:
    """Map timm ResNetV2 (BN) weights into preact_resnet50/101/152 and write OUT and OUT.json."""
    info = convert_weights(source, out, input_norm=None if input_norm == "auto" else input_norm)
    click.echo(f"{out}: {info['model'] or 'depths ' + str(info['depths'])}, {info['num_classes']}-way head, "
               f"input_norm {info['input_norm']}; {info['stem_negative_scale']} of {info['stem_channels']} stem "
               f"channels have a negative BN scale (the stem move is approximate for them)")
    click.echo(f"wrote {out} and {sidecar_path(out)}", err=True)
