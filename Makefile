# Everything a fresh machine needs (Python 3.11, JDK 17, Maven) is set up by these targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
KAFKA_PORT ?= 9092
export KAFKA_PORT

.PHONY: help setup kafka-start kafka-stop kafka-status topics worker demo test test-unit lint schemas bench bench-worker bench-peers bench-recovery bench-latency bench-scale clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed  ## create .venv and install the project with dev tools

kafka-start:  ## start the local Kafka 3.9 broker (KRaft, 127.0.0.1:$(KAFKA_PORT)); idempotent
	$(PYTHON) tools/kafka/local_kafka.py start --port $(KAFKA_PORT)

kafka-stop:  ## stop the local broker
	$(PYTHON) tools/kafka/local_kafka.py stop --port $(KAFKA_PORT)

kafka-status:
	$(PYTHON) tools/kafka/local_kafka.py status --port $(KAFKA_PORT)

topics: setup kafka-start  ## create every topic of the contract
	TRIGGER_SANITY_BOOTSTRAP_SERVERS=127.0.0.1:$(KAFKA_PORT) $(VENV)/bin/trigger-sanity topics create

worker: topics  ## run the worker against the local broker
	TRIGGER_SANITY_BOOTSTRAP_SERVERS=127.0.0.1:$(KAFKA_PORT) $(VENV)/bin/trigger-sanity worker

demo: setup kafka-start  ## the main job: broker, topics, worker, demo history; prints decisions
	TRIGGER_SANITY_BOOTSTRAP_SERVERS=127.0.0.1:$(KAFKA_PORT) $(VENV)/bin/trigger-sanity demo

test: setup  ## the whole suite: unit + integration (starts its own broker when none is given)
	$(VENV)/bin/pytest -q

test-unit: setup
	$(VENV)/bin/pytest -q tests/unit

lint: setup  ## ruff + mypy
	$(VENV)/bin/ruff check streams schemas tests bench tools
	$(VENV)/bin/mypy

schemas: setup  ## regenerate schemas/json after changing a model
	$(PY) -m schemas.export

bench: setup  ## core benchmarks (events/s, latency percentiles, bytes per customer)
	$(PY) bench/bench_core.py

bench-worker: setup kafka-start  ## the worker on a real broker: records/s, held time (add ARGS="--profile prof.txt")
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) bench/bench_worker.py $(ARGS)

bench-recovery: setup kafka-start  ## state bytes per customer; recovery and sweep of 1,000,000 customers (ARGS="--customers N")
	$(PY) bench/bench_recovery.py $(ARGS)

bench-latency: setup kafka-start  ## decision latency p50/p95/p99 at 1,000/3,000/5,000 input records/s (ARGS="--rates 500,1000")
	$(PY) bench/bench_latency.py $(ARGS)

bench-scale: setup kafka-start  ## 1 vs 2 worker processes on the same 3,000-customer backlog: records/s and ratio
	$(PY) bench/bench_scale.py $(ARGS)

# The benchmarks start (or reuse) the local broker on LOCAL_KAFKA_PORT: the one kafka-start
# just started, also when KAFKA_PORT is not the default.
bench-worker bench-peers bench-recovery bench-latency bench-scale: export LOCAL_KAFKA_PORT = $(KAFKA_PORT)

QUIX_VENV := .cache/quix-venv
bench-peers: setup kafka-start  ## worker vs raw aiokafka, a naive faust counter and quix-streams
	test -x $(QUIX_VENV)/bin/python || $(PYTHON) -m venv $(QUIX_VENV)
	$(QUIX_VENV)/bin/python -m pip install -q 'quixstreams>=3.20,<4'
	$(PY) bench/bench_peers.py --quix-python $(QUIX_VENV)/bin/python $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
