"""`seqlab surprise`: where in a file the model is surprised, and what it expected instead.

    score.py      per-token surprisal, entropy and top-5 of a file (eval's path when mixed)
    fix.py        the small edit that makes the text after a span least surprising
    anomalies.py  spans of excess surprisal, ranked by the bits their fix saves; `surprise()` and the CLI
    render.py     terminal text, the anomaly table, JSON and the HTML heat map

    import seqlab
    from seqlab.surprise import surprise
    report = surprise(seqlab.load("runs/latest"), open("page.html", "rb").read())
    print(report.anomalies[0])
"""

from .anomalies import Anomaly, Report, add_cli, find_spans, line_column, surprise
from .fix import Fix

__all__ = ["surprise", "Report", "Anomaly", "Fix", "find_spans", "line_column", "add_cli"]
