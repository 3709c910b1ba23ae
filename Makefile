# The two commands of the README. Both install whatever is missing first (tools/install.sh is idempotent).
PYTHON ?= python

.PHONY: install test demo cuda-check

install:
	PYTHON=$(PYTHON) bash tools/install.sh

test: install cuda-check
	$(PYTHON) -m pytest tests

# Compile every .cu file with nvcc against CUDA torch headers (no GPU needed). Skipped only where there is no
# nvcc and this is not CI.
cuda-check:
	@if [ -n "$$CI" ] || command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then \
		PYTHON=$(PYTHON) bash tools/check_cuda_compile.sh; \
	else echo "[cuda-check] skipped: no nvcc on this machine"; fi

# Main job: toy data -> train a toy Faster R-CNN with DySample in its FPN (CPU) -> test with mmdet's COCO metric.
demo: install
	PYTHON=$(PYTHON) bash tools/toy_demo.sh
