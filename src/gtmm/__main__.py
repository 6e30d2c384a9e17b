"""`python -m gtmm`: the same command line as `gtmm`."""

import sys

from gtmm.cli import main

sys.exit(main())
