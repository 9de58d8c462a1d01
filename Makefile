# The two commands: `make book` and `make test`. Both create .venv when it is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# plotly >= 6 emits only its own mimetype, which the book's renderer drops: ask for HTML with
# plotly.js inlined (offline). Colab leaves this unset and keeps its own renderer.
export PLOTLY_RENDERER := notebook
# The book is built and tested at the CPU scale unless you ask for another, also on a machine
# with CUDA (where a notebook opened by hand defaults to `gpu`): SKIPLAB_SCALE=gpu make book.
export SKIPLAB_SCALE ?= quick
# Offline JavaScript for the rendered pages (MathJax, require.js, the widget manager):
# npm tarballs at pinned versions, unpacked into _vendor/ (ignored by git).
MATHJAX := mathjax@3.2.2
REQUIREJS := requirejs@2.3.7
HTML_MANAGER := @jupyter-widgets/html-manager@1.0.15

.PHONY: book test venv vendor clean assignments grade

venv: $(VENV)/.installed

# __init__.py holds the version, which the installed metadata must match (reinstall on a bump)
$(VENV)/.installed: requirements.txt pyproject.toml src/skiplab/__init__.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# pip warns once per package about the machine's empty local index folders: hide those lines
	$(BIN)/python -m pip install --quiet -r requirements.txt 2>&1 | grep -v "^WARNING: Location 'file:" ; test $${PIPESTATUS[0]} -eq 0
	@touch $@

# A second environment with the versions Colab ships (requirements-colab.txt), for the Colab
# pass of `make test`. Python 3.13 as in Colab when there is one (COLAB_PYTHON, else pyenv's),
# else $(PYTHON). skiplab goes in last with a plain `pip install -e .`, as in Colab's setup cell;
# check_pins.py fails when that moved a pin, and prints the versions.
COLAB_VENV := .venv-colab
COLAB_BIN := $(COLAB_VENV)/bin
COLAB_PYTHON ?= python3.13
.PHONY: venv-colab
venv-colab: $(COLAB_VENV)/.installed

$(COLAB_VENV)/.installed: requirements-colab.txt pyproject.toml src/skiplab/__init__.py
	@test -x $(COLAB_BIN)/python || { py=$(PYTHON); \
		for p in $(COLAB_PYTHON) $$HOME/.pyenv/versions/3.13*/bin/python3.13; do \
			if $$p -c '' 2>/dev/null; then py=$$p; break; fi; done; \
		$$py -m venv $(COLAB_VENV); }
	$(COLAB_BIN)/python -m pip install --quiet -r requirements-colab.txt 2>&1 | grep -v "^WARNING: Location 'file:" ; test $${PIPESTATUS[0]} -eq 0
	$(COLAB_BIN)/python -m pip install --quiet -e . 2>&1 | grep -v "^WARNING: Location 'file:" ; test $${PIPESTATUS[0]} -eq 0
	$(COLAB_BIN)/python tools/check_pins.py requirements-colab.txt
	@touch $@

vendor: _vendor/.stamp

