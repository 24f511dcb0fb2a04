"""``python -m cgmbench …`` (and ``torchrun … -m cgmbench …``)."""

import sys

from cgmbench.cli.main import main

sys.exit(main())
