# Two entry points: `make run` (the default experiment) and `make test` (the whole suite).
# Both build .venv first when it is missing or stale; nothing is downloaded from a model hub.
VENV := .venv
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
CONFIG ?= configs/default.yaml

.PHONY: run test test-slow setup clean
setup: $(STAMP)
$(STAMP): pyproject.toml constraints.txt scripts/setup.sh
	bash scripts/setup.sh

run: $(STAMP)
	$(VENV)/bin/sae run $(CONFIG) $(ARGS)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q $(ARGS)

test-slow: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m slow $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
