"""Floor 1: what to compute: the spec model, the parameter-space algebra, parrun.
May import only core."""
