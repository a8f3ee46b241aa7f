"""``python -m deeplab_mobile <command> ...``: the same as ``deeplab-mobile <command> ...`` (``cli``)."""

import sys

from .cli import main

sys.exit(main())
