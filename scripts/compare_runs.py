"""What two runs differ in, and where their trainings part (docs/reproducibility.md).

python scripts/compare_runs.py outputs/train/<run A> outputs/train/<run B>
python scripts/compare_runs.py outputs/train/<run>/eval/<record> outputs/train/<other>/eval/<record> --json cmp.json
"""

import sys

from deeplab_mobile.apps.compare_runs import main

if __name__ == "__main__":
    sys.exit(main())
