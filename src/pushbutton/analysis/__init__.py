"""Floor 5: statistics (stats) and figures over the results table. May import core up to
execution, never report, clusters, the API or the CLI.

`pushbutton.analysis.aggregate(...)` etc. are the functions of `stats`, re-exported here."""
from pushbutton.analysis.stats import *  # noqa: F401,F403
from pushbutton.analysis.stats import __all__  # noqa: F401
