"""``spl gan train|sample|quality|curve``: train DCGAN / WGAN-GP on a shard set, sample it, measure its samples.

Examples::

    spl gan train --arch dcgan --data runs/digits/train --out runs/digits/gan-dcgan --size 32 --width 32 --epochs 2
    spl gan train --preset embedded-wgan-gp --data runs/digits/train --out runs/digits/gan-wgan --set flip=false
    spl gan train --arch dcgan --data … --out runs/digits/gan-dcgan --resume     # continue after a stop
    spl gan sample --run runs/digits/gan-dcgan -n 5000 --out runs/digits/gen-dcgan --seed 0
    spl gan sample --run runs/digits/gan-dcgan --checkpoint runs/digits/gan-dcgan/<kept>.pt -n 64 --out …
    spl gan quality --run runs/digits/gan-dcgan --classifier runs/digits/baseline -n 5000
    spl gan train --preset embedded-dcgan --data … --out runs/digits/gan-dcgan --keep-every 100
    spl gan curve --run runs/digits/gan-dcgan --run runs/digits/gan-wgan --classifier runs/digits/baseline -n 5000
"""
from __future__ import annotations

from pathlib import Path

import click

from replication.gan.config import list_gan_presets, load_gan_config
from replication.gan.curve import FIGURE, gan_curve
from replication.gan.quality_step import DEFAULT_N, gan_quality, quality_path
from replication.gan.run import sample_gan, train_gan
from replication.vocabulary import GAN_ARCHS


@click.group(name="gan")
def command() -> None:
    """Train the paper's GANs (TF-exact DCGAN and WGAN-GP ports), sample them into shard sets, measure the samples."""


@command.command("train")
@click.option("--arch", type=click.Choice(GAN_ARCHS), default=None, help="GAN (required unless --preset sets it).")
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
@click.option("--keep-every", type=int, default=None, metavar="N",
              help="Keep checkpoints/iter-NNNNNNN.pt every N iterations, for `spl gan curve` (default: off).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Any GanTrainConfig field, e.g. minmax_stretch=true.")
@click.option("--resume", is_flag=True, help="Continue the checkpoint in --out (exactly).")
def train_cmd(arch, preset, data, out, epochs, size, width, batch, seed, flip, max_iters, device, threads, keep_every,
              sets, resume) -> None:
    """Train a GAN on the shard set DATA into the run directory OUT."""
    overrides = [f"data={data}", f"out={out}"]
    for key, value in (("arch", arch), ("epochs", epochs), ("size", size), ("width", width), ("batch", batch),
                       ("seed", seed), ("max_iters", max_iters), ("device", device), ("threads", threads),
                       ("keep_every", keep_every)):
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
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="Checkpoint file of the run to sample (default: RUN/checkpoint.pt, the latest).")
def sample_cmd(run, n, out, seed, batch, checkpoint) -> None:
    """Generate N images with the GAN in RUN into the shard set OUT (plus OUT-grid.png)."""
    click.echo(str(sample_gan(run, n, out, seed=seed, batch=batch, checkpoint=checkpoint)))


@command.command("quality")
@click.option("--run", "run", type=click.Path(path_type=Path), required=True, help="GAN run directory.")
@click.option("--classifier", type=click.Path(path_type=Path), required=True,
              help="Finished classifier run (model.pt, config.yaml), e.g. the baseline: the feature extractor.")
@click.option("-n", "n", type=int, default=DEFAULT_N, show_default=True,
              help="Generated samples (and at most as many real training images).")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="Checkpoint file of the run to measure (default: RUN/checkpoint.pt).")
@click.option("--seed", type=int, default=0, show_default=True, help="Noise seed and choice of real images.")
@click.option("--batch", type=int, default=256, show_default=True)
@click.option("--device", default=None, help="auto (default), cpu, cuda, cuda:N.")
def quality_cmd(run, classifier, n, checkpoint, seed, batch, device) -> None:
    """Fréchet distance, KID, precision/recall and label statistics of RUN's samples → RUN/quality.json."""
    q = gan_quality(run, classifier, n=n, checkpoint=checkpoint, seed=seed, batch=batch, device=device)
    gen = q["labels"]["generated"]
    click.echo(f"FD {q['fd']:.4g}  KID {q['kid']:.4g} ± {q['kid_std']:.2g}  precision {q['precision']:.3f}  "
               f"recall {q['recall']:.3f}  max-confidence {gen['mean_max_confidence']:.3f}  "
               f"distinct top-3 sets {gen['distinct_top3']}  ({q['n_generated']} samples, iteration {q['iteration']}, "
               f"{q['seconds']['total']:.1f} s)")
    click.echo(str(quality_path(Path(run), Path(q["checkpoint"]))))


@command.command("curve")
@click.option("--run", "runs", type=click.Path(path_type=Path), required=True, multiple=True,
              help="GAN run directory trained with --keep-every (repeat for several runs, e.g. DCGAN and WGAN-GP).")
@click.option("--classifier", type=click.Path(path_type=Path), required=True,
              help="Finished classifier run (model.pt, config.yaml), e.g. the baseline: the feature extractor.")
@click.option("-n", "n", type=int, default=DEFAULT_N, show_default=True,
              help="Generated samples per checkpoint (and at most as many real training images).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help=f"Figure file (.png, .pdf, .svg; default: {FIGURE} in the first run directory).")
@click.option("--seed", type=int, default=0, show_default=True, help="Noise seed and choice of real images.")
@click.option("--batch", type=int, default=256, show_default=True)
@click.option("--device", default=None, help="auto (default), cpu, cuda, cuda:N.")
def curve_cmd(runs, classifier, n, out, seed, batch, device) -> None:
    """FD, KID, precision and recall at each kept checkpoint → RUN/curve.json and one figure of all runs."""
    curves = gan_curve(runs, classifier, n=n, out=out, seed=seed, batch=batch, device=device)
    for run, c in curves.items():
        last = c["rows"][-1]
        click.echo(f"{run}: {len(c['rows'])} checkpoints; at iteration {last['iteration']} "
                   f"({last['cpu_s']:.0f} CPU s): FD {last['fd']:.4g}  KID {last['kid']:.4g}  "
                   f"precision {last['precision']:.3f}  recall {last['recall']:.3f}")
    click.echo(str(out if out is not None else Path(runs[0]) / FIGURE))
