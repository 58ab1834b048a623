"""Floor 6: the self-contained HTML report. May import core up to analysis."""
