"""Floor 6: the self-contained HTML report."""
