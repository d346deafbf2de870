"""Data: shard sets, label files, dataset adapters, transforms and the torch Dataset."""
