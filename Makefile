# Two commands set up and run everything on a fresh machine (see README):
#   make demo   - the main job: synthesize the stacks offline and run the pipeline end to end in an AWS emulator
#   make test   - every test, lint and security gate CI runs
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ENV ?= dev
# checkov pins boto3 1.35, which conflicts with the app's boto3, so it lives in a virtualenv of its own.
CHECKOV := .venv-checkov/bin/checkov
# So does the Label Studio server that the tests and `make demo DEMO_ARGS="--backend label-studio"` start locally.
LABEL_STUDIO := .venv-labelstudio/bin/label-studio
export PATH := $(CURDIR)/node_modules/node/bin:$(CURDIR)/$(VENV)/bin:$(PATH)
# Offline by design: no CLI notices, telemetry, version checks or instance-metadata lookups.
export CDK_DISABLE_CLI_TELEMETRY := true
export CDK_DISABLE_VERSION_CHECK := 1
export AWS_EC2_METADATA_DISABLED := true
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED := true

.PHONY: setup synth synth-all lint test test-fast test-runtime demo demo-serve browser clean bootstrap deploy diff destroy

$(VENV)/.installed: requirements.txt requirements-dev.txt lambdas/requirements.txt pyproject.toml package.json package-lock.json
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(VENV)/.installed $(LABEL_STUDIO)

$(LABEL_STUDIO): requirements-labelstudio.txt
	test -x .venv-labelstudio/bin/python || $(PYTHON) -m venv .venv-labelstudio
	.venv-labelstudio/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-labelstudio.txt
	touch $@

# Debian's Chromium for the worker-UI browser test; installed only when we are root (CI is), skipped otherwise.
browser:
	@if ! command -v chromium >/dev/null 2>&1 && [ "$$(id -u)" = "0" ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi

# cdk-nag (AwsSolutions + Serverless) runs inside the synth and fails it on a finding; then cfn-lint and checkov read
# this environment's templates (another environment's are removed first; the bundled assets are kept). Only what
# someone can act on is printed: W3005 is CDK's own redundant DependsOn (docs/decisions.md), and the CLI's hint to
# name a stack is about printing a template, which --quiet does not do.
# cfn-lint's Lambda-runtime deprecation rules compare a date table with today's date, so the same commit would pass
# today and fail on 2029-07-31: no gate here reads the clock. tests/infrastructure/test_foundation_lint.py checks the
# runtime against the same table without a date (it must be the newest Python runtime Lambda has), and
# docs/operations.md lists the deprecation dates.
CFN_LINT_DATED := W2531 E2531 E2533
synth: setup $(CHECKOV)
	rm -f cdk.out/*.template.json
	set -o pipefail; npx --no-install cdk synth --quiet -c env=$(ENV) -o cdk.out 2>&1 | \
		{ grep -v -e '^Supply a stack id' || true; }
	$(VENV)/bin/cfn-lint --non-zero-exit-code error --ignore-checks W3005 $(CFN_LINT_DATED) -- cdk.out/*.template.json
	$(CHECKOV) --quiet --compact --skip-download --framework cloudformation -f cdk.out/*.template.json

$(CHECKOV): requirements-checkov.txt
	test -x .venv-checkov/bin/python || $(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

# Every environment, one after the other (each writes cdk.out): dev, prod and studio (the Label Studio backend and
# its deployment); make test runs this beside lint (mypy is the slow part).
synth-all: setup
	$(MAKE) --no-print-directory synth ENV=dev
	$(MAKE) --no-print-directory synth ENV=prod
	$(MAKE) --no-print-directory synth ENV=studio

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy stacks app.py lambdas/fieldlabel cli

# Tests run on PYTEST_WORKERS processes (pytest-xdist; the machine has 2 cores). No test depends on the wall clock, the
# order the tests run in or thread scheduling, so any split is valid. Each stage prints how long it took.
PYTEST_WORKERS ?= 2
STAGE = t0=$$(date +%s); $(1); rc=$$?; echo "make test: $(2) took $$(( $$(date +%s) - t0 )) s"; exit $$rc
test: setup browser
	@$(call STAGE,$(PY) -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS),pytest)
	@$(call STAGE,$(MAKE) --no-print-directory -j2 --output-sync=recurse lint synth-all,lint beside synth dev + prod + studio)
	@$(call STAGE,$(MAKE) --no-print-directory test-runtime,test-runtime)

# The Lambda code's own tests on Python 3.13 (the Lambda runtime is 3.14; this machine's newest CPython is 3.13).
RUNTIME_PY ?= $(shell PYENV_VERSION=3.13.0 pyenv which python3.13 2>/dev/null || command -v python3.13 2>/dev/null)
RUNTIME_TESTS := tests/unit/intake tests/unit/embedding tests/unit/review tests/unit/ui tests/unit/costs tests/unit/test_portal_setup.py \
	tests/unit/test_lambda_packaging.py
test-runtime:
	@if [ -z "$(RUNTIME_PY)" ]; then echo "test-runtime: no Python 3.13 on this machine, skipped"; exit 0; fi; \
	test -x .venv-runtime/bin/python || $(RUNTIME_PY) -m venv .venv-runtime; \
	.venv-runtime/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-runtime-test.txt && \
	PYTHONPATH=lambdas .venv-runtime/bin/python -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) $(RUNTIME_TESTS)

test-fast: setup
	$(PY) -m pytest -q -x -n $(PYTEST_WORKERS) -m "not browser"

# The demo runs the real pipeline from cdk.out in an embedded AWS emulator (docs/demo.md); DEMO_ARGS passes options,
# e.g. make demo DEMO_ARGS="--photos 200". `make demo-serve` keeps it running to upload into (README, Try it locally).
# With DEMO_ARGS="--backend label-studio" the demo synthesizes the 'studio' environment itself (into demo-output/),
# so the dev synth is skipped.
DEMO_ARGS ?=
demo: setup
	$(if $(findstring label-studio,$(DEMO_ARGS)),,$(MAKE) --no-print-directory synth ENV=dev)
	$(if $(findstring label-studio,$(DEMO_ARGS)),,$(PY) -m scripts.summarize cdk.out)
	$(PY) -m localrun --cdk-out cdk.out --output demo-output $(DEMO_ARGS)

demo-serve: setup
	$(MAKE) --no-print-directory synth ENV=dev
	$(PY) -m localrun --serve --cdk-out cdk.out --output demo-output $(DEMO_ARGS)

# Deploying: the pinned CDK CLI on the pinned Node (node_modules, on PATH above) with the venv's Python (cdk.json),
# so it works from a plain shell. Credentials come from your AWS profile or environment as usual.
#   make bootstrap ENV=prod ACCOUNT=123456789012     once per account and region
#   make deploy ENV=prod ACCOUNT=123456789012        ACCOUNT overrides the environment block's account
ACCOUNT ?=
CDK_ENV_ARGS = -c env=$(ENV) $(if $(ACCOUNT),-c account=$(ACCOUNT))
bootstrap: setup
	npx --no-install cdk bootstrap $(CDK_ENV_ARGS)

deploy: setup
	npx --no-install cdk deploy --all $(CDK_ENV_ARGS)

diff: setup
	npx --no-install cdk diff --all $(CDK_ENV_ARGS)

destroy: setup
	npx --no-install cdk destroy --all $(CDK_ENV_ARGS)

clean:
	rm -rf cdk.out build .pytest_cache
