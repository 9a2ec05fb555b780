"""`python -m keras_unitscale.cli`: the `keras-unitscale` command."""

import sys

from keras_unitscale.cli import main

if __name__ == "__main__":
    sys.exit(main())
