# Seeing inside CNNs: two commands do all the set-up.
#   make course   create .venv if missing, install, start JupyterLab on student/ (the exercises)
#   make instructor   the same on notebooks/ (solutions and stored outputs)
#   make book     the course as a book site, from the stored notebooks (_build/book/html)
#   make test     same install, then lint, unit tests (the book site read in Chromium among them)
#                 and nbval on every notebook, on this stack and on the Colab stack
#                 (make test-colab-stack)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: course instructor test install lint unit nbval clean-venv test-colab-stack colab-setup

install: $(STAMP)

# Re-install only when the package's requirements change. TensorFlow and Keras go to the newest
# that pyproject.toml allows (an existing .venv would otherwise keep its older ones): make test
# tests that version here and Colab's on the Colab stand-in.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[anchors,lab,test,book]" --upgrade tensorflow keras
	$(BIN)/python -m pip check
	touch $(STAMP)

# Extra JupyterLab options, e.g. make course JUPYTER_ARGS="--no-browser --port 8899".
# JupyterLab refuses to start as root (containers, CI) unless told that is intended.
JUPYTER_ARGS ?= $(if $(filter 0,$(shell id -u)),--allow-root)
course: $(STAMP)
	$(BIN)/jupyter lab student/ $(JUPYTER_ARGS)

instructor: $(STAMP)
	$(BIN)/jupyter lab notebooks/ $(JUPYTER_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check course_utils tests benchmarks tools

# Unit tests and every notebook (nbval, strict: all outputs compared) in one pytest run.
# Each stack keeps its own matplotlib font cache: a cache written by another installation names
# font files that may be gone, and matplotlib's "findfont" warnings would then break nbval.
test: lint browser
	MPLCONFIGDIR=$(VENV)/matplotlib $(BIN)/python -m pytest tests notebooks --nbval --nbval-current-env \
		--sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout=600 --durations=15
	$(MAKE) test-colab-stack

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

.PHONY: browser student book

# The course as a book site, from the notebooks' stored outputs (tools/book.py): _build/book/html.
# tests/test_book.py builds it too and reads every page in Chromium.
book: $(STAMP)
	MPLCONFIGDIR=$(VENV)/matplotlib $(BIN)/python tools/book.py

# Every method on seven keras.applications architectures in three forms (tests/test_zoo.py);
# `make test` runs a MobileNetV2 subset. Each method traces its own view of the model: under a load
# of 10-12 on 2 cores, every method on one MobileNetV2 form took about 5.5 min, the gradient and
# CAM checks on one ResNet50 form about 4 min.
test-zoo: $(STAMP)
	MPLCONFIGDIR=$(VENV)/matplotlib $(BIN)/python -m pytest tests/test_zoo.py --zoo -rA \
		--durations=25

.PHONY: test-zoo

unit: $(STAMP)
	$(BIN)/python -m pytest tests

nbval: $(STAMP)
	$(BIN)/python -m pytest notebooks --nbval --nbval-current-env \
		--sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout=600

clean-venv:
	rm -rf $(VENV) $(COLAB_VENV)

# The Colab stack: numpy 2, TensorFlow 2.20, scikit-image 0.25, ipywidgets 7.7 in .venv-colab.
# tests/colab_preinstalled.txt stands in for what Colab already has; then tools/colab_install.py,
# the script every notebook's setup cell runs on Colab, installs the course on top of it (a regular
# install: the notebooks' kernels import that copy, with the models inside it).
COLAB_VENV := .venv-colab
COLAB_BIN  := $(COLAB_VENV)/bin

$(COLAB_VENV)/.base: tests/colab_preinstalled.txt
	test -x $(COLAB_BIN)/python || $(PYTHON) -m venv $(COLAB_VENV)
	$(COLAB_BIN)/python -m pip install --upgrade pip
	$(COLAB_BIN)/python -m pip install -r tests/colab_preinstalled.txt
	touch $@

$(COLAB_VENV)/.installed: $(COLAB_VENV)/.base pyproject.toml tools/colab_install.py \
		$(wildcard course_utils/*.py data/*)
	$(COLAB_BIN)/python tools/colab_install.py --extras colab,test --reinstall
	touch $@

# JupyterLab and the browser are tested on the local stack only (Colab has its own front end).
# This run also stands in for another CPU: COURSE_PERTURB (course_utils/perturb.py) moves every
# loaded weight and generated image by about 1e-6, the size of another machine's rounding, and
# every stored output must still match. `make test-colab-stack COURSE_PERTURB=` turns it off.
COURSE_PERTURB ?= 1
test-colab-stack: $(COLAB_VENV)/.installed
	COURSE_PERTURB=$(COURSE_PERTURB) MPLCONFIGDIR=$(COLAB_VENV)/matplotlib \
		$(COLAB_BIN)/python -m pytest tests notebooks --nbval --nbval-current-env \
		--ignore=tests/test_course_server.py --ignore=tests/test_browser.py --ignore=tests/test_book.py \
		--sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout=600 --durations=5

# Regenerate every notebook's setup cell and the README's Colab badges from pyproject.toml.
colab-setup: $(STAMP)
	$(BIN)/python tools/colab_setup.py sync
