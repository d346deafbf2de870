"""Public ops: validation, backend dispatch and the autograd wrapper, one file per op."""
