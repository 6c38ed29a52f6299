"""`python -m rlxf.run`: the papermill batch runner (rlxf.run.runner)."""

import sys

from rlxf.run.runner import main

sys.exit(main())
