# The two commands of the README. Both install whatever is missing first (tools/install.sh is idempotent).
PYTHON ?= python

.PHONY: install test demo

install:
	PYTHON=$(PYTHON) bash tools/install.sh

test: install
	$(PYTHON) -m pytest tests

demo: install
	$(PYTHON) tools/benchmark_upsamplers.py --channels 256 --size 120 120 --scale 2
