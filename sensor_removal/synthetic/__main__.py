"""``python -m sensor_removal.synthetic``: the same as ``python -m sensor_removal synth``."""

import sys

from sensor_removal.synthetic.cli import main

sys.exit(main())
