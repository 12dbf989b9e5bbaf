# Everything a fresh machine needs (Python 3.11, JDK 17, Maven) is set up by these targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
# The local broker's port: the one name the Makefile, the test fixtures, the benchmarks and
# tools/kafka/local_kafka.py all read.
LOCAL_KAFKA_PORT ?= 9092
export LOCAL_KAFKA_PORT

.PHONY: help setup chromium kafka-start kafka-stop kafka-status topics worker demo test test-unit test-integration lint schemas bench bench-worker bench-peers bench-recovery bench-latency bench-scale bench-memory clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed  ## create .venv and install the project with dev tools

kafka-start:  ## start the local Kafka 3.9 broker (KRaft, 127.0.0.1:$(LOCAL_KAFKA_PORT)); idempotent
	$(PYTHON) tools/kafka/local_kafka.py start --port $(LOCAL_KAFKA_PORT)

kafka-stop:  ## stop the local broker
	$(PYTHON) tools/kafka/local_kafka.py stop --port $(LOCAL_KAFKA_PORT)

kafka-status:
	$(PYTHON) tools/kafka/local_kafka.py status --port $(LOCAL_KAFKA_PORT)

topics: setup kafka-start  ## create every topic of the contract
	TRIGGER_SANITY_BOOTSTRAP_SERVERS=127.0.0.1:$(LOCAL_KAFKA_PORT) $(VENV)/bin/trigger-sanity topics create

worker: topics  ## run the worker against the local broker
	TRIGGER_SANITY_BOOTSTRAP_SERVERS=127.0.0.1:$(LOCAL_KAFKA_PORT) $(VENV)/bin/trigger-sanity worker

demo: setup kafka-start  ## the main job: broker, topics, worker, demo history; prints decisions
	TRIGGER_SANITY_BOOTSTRAP_SERVERS=127.0.0.1:$(LOCAL_KAFKA_PORT) $(VENV)/bin/trigger-sanity demo

chromium:  ## headless Chromium for the browser tests (Debian's package; a no-op when present)
	bash tools/chromium.sh

test: setup chromium  ## the whole suite: unit, slow and integration (starts its own broker when none is given)
	$(VENV)/bin/pytest -q

test-unit: setup  ## the fast tier: the core and everything else that needs no broker (seconds)
	$(VENV)/bin/pytest -q tests/unit -m "not slow"

test-integration: setup chromium  ## against a real broker only (minutes)
	$(VENV)/bin/pytest -q tests/integration

lint: setup  ## ruff, mypy and the import contracts (pyproject.toml: [tool.importlinter])
	$(VENV)/bin/ruff check streams schemas tests bench tools
	$(VENV)/bin/ruff format --check streams schemas tests bench tools
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

schemas: setup  ## regenerate schemas/json after changing a model
	$(PY) -m schemas.export

bench: setup  ## core benchmarks (events/s, latency percentiles, bytes per customer)
	$(PY) bench/bench_core.py $(ARGS)

bench-worker: setup kafka-start  ## the worker on a real broker: records/s, held time (add ARGS="--profile prof.txt")
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) bench/bench_worker.py $(ARGS)

bench-recovery: setup kafka-start  ## state bytes per customer; recovery and sweep of 1,000,000 customers (ARGS="--customers N")
	$(PY) bench/bench_recovery.py $(ARGS)

bench-latency: setup kafka-start  ## decision latency p50/p95/p99 at 1,000/3,000/5,000 input records/s (ARGS="--rates 500,1000")
	$(PY) bench/bench_latency.py $(ARGS)

bench-memory: setup kafka-start  ## the live worker's RSS per customer at 20,000 customers, over 10 passes of the same history, per state cache size
	$(PY) bench/bench_memory.py $(ARGS)

bench-scale: setup kafka-start  ## 1 vs 2 worker processes on the same 3,000-customer backlog: records/s and ratio
	$(PY) bench/bench_scale.py $(ARGS)


QUIX_VENV := .cache/quix-venv
bench-peers: setup kafka-start  ## worker vs raw aiokafka, a naive faust counter and quix-streams
	test -x $(QUIX_VENV)/bin/python || $(PYTHON) -m venv $(QUIX_VENV)
	$(QUIX_VENV)/bin/python -m pip install -q 'quixstreams>=3.20,<4'
	$(PY) bench/bench_peers.py --quix-python $(QUIX_VENV)/bin/python $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
