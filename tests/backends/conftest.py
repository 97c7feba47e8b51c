"""The backends' libraries stay offline: litellm (under DSPy) reads its bundled model price map, never the network's."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
