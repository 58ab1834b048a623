"""Floor 2: the project store: state database, Parquet parts, views, provenance, liveness.
May import core and spec."""
