"""Floor 3: turning bundle outcome files into task states and result rows."""
