"""`python -m deepvrm.cli` (e.g. under `accelerate launch -m deepvrm.cli ...`) is the `deepvrm` command."""

import sys

from . import main

sys.exit(main())
