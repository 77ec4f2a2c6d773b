"""`python -m ark_runtime.settings --write|--check`: the env schema files."""

import sys

from ark_runtime.settings.schema import main

sys.exit(main())
