"""``python -m starlab.hf.evaltask DIR``: write the task for ``lm_eval --include_path DIR``; print its path."""

import sys

from starlab.hf.evaltask import write_task

print(write_task(sys.argv[1] if len(sys.argv) > 1 else "."))
