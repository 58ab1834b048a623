"""Floor 7: clusters pushbutton builds for the user (a one-host SLURM today). May import core up
to report; the CLI drives it."""
