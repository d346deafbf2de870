"""Click commands of the ``spl`` CLI, one module per command group (thin: parse options, call the library)."""
