"""`python -m vitmae` is the `vitmae` command."""

import sys

from vitmae.cli import main

sys.exit(main())
