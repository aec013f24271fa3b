"""Settings: ../xrd_settings.toml (or the file $XRD_SETTINGS names), environment variables win.

`xrd` collects what the next startup files build; `xrd.close()` runs at exit
(it finishes queued masking, then stops the embedded server).
"""

import logging
from pathlib import Path

from xrd_bluesky_mask.apps.profile import Beamline
from xrd_bluesky_mask.apps.profile_settings import load_settings

xrd = Beamline(load_settings(Path(__file__).resolve().parents[1] / "xrd_settings.toml"))
xrd.close_at_exit()

# One line per finished run and per retraining epoch, plus warnings, on the terminal.
logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
logging.getLogger("xrd_bluesky_mask").setLevel(logging.INFO)
