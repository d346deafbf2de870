"""What a long command shows on the terminal while it works: progress bars on or off per process
(:mod:`replication.console.progress`). Layer 0: the standard library only."""
