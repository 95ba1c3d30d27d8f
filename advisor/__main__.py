"""`python -m advisor`: the same as the `advisor` command."""

import sys

from advisor.cli import main

sys.exit(main())
