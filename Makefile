# Seeing inside CNNs: two commands do all the set-up.
#   make course   create .venv if missing, install, start JupyterLab on notebooks/
#   make test     same install, then lint, unit tests and nbval on every notebook
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: course test install lint unit nbval clean-venv

install: $(STAMP)

# Re-install only when the package's requirements change.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[test]"
	$(BIN)/python -m pip check
	touch $(STAMP)

# Extra JupyterLab options, e.g. make course JUPYTER_ARGS="--no-browser --port 8899".
# JupyterLab refuses to start as root (containers, CI) unless told that is intended.
JUPYTER_ARGS ?= $(if $(filter 0,$(shell id -u)),--allow-root)
course: $(STAMP)
	$(BIN)/jupyter lab notebooks/ $(JUPYTER_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check course_utils tests benchmarks

# Unit tests and every notebook (nbval, strict: all outputs compared) in one pytest run.
test: lint browser
	$(BIN)/python -m pytest tests notebooks --nbval --nbval-current-env \
		--sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout=600 --durations=15

# tests/test_browser.py drives Debian's Chromium: install it if missing (as root, or with sudo).
# Where it cannot be installed, that test skips and says why.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo -n)
browser:
	test -x /usr/bin/chromium || ( $(SUDO) apt-get update -qq && $(SUDO) env \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null ) || \
		echo "Chromium could not be installed: tests/test_browser.py will skip."

# The student edition: every notebook without its solutions and outputs, in student/ (committed;
# tests/test_student_edition.py says "run make student" when it is out of date).
student: $(STAMP)
	$(BIN)/python tools/nbtool.py student

.PHONY: browser student

unit: $(STAMP)
	$(BIN)/python -m pytest tests

nbval: $(STAMP)
	$(BIN)/python -m pytest notebooks --nbval --nbval-current-env \
		--sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout=600

clean-venv:
	rm -rf $(VENV)
