"""The ``torch`` backend: reference implementations written with plain torch ops (float64-checkable)."""
