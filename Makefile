# Two commands do all the set-up on a fresh machine (the first one builds the environment from
# requirements.lock and checks it: scripts/env.sh):
#   make sample   run the whole pipeline on the embedded sample dataset
#   make test     run the test suite
# make rehearse runs the sample through the stand-in model (a test instrument with planted faults).
# make test lists its 25 slowest tests at the end (CI time is watched: under 40 minutes).
# make lock re-resolves pyproject.toml's ranges into requirements.lock (commit the result).
.PHONY: sample test ui viewer catalog check-setup lock rehearse

# torch's OpenMP threads spin while waiting; with several shard runs sharing the cores that costs
# 5-8x (measured, bench/clip_throughput.py). Passive waiting is the right default here.
export OMP_WAIT_POLICY ?= PASSIVE

sample:
	@venv=$$(scripts/env.sh) && "$$venv/bin/python" -m visit_assets.cli run-sample

# Two test workers (pytest-xdist): many tests wait on servers and subprocesses. The tests that start
# `dagster dev` share one worker (xdist_group "dagster_dev"), so two instances never compete for the cores.
TEST_WORKERS ?= 2

test:
	@scripts/ensure_chromium.sh && venv=$$(scripts/env.sh) && "$$venv/bin/python" -m pytest -q -p no:cacheprovider \
	  -n $(TEST_WORKERS) --dist loadgroup --durations=25 $(PYTEST_ARGS)

ui:
	@venv=$$(scripts/env.sh) && DAGSTER_HOME=$${DAGSTER_HOME:-$$PWD/visit_data/dagster_home} \
	  "$$venv/bin/dagster" dev -w workspace.yaml -h 127.0.0.1 -p 3000

# The data viewer (visit_assets/viewer, docs/viewer.md) on http://127.0.0.1:8700, over $VISIT_HOME's store.
viewer:
	@venv=$$(scripts/env.sh) && "$$venv/bin/python" -m visit_assets.cli viewer

rehearse:
	@venv=$$(scripts/env.sh) && "$$venv/bin/python" -m visit_assets.cli rehearse

catalog:
	@venv=$$(scripts/env.sh) && "$$venv/bin/python" -m visit_assets.cli catalog

check-setup:
	@venv=$$(scripts/env.sh) && "$$venv/bin/python" -m visit_assets.setup_check

lock:
	@scripts/lock.sh
