"""``spl predict``: score a shard set with a trained run's model and write preds.npz."""
from __future__ import annotations

from pathlib import Path

import click

from replication.inference.predict import predict


@click.command(name="predict")
@click.option("--run", "run_dir", type=click.Path(path_type=Path), required=True, help="Run directory of spl train.")
@click.option("--data", type=click.Path(path_type=Path), required=True, help="Shard set to score (test or generated).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output preds.npz.")
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--device", default=None, help="cpu, cuda, cuda:N (default: the run's device setting).")
def command(run_dir: Path, data: Path, out: Path, batch_size: int, device: str | None) -> None:
    """Write logits, labels, keys and class names of every record of --data to --out."""
    path = predict(run_dir, data, out, batch_size=batch_size, device=device)
    click.echo(str(path))
