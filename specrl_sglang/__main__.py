"""`python -m specrl_sglang ...`: the same command line as the `specrl-sglang` console script."""

import sys

from specrl_sglang.cli import main

if __name__ == "__main__":
    sys.exit(main())
