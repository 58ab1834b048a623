"""Floor 5: statistics (stats) and figures over the results table.

`pushbutton.analysis.aggregate(...)` etc. are the functions of `stats`, re-exported here."""
from pushbutton.analysis.stats import *  # noqa: F401,F403
from pushbutton.analysis.stats import __all__  # noqa: F401
