"""Top floor: the command line, one module per command group."""
