"""A stand-in for a coding agent: replays the night's edits, some honest, some gaming the metric.

    tracekit optimize examples/fit --proposer command \
        --proposer-cmd "python examples/fit/night/replay.py {workspace} {rationale_file}"

Each edit in edits.json is a SEARCH/REPLACE on train.py with a rationale; the first whose SEARCH
text is still in the workspace's train.py (and whose REPLACE is not) is applied. Without an
agent or an API key this makes a reproducible night for docs/morning-after.md: three of the five
edits are the gaming kinds of issue 14 (score fewer cases, copy answers, print a fake loss).
"""

import json
import sys
from pathlib import Path

workspace, rationale_file = Path(sys.argv[1]), Path(sys.argv[2])
train = workspace / "train.py"
text = train.read_text()
for edit in json.loads((Path(__file__).parent / "edits.json").read_text()):
    if edit["search"] in text and edit["replace"] not in text:
        train.write_text(text.replace(edit["search"], edit["replace"], 1))
        rationale_file.write_text(edit["rationale"])
        break
else:
    sys.exit("replay: no edit left to make")
