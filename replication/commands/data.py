"""``spl data build|info|verify``: build shard sets from raw datasets and inspect them."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from replication.data.build import build_shards, summarize
from replication.data.shards import verify_shard_set
from replication.data.sources import SOURCES, SPLITS
from replication.vocabulary import BAD_IMAGE_POLICIES


@click.group(name="data")
def command() -> None:
    """Build, summarise and verify HDF5 shard sets."""


@command.command("build")
@click.argument("source", type=click.Choice(sorted(SOURCES)))
@click.option("--root", type=click.Path(path_type=Path), default=None,
              help="Raw dataset folder (not needed for digits-mosaic).")
@click.option("--split", type=click.Choice(SPLITS), required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output shard-set folder.")
@click.option("--size", type=int, default=None,
              help="Stored side in pixels (default: 256 for photos, 32 for digits-mosaic).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--tiny", is_flag=True,
              help="A small split for tests: 240/120 canvases for digits-mosaic, the first 64 records otherwise.")
@click.option("--image-dir", default=None, help="wider-attribute only: image folder under --root (default: Image).")
@click.option("--on-bad-image", type=click.Choice(BAD_IMAGE_POLICIES), default="stop", show_default=True)
@click.option("--count", type=int, default=None,
              help="Keep a seeded subset of COUNT records of the split (drawn with --seed): a limited labelled set.")
@click.option("--layout", type=click.Choice(("mosaic", "single")), default=None,
              help="digits-mosaic only: 'single' builds one-digit canvases from the training digit pool "
                   "(the pretraining source; default: mosaic).")
@click.option("--canvases", type=int, default=None,
              help="digits-mosaic only: number of canvases to generate (default 5,000/2,000; single: 10,000/1,000).")
@click.option("--overwrite", is_flag=True, help="Replace an existing complete shard set.")
def build_cmd(source, root, split, out, size, seed, tiny, image_dir, on_bad_image, count, layout, canvases,
              overwrite) -> None:
    """Build the shard set of SOURCE's SPLIT into OUT, then print its summary."""
    options = {k: v for k, v in (("image_dir", image_dir), ("layout", layout), ("canvases", canvases))
               if v not in (None, "")}
    path = build_shards(
        source, split=split, out=out, root=root, size=size, seed=seed, tiny=tiny,
        on_bad_image=on_bad_image, count=count, overwrite=overwrite,
        source_options=options or None,
    )
    _print_summary(summarize(path))


@command.command("info")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def info_cmd(path: Path, as_json: bool) -> None:
    """Summarise the shard set at PATH: count, classes, labels per image, class frequencies."""
    summary = summarize(path)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)


@command.command("verify")
@click.argument("path", type=click.Path(path_type=Path))
def verify_cmd(path: Path) -> None:
    """Check every shard's checksum and record count; exit 1 naming each bad shard."""
    problems = verify_shard_set(path)
    for p in problems:
        click.echo(f"error: {p}", err=True)
    if problems:
        sys.exit(1)
    click.echo(f"{path}: OK")


def _print_summary(s: dict) -> None:
    click.echo(f"{s['path']}: {s['dataset']} / {s['split']}")
    click.echo(f"  records      {s['records']} in {s['shards']} shard(s), {s['encoding']}, "
               f"image {tuple(s['image_shape'])}")
    click.echo(f"  classes      {s['num_classes']} ({s['label_kind']} labels)")
    if s.get("labelled"):
        click.echo(f"  labels/image {s['labels_per_image']:.2f}   images without labels: {s['images_without_labels']}")
        freq = s["class_frequency"]
        width = max(len(n) for n in freq)
        for name, f in freq.items():
            click.echo(f"    {name:<{width}}  {f * 100:5.1f}%  {'#' * int(round(f * 40))}")
    else:
        click.echo("  unlabelled (generated images: labels come from a label file)")
    for key, value in s.get("extra", {}).items():
        if key in ("skipped_images", "listed", "kept", "missing_on_disk", "no_label", "no_annotation", "empty_box"):
            click.echo(f"  {key.replace('_', ' ')}: {value}")
