"""``spl train``: train the classifier of a preset or YAML config into a run directory."""
from __future__ import annotations

import json
from pathlib import Path

import click

from replication.training.config import list_presets, load_train_config
from replication.training.loop import train


@click.command(name="train")
@click.option("--config", "config", default=None,
              help=f"Preset name ({', '.join(list_presets())}) or YAML file. "
                   "With --resume it defaults to RUN_DIR/config.yaml.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set epochs=3 --set data.train=shards/train (repeatable).")
@click.option("--pretrained", type=click.Path(path_type=Path), default=None,
              help="State dict in our layout, or a finished run's model.pt, to start from (strict key check; "
                   "a new FC when C differs, or always with --set pretrained_head=new).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Run directory.")
@click.option("--resume", is_flag=True, help="Continue exactly from RUN_DIR/checkpoint.pt.")
def command(config: str | None, overrides: tuple[str, ...], pretrained: Path | None, out: Path, resume: bool) -> None:
    """Train the classifier (real shards, optionally + generated shards with a label file).

    Writes config.yaml, checkpoint.pt, model.pt, preds.npz, metrics.json, history.json,
    curves.png and per_class_ap.png into --out. Multi-GPU: torchrun --nproc_per_node=K -m
    replication.cli train ...
    """
    if config is None:
        if not resume:
            raise click.UsageError("--config is required (unless resuming a run directory)")
        config = str(out / "config.yaml")
    if pretrained is not None:
        overrides = (*overrides, f"pretrained={pretrained}")
    cfg = load_train_config(config, overrides)
    metrics = train(cfg, out, resume=resume)
    if metrics:
        click.echo(json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in metrics.items()}))
