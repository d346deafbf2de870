"""``spl gan train|sample``: train DCGAN / WGAN-GP on a shard set, and sample a trained GAN into shards.

Examples::

    spl gan train --arch dcgan --data runs/digits/train --out runs/digits/gan-dcgan --size 32 --width 32 --epochs 2
    spl gan train --preset embedded-wgan-gp --data runs/digits/train --out runs/digits/gan-wgan --set flip=false
    spl gan train --arch dcgan --data … --out runs/digits/gan-dcgan --resume     # continue after a stop
    spl gan sample --run runs/digits/gan-dcgan -n 5000 --out runs/digits/gen-dcgan --seed 0
"""
from __future__ import annotations

from pathlib import Path

import click

from replication.gan.config import list_gan_presets, load_gan_config
from replication.gan.run import sample_gan, train_gan
from replication.vocabulary import GENERATORS


@click.group(name="gan")
def command() -> None:
    """Train the paper's GANs (TF-exact DCGAN and WGAN-GP ports) and sample them into shard sets."""


@command.command("train")
@click.option("--arch", type=click.Choice(GENERATORS), default=None, help="GAN (required unless --preset sets it).")
@click.option("--preset", type=click.Choice(list_gan_presets()), default=None,
              help="Start from a named preset (paper-*: 64x64 width 64, 1,000 epochs; embedded-*: 32x32 width 32).")
@click.option("--data", type=click.Path(path_type=Path), required=True, help="Training shard set (real images).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Run directory.")
@click.option("--epochs", type=int, default=None,
              help="Epochs in the repository's definition (default: DCGAN 25, WGAN-GP 50).")
@click.option("--size", type=int, default=None, help="Output side, e.g. 32 or 64 (default 64).")
@click.option("--width", type=int, default=None, help="gf_dim = df_dim (default 64).")
@click.option("--batch", type=int, default=None, help="Batch size (default 64).")
@click.option("--seed", type=int, default=None, help="Seed of weights, noise and data order (default 0).")
@click.option("--flip/--no-flip", default=None, help="Random horizontal flip (default: on for photos, off for digits).")
@click.option("--max-iters", type=int, default=None, help="Stop after this many iterations (resume later).")
@click.option("--device", default=None, help="auto (default), cpu, cuda, cuda:N.")
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Any GanTrainConfig field, e.g. minmax_stretch=true.")
@click.option("--resume", is_flag=True, help="Continue the checkpoint in --out (exactly).")
def train_cmd(arch, preset, data, out, epochs, size, width, batch, seed, flip, max_iters, device, threads, sets,
              resume) -> None:
    """Train a GAN on the shard set DATA into the run directory OUT."""
    overrides = [f"data={data}", f"out={out}"]
    for key, value in (("arch", arch), ("epochs", epochs), ("size", size), ("width", width), ("batch", batch),
                       ("seed", seed), ("max_iters", max_iters), ("device", device), ("threads", threads)):
        if value is not None:
            overrides.append(f"{key}={value}")
    if flip is not None:
        overrides.append(f"flip={'true' if flip else 'false'}")
    overrides.extend(sets)
    if preset is None and arch is None and not any(s.startswith("arch=") for s in sets):
        raise click.UsageError("give --arch (dcgan or wgan-gp) or --preset")
    cfg = load_gan_config(preset if preset else {}, overrides)
    run = train_gan(cfg, resume=resume)
    click.echo(str(run))


@command.command("sample")
@click.option("--run", "run", type=click.Path(path_type=Path), required=True, help="GAN run directory.")
@click.option("-n", "n", type=int, required=True, help="Number of images to generate.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output shard set (unlabeled, PNG).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch", type=int, default=256, show_default=True)
def sample_cmd(run, n, out, seed, batch) -> None:
    """Generate N images with the GAN in RUN into the shard set OUT (plus OUT-grid.png)."""
    click.echo(str(sample_gan(run, n, out, seed=seed, batch=batch)))
