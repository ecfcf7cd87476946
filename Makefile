# The two commands of the README. Each one sets up everything it needs on a fresh machine.
VENV   := .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test

run: $(STAMP)
	$(VENV)/bin/starlab liv list --width 768 --seq-len 4096

test: $(STAMP)
	$(PYTHON) -m pytest

# torch==2.13.0 first when no torch is importable: pip finds that CPU wheel locally, whereas an unpinned
# install would pull a multi-GB CUDA build. Then the package itself with its dev extras.
$(STAMP): pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "torch==2.13.0"
	$(PYTHON) -m pip install -e ".[dev]"
	touch $(STAMP)
