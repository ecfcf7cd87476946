# The two commands of the README. Each one sets up everything it needs on a fresh machine.
VENV    := .venv
PYTHON  := $(VENV)/bin/python
STARLAB := $(VENV)/bin/starlab
STAMP   := $(VENV)/.installed
RUN_DIR ?= runs/demo

.PHONY: run test

# The main job: a real STAR search (demo preset: 4-slot genomes trained as language models on the lm-demo
# protocol, 2 worker processes), which writes its report (report.html, kept current while it runs). Running
# it again resumes the stored run (nothing is evaluated twice) and rewrites the report.
run: $(STAMP)
	if [ -f $(RUN_DIR)/run.sqlite ]; then \
		$(STARLAB) evolve --resume $(RUN_DIR) --executor process --workers 2 --threads 1; \
	else \
		$(STARLAB) evolve --preset demo --out $(RUN_DIR) --executor process --workers 2 --threads 1; \
	fi

test: $(STAMP)
	$(PYTHON) -m pytest

# torch==2.13.0 first when no torch is importable: pip finds that CPU wheel locally, whereas an unpinned
# install would pull a multi-GB CUDA build. Then the package with its dev and ray extras (CI exercises Ray).
$(STAMP): pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "torch==2.13.0"
	$(PYTHON) -m pip install -e ".[dev,ray]"
	touch $(STAMP)
