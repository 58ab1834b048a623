"""Floor 7: clusters pushbutton builds for the user."""
