# The two commands a newcomer needs (both do all the set-up on a fresh machine):
#   make demo   local Kafka broker + streamdrift + a drifting synthetic stream, live alerts
#   make test   venv, install, local Kafka broker and Schema Registry, the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install lint bench kafka-start kafka-stop clean

$(BIN)/streamdrift: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/streamdrift

demo: install
	bash scripts/kafka start
	$(BIN)/streamdrift demo

test: install
	KAFKA_FRESH=1 bash scripts/kafka start   # a broker it starts begins with no topics
	bash scripts/registry start
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .

bench: install
	bash scripts/kafka start
	$(BIN)/python bench/detectors.py
	$(BIN)/python bench/e2e.py

kafka-start:
	bash scripts/kafka start

kafka-stop:
	bash scripts/kafka stop

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