_vendor/.stamp: Makefile
	rm -rf _vendor .vendor-tmp && mkdir -p _vendor/mathjax _vendor/require _vendor/html-manager .vendor-tmp
	cd .vendor-tmp && npm pack --silent $(MATHJAX) $(REQUIREJS) $(HTML_MANAGER) >/dev/null
	cd .vendor-tmp && for f in *.tgz; do mkdir -p "$${f%.tgz}" && tar xzf "$$f" -C "$${f%.tgz}"; done
	cp .vendor-tmp/mathjax-*/package/es5/tex-svg-full.js _vendor/mathjax/
	cp .vendor-tmp/requirejs-*/package/require.js _vendor/require/
	cp .vendor-tmp/jupyter-widgets-html-manager-*/package/dist/embed-amd.js _vendor/html-manager/
	cp .vendor-tmp/jupyter-widgets-html-manager-*/package/dist/*.{woff,woff2,ttf,eot,svg} _vendor/html-manager/
	rm -rf .vendor-tmp
	@touch $@

# Executes every notebook that changed since the last build (jupyter-cache) and renders HTML
# into _build/html. Any warning, cell error or failed claim fails the build.
# jupyter-cache keys on a notebook's own text only; when skiplab's source changes, every cached
# execution may be stale (a claim could now fail), so the cache and Sphinx's saved environment
# (which would otherwise skip the unchanged notebook) are dropped.
book: venv vendor
	@mkdir -p _build
	@hash=$$(find src -name '*.py' -print0 | sort -z | xargs -0 sha1sum | sha1sum | cut -c1-40); \
	if [ "$$(cat _build/.skiplab-source 2>/dev/null)" != "$$hash" ]; then \
		rm -rf _build/.jupyter_cache _build/.doctrees; echo "$$hash" > _build/.skiplab-source; fi
	@# the changed notebooks, one per core with one torch thread each, into that cache
	@# (PARALLEL=0 leaves them to the build, one after another: `make test` does, since its
	@# Colab pass already keeps the second core busy)
	@[ "$(PARALLEL)" = 0 ] || OMP_NUM_THREADS=1 $(BIN)/python tools/execute_parallel.py
	$(BIN)/jupyter-book build . -W -n --keep-going

# The browser tests' Chromium (and npm, for `make vendor`): tools/ensure_browser.py finds them, or
# installs Debian's packages (as root or with password-less sudo), or tries Playwright's browser
# download, or stops with a message saying how to get one, before any notebook runs. The tests
# find the same browser (SKIPLAB_CHROMIUM, else /usr/bin/chromium, else PATH, else Playwright's).
.PHONY: browser
browser: venv
	@$(PYTHON) tools/ensure_browser.py ensure --python $(BIN)/python \
		$$([ _vendor/.stamp -nt Makefile ] || echo --npm)

# Unit tests, every notebook through nbval, the book, its pages in headless Chromium, and the
# assignments (built, run unfinished as a student would, graded).
# nbval and the book build each execute every notebook. They run side by side, each with one
# torch thread (on 2 cores, 2 threads are only ~1.2x faster than 1, and two processes with 2
# threads each fight over the cores), so the two passes take about the time of one.
# The nbval pass is the Colab pass: Colab's versions (.venv-colab), a second seed (COLAB_SEED;
# the book stays at 0) and Colab's plotly renderer, and tools/colab_outputs.py fails a notebook
# whose figures or widgets come out in a form Colab does not draw. It starts first, in the
# background: .venv-colab installs (when missing or stale) on the core the one-thread unit tests
# leave free, then nbval runs beside the book build. Failed unit tests stop it.
COLAB_SEED ?= 1
COLAB_PASS = SKIPLAB_SEED=$(COLAB_SEED) OMP_NUM_THREADS=1 PLOTLY_RENDERER=colab \
	PYDEVD_DISABLE_FILE_VALIDATION=1 $(COLAB_BIN)/python -m pytest --nbval-lax \
	--nbval-current-env -p tools.colab_outputs -p no:cacheprovider -q book
test: browser venv vendor
	@mkdir -p _build
	@{ $(MAKE) --no-print-directory venv-colab && exec env $(COLAB_PASS); } \
		> _build/nbval.log 2>&1 & colab=$$!; \
	$(BIN)/python -m pytest tests -m "not browser" -q --ignore=tests/test_assignments.py \
		|| { kill $$colab 2>/dev/null; exit 1; }; \
	OMP_NUM_THREADS=1 $(MAKE) book PARALLEL=0; book=$$?; \
	wait $$colab; colab_status=$$?; \
	echo "--- nbval, Colab pass (.venv-colab, seed $(COLAB_SEED), every notebook, fresh kernel) ---"; \
	cat _build/nbval.log; \
	test $$book -eq 0 && test $$colab_status -eq 0
	@# The browser tests mostly wait for pages to draw; the assignment tests (make assignments,
	@# student notebooks run and graded with otter, about 3 min) run beside them.
	@$(BIN)/python -m pytest tests/test_assignments.py -q -p no:cacheprovider \
		> _build/assignments-tests.log 2>&1 & assignments=$$!; \
	$(BIN)/python -m pytest tests -m browser -q; browser=$$?; \
	wait $$assignments; assignments_status=$$?; \
	echo "--- assignment tests ---"; cat _build/assignments-tests.log; \
	test $$browser -eq 0 && test $$assignments_status -eq 0

# One part at a time, for contributors (CONTRIBUTING.md):
#   make unit                                   the unit tests (about a minute)
#   make chapter CHAPTER=book/why/symmetry.ipynb   one chapter top to bottom in a fresh kernel
# (nbval, as the Colab pass runs it, with this machine's versions; its claims are checked)
.PHONY: unit chapter
unit: venv
	$(BIN)/python -m pytest tests -m "not browser" -q --ignore=tests/test_assignments.py
chapter: venv
	@test -n "$(CHAPTER)" || { echo "usage: make chapter CHAPTER=book/<part>/<name>.ipynb"; exit 2; }
	$(BIN)/python -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider -q $(CHAPTER)

# Every claim of every chapter over seeds and torch thread counts (tools/claims_table.py):
# _build/claims/claims.md (held in how many runs, failed in which) and evidence.md (every
# run's numbers). About 6 minutes of one core per seed and thread count at quick scale.
#   make claims SEEDS="0 1 2" THREADS="1 2" [CHAPTERS="book/why/landscape.ipynb ..."]
SEEDS ?= 0 1 2 3 4 5 6 7 8 9
THREADS ?= 1 2
.PHONY: claims
claims: venv
	$(BIN)/python tools/claims_table.py --seeds $(SEEDS) --threads $(THREADS) \
		$(if $(CHAPTERS),--chapters $(CHAPTERS))

# Assignments for teachers (see book/teachers.md): every chapter's exercises as an otter-grader
# assignment, a student notebook and an autograder, in $(ASSIGNMENTS)/NAME/. otter runs every
# check on the solutions while it builds, so a solution that stops passing fails this target.
ASSIGNMENTS ?= _build/assignments
assignments: venv
	$(BIN)/python tools/assignments.py build --out $(ASSIGNMENTS)

# Grade a folder of submitted notebooks into a CSV, hidden checks included, without Docker:
#   make grade ASSIGNMENT=resnet SUBMISSIONS=path/to/folder [SCORES=scores.csv] [SANDBOX=1]
# Each notebook runs in a fresh kernel, at most GRADE_TIMEOUT seconds (then it scores 0).
# SANDBOX=1 runs each one inside bubblewrap (Debian: apt-get install bubblewrap): no network,
# the file system read-only but for a scratch folder; it stops with the reason where
# bubblewrap cannot work (book/teachers.md has the container route).
SCORES ?= $(ASSIGNMENTS)/$(ASSIGNMENT)/scores.csv
GRADE_TIMEOUT ?= 600
SANDBOX ?=
grade: venv
	@test -n "$(ASSIGNMENT)" -a -n "$(SUBMISSIONS)" || { \
		echo "usage: make grade ASSIGNMENT=<name, e.g. resnet> SUBMISSIONS=<folder or notebook> [SCORES=file.csv] [SANDBOX=1]"; exit 2; }
	$(BIN)/python tools/assignments.py grade $(ASSIGNMENT) $(SUBMISSIONS) --out $(ASSIGNMENTS) \
		--csv $(SCORES) --timeout $(GRADE_TIMEOUT) $(if $(filter-out 0 no false,$(SANDBOX)),--sandbox)

# The rendered book as one PDF, _build/pdf/book.pdf: every _toc.yml page printed by the browser
# the tests use (tools/book_pdf.py; plotly figures print as drawn), joined with pypdf.
.PHONY: pdf
pdf: browser book
	$(BIN)/python tools/book_pdf.py --html _build/html --out _build/pdf/book.pdf

clean:
	rm -rf _build _vendor .vendor-tmp
