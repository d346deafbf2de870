"""``spl label assign``: label generated images with random, pseudo, smooth or SPL.

See paper §2.3, Eqs. (1)–(2); docs/labeling.md#label-rules.
"""
from __future__ import annotations

from pathlib import Path

import click

from replication.labeling import assign_label_file
from replication.vocabulary import RULES, SPL_INPUTS


@click.group(name="label")
def command() -> None:
    """Label files for generated shard sets."""


@command.command("assign")
@click.option("--rule", type=click.Choice(RULES), required=True)
@click.option("--scores", type=click.Path(path_type=Path), default=None,
              help="preds.npz of the baseline model on --generated (needed by pseudo and spl).")
@click.option("--generated", type=click.Path(path_type=Path), required=True, help="Generated shard set.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output label file (.h5).")
@click.option("--k", type=int, default=3, show_default=True, help="K of the random and pseudo rules.")
@click.option("--spl-input", type=click.Choice(SPL_INPUTS), default="probs", show_default=True,
              help="v of SPL's softmax(v/T): sigmoid probabilities or raw logits.")
@click.option("--temperature", type=float, default=1.0, show_default=True, help="T of SPL's softmax(v/T).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random rule.")
def assign_cmd(rule: str, scores: Path | None, generated: Path, out: Path, k: int, spl_input: str,
               temperature: float, seed: int) -> None:
    """Write the RULE label file of --generated to --out (tied to the generated set's hash)."""
    path = assign_label_file(rule, scores, generated, out, k=k, spl_input=spl_input, temperature=temperature, seed=seed)
    click.echo(str(path))
