"""`python -m lab.cli`: what the installed `icelab` command runs."""

import sys

from .main import main

sys.exit(main())
