"""Wiring between shard sets and :mod:`gan_tf_port`: ``spl gan train`` and ``spl gan sample`` (the paper, Section 4.1).

* :mod:`replication.gan.config` — :class:`GanTrainConfig` and its presets (``replication/presets/gan/``);
* :mod:`replication.gan.images` — the real images, preprocessed as the GANs read them;
* :mod:`replication.gan.run` — :func:`train_gan` and :func:`sample_gan`, and the run directory;
* :mod:`replication.gan.quality` — FD, KID, k-NN precision and recall (pure, on features);
* :mod:`replication.gan.quality_step` — ``spl gan quality``: a GAN run's samples measured with a classifier run;
* :mod:`replication.gan.curve` — ``spl gan curve``: the quality at each kept checkpoint, one figure.

``quality_step`` and ``curve`` sit on higher layers than the rest (they use a classifier run;
docs/architecture.md) and are not re-exported.

The names below are re-exported for users; code inside the repository imports the modules above.
"""
from replication.gan.config import GanTrainConfig, gan_config_from_dict, list_gan_presets, load_gan_config
from replication.gan.images import ShardGanImages, load_gan_images, minmax_stretch, preprocess_gan_image, save_real_grid
from replication.gan.run import DONE, GanTrainingError, sample_gan, train_gan

__all__ = ["DONE", "GanTrainConfig", "GanTrainingError", "ShardGanImages", "gan_config_from_dict",
           "list_gan_presets", "load_gan_config", "load_gan_images", "minmax_stretch", "preprocess_gan_image",
           "sample_gan", "save_real_grid", "train_gan"]
