"""Where the shared corpora are: ``../shared/corpora`` beside the checkout (as CI lays it out),
else ``$CORRAL_CORPORA``, else the workplace's ``/work/shared/corpora``."""

from __future__ import annotations

import os
from pathlib import Path

_CANDIDATES = [
    Path(__file__).resolve().parents[2] / "shared" / "corpora",
    *([Path(os.environ["CORRAL_CORPORA"])] if "CORRAL_CORPORA" in os.environ else []),
    Path("/work/shared/corpora"),
]
CORPORA = next((p for p in _CANDIDATES if p.is_dir()), _CANDIDATES[0])
FALCO = CORPORA / "falco"
GATEKEEPER_LIBRARY = CORPORA / "gatekeeper-library"
