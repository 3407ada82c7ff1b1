# Build, test and check alkey (GNU make).
#
#   make test         system packages + .venv + extension, then pytest
#   make demo         examples/demo.py
#   make example      the example blog (examples/blog) on http://localhost:6543/
#   make test-asan    pytest against an ASan + UBSan build, then the normal build back
#   make test-refcount  tests/test_refcounts.py on the debug interpreter (python3.11-dbg)
#   make valgrind     the native tests under valgrind (PYTHONMALLOC=malloc)
#   make hiredis1-check   csrc/*.c against the hiredis 1.x headers of hiredis-py's sdist
#   make bench        benchmarks/run.py (BENCH_ARGS=--quick for a smoke run)
#   make clean / distclean
#
# PYTEST_ARGS passes options to pytest: make test PYTEST_ARGS='-k keys -x'.
# Only python3, gcc and make need to be there: `deps` installs the rest
# with apt-get when run as root, and otherwise prints the command to run.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

PYTHON ?= python3
CC_SAN ?= gcc
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

CSRC := $(sort $(wildcard csrc/*.c))
NATIVE_TESTS := $(sort $(wildcard tests/test_native*.py tests/test_keys*.py))

# Left by test-asan until the normal build is back: the next build must
# replace the sanitized extension even though no source changed.
ASAN_MARK := build/.asan-build

# $(call apt_install,PACKAGES): installs Debian packages when root, else
# prints the command and fails.  PACKAGES may be a shell variable ($$x).
define apt_install
if [ "$$(id -u)" = 0 ]; then \
    echo "make: installing$(1)"; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends$(1); \
else \
    echo "make: missing system packages; run:" >&2; \
    echo "    sudo apt-get install -y$(1)" >&2; \
    exit 1; \
fi
endef

# Lists the Debian packages providing what the build and tests need and
# are missing (space-prefixed words).
define missing_packages
missing=""; \
if command -v pkg-config >/dev/null; then \
    pkg-config --exists hiredis || missing="$$missing libhiredis-dev"; \
    pkg-config --exists libcrypto || missing="$$missing libssl-dev"; \
else \
    missing="$$missing pkg-config"; \
    [ -e /usr/include/hiredis/hiredis.h ] || missing="$$missing libhiredis-dev"; \
    [ -e /usr/include/openssl/sha.h ] || missing="$$missing libssl-dev"; \
fi; \
command -v redis-server >/dev/null || missing="$$missing redis-server"; \
$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
$(PYTHON) -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' || missing="$$missing python3-dev"
endef

.PHONY: test demo example deps venv native test-asan test-refcount valgrind hiredis1-check bench clean distclean

deps:
	@$(missing_packages); \
	if [ -n "$$missing" ]; then \
	    $(call apt_install,$$missing); \
	    $(missing_packages); \
	    if [ -n "$$missing" ]; then \
	        echo "make: still missing after apt-get:$$missing" >&2; exit 1; \
	    fi; \
	fi

# The virtualenv with alkey installed in editable mode and the test extras.
# Remade when the build or dependency declarations change.
$(STAMP): setup.py pyproject.toml | deps
	[ -x $(VPY) ] || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip 'setuptools>=77' wheel
	$(VPY) -m pip install --quiet -e '.[test]'
	touch $@

.venv venv: $(STAMP)

# Rebuilds alkey/_native*.so in place when csrc/ changed (setuptools
# compares the sources and headers with the built file).
native: $(STAMP)
	@if [ -e $(ASAN_MARK) ]; then \
	    echo "make: replacing the sanitized build"; \
	    $(VPY) setup.py --quiet build_ext --inplace --force; \
	    rm -f $(ASAN_MARK); \
	else \
	    $(VPY) setup.py --quiet build_ext --inplace; \
	fi

test: deps native
	$(VPY) -m pytest $(PYTEST_ARGS)

demo: deps native
	$(VPY) examples/demo.py

# pserve examples/blog/development.ini, with a redis-server of its own
# unless REDIS_URL is set (examples/blog/serve.py); Ctrl-C stops both.
example: deps native
	$(VPY) examples/blog/serve.py

# BENCH_ARGS passes options: make bench BENCH_ARGS=--quick (a smoke run).
BENCH_ARGS ?=

bench: deps native
	@[ -f benchmarks/run.py ] || { echo "make: benchmarks/run.py does not exist yet" >&2; exit 1; }
	$(VPY) benchmarks/run.py $(BENCH_ARGS)

# The extension built with ALKEY_DEBUG_BUILD=1 (-Werror -O0, ASan +
# UBSan, -fno-sanitize-recover=undefined) and loaded into the ordinary
# interpreter: the sanitizer runtimes must be preloaded.  detect_leaks=0
# because Python leaks at exit by design.  ALKEY_SANITIZER tells tests that
# measure memory (RSS) that ASan's quarantine keeps freed memory, so that
# they can skip themselves.
#
# No report may go unnoticed: every one aborts the process that made it
# (abort_on_error; UBSan cannot recover either), and the run fails when
# any report shows up, even if pytest passed -- say in a forked child or
# a subprocess whose exit status a test ignores:
# - ASan writes its reports to $(SAN_DIR)/asan.<pid> (log_path), out of
#   reach of any output capture, whatever process made them;
# - UBSan (GCC's runtime ignores log_path next to ASan's) writes to fd 2,
#   which --capture=sys leaves to the terminal and to $(SAN_DIR)/pytest.log,
#   searched for reports afterwards (a subprocess whose stderr a test
#   captures still dies of SIGABRT).
# The normal build is put back whatever happened.
ASAN_PRELOAD = $(shell $(CC_SAN) -print-file-name=libasan.so) $(shell $(CC_SAN) -print-file-name=libubsan.so)
SAN_DIR := build/sanitizer
SAN_REPORT := (ERROR|WARNING): [A-Za-z]+Sanitizer|:[0-9]+:[0-9]+: runtime error:

test-asan: deps $(STAMP)
	mkdir -p build
	touch $(ASAN_MARK)
	ALKEY_DEBUG_BUILD=1 $(VPY) setup.py --quiet build_ext --inplace --force \
	    --build-temp build/temp-asan
	rm -rf $(SAN_DIR)
	mkdir -p $(SAN_DIR)
	status=0; \
	LD_PRELOAD="$(ASAN_PRELOAD)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:log_path=$(CURDIR)/$(SAN_DIR)/asan \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:abort_on_error=1 \
	ALKEY_SANITIZER=address,undefined \
	    $(VPY) -m pytest --capture=sys $(PYTEST_ARGS) 2>&1 \
	    | tee $(SAN_DIR)/pytest.log || status=$$?; \
	if ls $(SAN_DIR)/asan.* >/dev/null 2>&1; then \
	    echo "make: AddressSanitizer reports ($(SAN_DIR)/asan.*):" >&2; \
	    cat $(SAN_DIR)/asan.* >&2; \
	    status=1; \
	fi; \
	if grep -a -q -E '$(SAN_REPORT)' $(SAN_DIR)/pytest.log; then \
	    echo "make: sanitizer reports in the output:" >&2; \
	    grep -a -n -E '$(SAN_REPORT)' $(SAN_DIR)/pytest.log >&2; \
	    status=1; \
	fi; \
	$(MAKE) --no-print-directory native; \
	if [ $$status -ne 0 ]; then echo "make: test-asan failed" >&2; fi; \
	exit $$status

# Reference counts (tests/test_refcounts.py) on Debian's debug interpreter,
# whose sys.gettotalrefcount() counts every reference: its own virtualenv
# with the test extras, and the extension built for it
# (alkey/_native.cpython-311d-*.so, beside the normal build).  The module
# skips itself on a release interpreter.  PYTHONWARNINGS quiets pip, which
# a debug interpreter runs with every warning shown.
PYTHON_DBG ?= python3.11-dbg
PYTHON_DBG_PACKAGES ?= python3.11-dbg python3.11-venv
VENV_DBG := .venv-dbg
VPY_DBG := $(VENV_DBG)/bin/python
STAMP_DBG := $(VENV_DBG)/.installed

$(STAMP_DBG): setup.py pyproject.toml | deps
	@if ! $(PYTHON_DBG) -c 'import ensurepip, venv' 2>/dev/null; then \
	    $(call apt_install, $(PYTHON_DBG_PACKAGES)); \
	fi
	[ -x $(VPY_DBG) ] || $(PYTHON_DBG) -m venv $(VENV_DBG)
	PYTHONWARNINGS=ignore $(VPY_DBG) -m pip install --quiet --upgrade pip 'setuptools>=77' wheel
	PYTHONWARNINGS=ignore $(VPY_DBG) -m pip install --quiet -e '.[test]'
	touch $@

test-refcount: deps $(STAMP_DBG)
	$(VPY_DBG) setup.py --quiet build_ext --inplace --build-temp build/temp-dbg
	$(VPY_DBG) -m pytest -p no:cacheprovider tests/test_refcounts.py $(PYTEST_ARGS)

# The native tests under valgrind; PYTHONMALLOC=malloc lets valgrind see
# every allocation.  Memory errors and definite leaks fail the run
# (possible leaks are Python's own).  --capture=sys leaves fd 2 to
# valgrind's reports.
#
# The suppressions silence CPython, not alkey: with PYTHONMALLOC=malloc,
# CPython 3.11 computes the int 0 as 0 * an uninitialised digit
# (MEDIUM_VALUE in longobject.c, e.g. for every .pyc's flags), and the
# pointer to the small int it picks stays "uninitialised" wherever it goes
# in the interpreter.  So uninitialised-value reports whose six innermost
# frames are all in the interpreter are dropped; invalid reads and writes,
# uninitialised values used in alkey's code or in the CPython calls it
# makes, and definite leaks are all still reported.  glibc has two false
# reports of its own.
VALGRIND_SUPP := build/valgrind-python.supp
define VALGRIND_SUPP_TEXT
{
   cpython-uninitialised-value-in-libpython
   Memcheck:Value8
   obj:*/libpython3*
   obj:*/libpython3*
   obj:*/libpython3*
   obj:*/libpython3*
   obj:*/libpython3*
   obj:*/libpython3*
}
{
   cpython-uninitialised-cond-in-libpython
   Memcheck:Cond
   obj:*/libpython3*
   obj:*/libpython3*
   obj:*/libpython3*
   obj:*/libpython3*
   obj:*/libpython3*
   obj:*/libpython3*
}
{
   cpython-uninitialised-value-in-static-python
   Memcheck:Value8
   obj:*/bin/python3*
   obj:*/bin/python3*
   obj:*/bin/python3*
   obj:*/bin/python3*
   obj:*/bin/python3*
   obj:*/bin/python3*
}
{
   cpython-uninitialised-cond-in-static-python
   Memcheck:Cond
   obj:*/bin/python3*
   obj:*/bin/python3*
   obj:*/bin/python3*
   obj:*/bin/python3*
   obj:*/bin/python3*
   obj:*/bin/python3*
}
{
   glibc-wmemcmp-reads-whole-words
   Memcheck:Addr32
   fun:__wmemcmp_*
}
{
   glibc-dlopen-keeps-the-old-scope-array
   Memcheck:Leak
   match-leak-kinds: definite
   fun:malloc
   ...
   fun:dl_open_worker_begin
}
endef
export VALGRIND_SUPP_TEXT

valgrind: deps native
	@command -v valgrind >/dev/null || { $(call apt_install, valgrind); }
	@if [ -z "$(NATIVE_TESTS)" ]; then \
	    echo "make: no tests/test_native*.py or tests/test_keys*.py to run" >&2; exit 1; \
	fi
	@mkdir -p build
	@printf '%s\n' "$$VALGRIND_SUPP_TEXT" > $(VALGRIND_SUPP)
	PYTHONMALLOC=malloc valgrind --quiet --leak-check=full \
	    --show-leak-kinds=definite --errors-for-leak-kinds=definite \
	    --error-exitcode=1 --suppressions=$(VALGRIND_SUPP) \
	    $(VPY) -m pytest --capture=sys -p no:cacheprovider $(NATIVE_TESTS) $(PYTEST_ARGS)

# csrc/*.c against hiredis 1.x (with SSL) as vendored in hiredis-py's
# sdist: the system's libhiredis-dev may be 0.14.  Syntax only; nothing of
# that sdist is kept in the tree (build/ is ignored).  HIREDIS_SDIST=path
# uses an sdist already downloaded.
HIREDIS1_DIR := build/hiredis1
HIREDIS_SDIST ?=

hiredis1-check: deps $(STAMP)
	rm -rf $(HIREDIS1_DIR)
	mkdir -p $(HIREDIS1_DIR)
	if [ -n "$(HIREDIS_SDIST)" ]; then \
	    cp "$(HIREDIS_SDIST)" $(HIREDIS1_DIR)/; \
	else \
	    $(VPY) -m pip download --quiet --no-deps --no-binary :all: \
	        --dest $(HIREDIS1_DIR) hiredis; \
	fi
	tar -xzf $(HIREDIS1_DIR)/hiredis-*.tar.gz -C $(HIREDIS1_DIR)
	@vendor=$$(echo $(HIREDIS1_DIR)/hiredis-*/vendor); \
	if [ ! -f "$$vendor/hiredis/hiredis.h" ] || [ ! -f "$$vendor/hiredis/hiredis_ssl.h" ]; then \
	    echo "make: no vendored hiredis in $$vendor" >&2; exit 1; \
	fi; \
	echo "make: hiredis $$(sed -n 's/^#define HIREDIS_\(MAJOR\|MINOR\|PATCH\) //p' \
	    "$$vendor/hiredis/hiredis.h" | paste -sd.) from $$(basename $$(dirname $$vendor))"; \
	pyinc=$$($(VPY) -c 'import sysconfig; print(sysconfig.get_paths()["include"])'); \
	for src in $(CSRC); do \
	    echo "  $(CC_SAN) -fsyntax-only $$src"; \
	    $(CC_SAN) -fsyntax-only -std=gnu11 -Wall -Wextra -Wstrict-prototypes -Werror \
	        -I"$$pyinc" -I"$$vendor" -I"$$vendor/hiredis" \
	        -D_FILE_OFFSET_BITS=64 -DALKEY_HAVE_HIREDIS_SSL=1 \
	        $$(pkg-config --cflags libcrypto) "$$src"; \
	done

clean:
	rm -rf build dist *.egg-info .pytest_cache .hypothesis
	rm -f alkey/*.so
	find . \( -path ./$(VENV) -o -path ./$(VENV_DBG) \) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(VENV_DBG)

# ---- fuzzing (tests/fuzz/README.md) ----------------------------------------
#
#   make fuzz         every fuzz target FUZZ_SECONDS seconds on its corpus
#
# Builds the libFuzzer targets (clang, ASan + UBSan) into build/fuzz/, runs
# each target of FUZZ_TARGETS (oid, key: C; url, unpack: atheris) on
# tests/fuzz/corpus/<target>/, then minimises that corpus with what the run
# found (-merge=1 onto the hand-made seed-* and repro-* files, which stay).
# A crash fails the target, after all of them ran; its input is in
# build/fuzz/artifacts/ and its log in build/fuzz/.
# FUZZ_OPTIONS passes libFuzzer options: make fuzz FUZZ_OPTIONS=-jobs=2.
# Not part of `make test`: tests/test_fuzz_corpus.py replays the corpora.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= oid key url unpack
FUZZ_OPTIONS ?=
FUZZ_CC ?= clang
FUZZ_DIR := build/fuzz
FUZZ_CFLAGS := -g -O1 -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=undefined -Wall -Wextra -Icsrc

.PHONY: fuzz

fuzz: deps native
	@mkdir -p $(FUZZ_DIR)/artifacts
	@printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n)\n{ (void)d; (void)n; return 0; }\n' \
	    > build/fuzz-probe.c
	@$(FUZZ_CC) -fsanitize=fuzzer build/fuzz-probe.c -o build/fuzz-probe 2>/dev/null \
	    || { $(call apt_install, clang); }
	@rm -f build/fuzz-probe build/fuzz-probe.c
	@$(VPY) -c 'import atheris' 2>/dev/null \
	    || $(VPY) -m pip install --quiet atheris
	@pyinc=$$($(VPY) -c 'import sysconfig; print(sysconfig.get_paths()["include"])'); \
	pylib=$$($(VPY) -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))'); \
	pyver=$$($(VPY) -c 'import sysconfig; print(sysconfig.get_config_var("LDVERSION"))'); \
	pyhome=$$($(VPY) -c 'import sys; print(sys.base_prefix)'); \
	for t in oid key; do \
	    echo "  $(FUZZ_CC) -fsanitize=fuzzer,address,undefined -> $(FUZZ_DIR)/$${t}_fuzzer"; \
	    $(FUZZ_CC) $(FUZZ_CFLAGS) -I"$$pyinc" \
	        -DALKEY_FUZZ_PYTHON_HOME="\"$$pyhome\"" \
	        tests/fuzz/$${t}_fuzzer.c csrc/keys.c \
	        -L"$$pylib" -lpython$$pyver -Wl,-rpath,"$$pylib" \
	        $$(pkg-config --libs libcrypto 2>/dev/null || echo -lcrypto) \
	        -o $(FUZZ_DIR)/$${t}_fuzzer; \
	done
	@status=0; \
	for t in $(FUZZ_TARGETS); do \
	    case $$t in \
	        oid|key) run="$(FUZZ_DIR)/$${t}_fuzzer" ;; \
	        url|unpack) run="$(VPY) tests/fuzz/py_fuzzer.py $$t" ;; \
	        *) echo "make: no fuzz target $$t" >&2; exit 2 ;; \
	    esac; \
	    corpus=tests/fuzz/corpus/$$t; new=$(FUZZ_DIR)/new-$$t; \
	    log=$(FUZZ_DIR)/$$t.log; \
	    rm -rf $$new; mkdir -p $$new $$corpus; \
	    echo "make: fuzzing $$t for $(FUZZ_SECONDS) s (log: $$log)"; \
	    if ASAN_OPTIONS=detect_leaks=1 \
	        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	        $$run -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -timeout=10 \
	            -rss_limit_mb=4096 -print_final_stats=1 \
	            -artifact_prefix=$(FUZZ_DIR)/artifacts/$$t- $(FUZZ_OPTIONS) \
	            $$new $$corpus > $$log 2>&1; then \
	        grep -a -E '^#[0-9]+[[:space:]]+DONE' $$log | tail -n 1 || true; \
	        min=$(FUZZ_DIR)/min-$$t; rm -rf $$min; mkdir -p $$min; \
	        cp $$corpus/seed-* $$corpus/repro-* $$min/ 2>/dev/null || true; \
	        if $$run -merge=1 -max_len=4096 \
	                -artifact_prefix=$(FUZZ_DIR)/artifacts/$$t-merge- \
	                $$min $$corpus $$new \
	                >> $$log 2>&1; then \
	            rm -rf $$corpus; mv $$min $$corpus; \
	            echo "make: $$t corpus: $$(ls $$corpus | wc -l) files," \
	                "$$(cat $$corpus/* | wc -c) bytes"; \
	        else \
	            echo "make: merging $$t failed (see $$log)" >&2; status=1; \
	        fi; \
	        rm -rf $$new; \
	    else \
	        status=1; \
	        echo "make: fuzz target $$t failed:" >&2; \
	        tail -n 40 $$log >&2; \
	    fi; \
	done; \
	exit $$status
