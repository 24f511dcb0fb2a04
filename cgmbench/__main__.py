"""``python -m cgmbench …`` (and ``torchrun … -m cgmbench …``)."""

import sys

from .cli import main

sys.exit(main())
