# ptune - prompt tuning inside PostgreSQL.
#
#   make                 engine library, CLI (build/ptune), unit tests, extension
#   make test-unit       C unit tests of the engine
#   make SANITIZE=1 BUILD=build-asan test-unit   the same under ASan + UBSan
#   make install         extension files into PostgreSQL (needs write access)
#   make check           engine tests that need no PostgreSQL: unit tests and the
#                        cross-check against the float64 PyTorch reference
#   make installcheck    after make install: pg_regress and the isolation specs on a
#                        throwaway cluster that preloads ptune (test/run_regress.sh)
#   scripts/test.sh      every suite, installing what it needs (what CI runs)
#
# Layout: src/engine (no PostgreSQL), src/cli (the ptune command),
# src/pg (the extension: ptune.so for backends, ptune_worker.so for the model
# worker, which alone links the engine and its math libraries).

BUILD    ?= build
MULTIARCH := $(shell gcc -print-multiarch)
OPENBLAS_DIR ?= /usr/lib/$(MULTIARCH)/openblas-openmp

ENGINE_CFLAGS = -std=gnu11 -O3 -g -fPIC -fopenmp -Wall -Wextra -Werror \
                -Wno-unused-parameter -Wno-format-truncation -fno-strict-aliasing \
                -DPT_OPENBLAS_LIBRARY='"$(OPENBLAS_DIR)/libopenblas.so.0"' -Isrc/engine
ENGINE_CXXFLAGS = -std=c++17 -O2 -g -fPIC -Wall -Wextra -Werror -Isrc/engine
# OpenBLAS is not linked: linear.c loads it at run time (see there why)
ENGINE_LIBS = -ldnnl -lsentencepiece -ljansson -lxxhash -lz -lgomp -lstdc++ -lm -lpthread -ldl

ifeq ($(SANITIZE),1)
ENGINE_CFLAGS   += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
ENGINE_CXXFLAGS += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer
ENGINE_LIBS     += -fsanitize=address,undefined
endif

ENGINE_C   = $(wildcard src/engine/*.c)
ENGINE_CXX = $(wildcard src/engine/*.cc)
ENGINE_OBJS = $(patsubst src/engine/%.c,$(BUILD)/engine/%.o,$(ENGINE_C)) \
              $(patsubst src/engine/%.cc,$(BUILD)/engine/%.o,$(ENGINE_CXX))
ENGINE_LIB = $(BUILD)/libptune_engine.a

CLI_OBJS  = $(patsubst src/cli/%.c,$(BUILD)/cli/%.o,$(wildcard src/cli/*.c))
UNIT_OBJS = $(patsubst test/unit/%.c,$(BUILD)/unit/%.o,$(wildcard test/unit/*.c))

.PHONY: engine cli test-unit check installcheck clean-build install-worker

# the first target: everything (defined after PGXS is included below)
default: all

engine: $(ENGINE_LIB)
cli: $(BUILD)/ptune

$(BUILD)/engine/%.o: src/engine/%.c $(wildcard src/engine/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ENGINE_CFLAGS) -c $< -o $@

$(BUILD)/engine/%.o: src/engine/%.cc $(wildcard src/engine/*.h)
	@mkdir -p $(dir $@)
	$(CXX) $(ENGINE_CXXFLAGS) -c $< -o $@

$(ENGINE_LIB): $(ENGINE_OBJS)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/cli/%.o: src/cli/%.c $(wildcard src/cli/*.h src/engine/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ENGINE_CFLAGS) -Isrc/cli -c $< -o $@

$(BUILD)/ptune: $(CLI_OBJS) $(ENGINE_LIB)
	$(CC) $(ENGINE_CFLAGS) -o $@ $(CLI_OBJS) $(ENGINE_LIB) $(ENGINE_LIBS)

$(BUILD)/unit/%.o: test/unit/%.c $(wildcard test/unit/*.h src/engine/*.h src/cli/csv.h)
	@mkdir -p $(dir $@)
	$(CC) $(ENGINE_CFLAGS) -Itest/unit -Isrc/cli -c $< -o $@

# the unit tests also cover the CLI's CSV reader
$(BUILD)/test_engine: $(UNIT_OBJS) $(BUILD)/cli/csv.o $(ENGINE_LIB)
	$(CC) $(ENGINE_CFLAGS) -o $@ $(UNIT_OBJS) $(BUILD)/cli/csv.o $(ENGINE_LIB) $(ENGINE_LIBS)

# Unit tests need a generated tiny checkpoint; test/run_unit.sh makes it.
test-unit: $(BUILD)/test_engine $(BUILD)/ptune
	BUILD=$(BUILD) bash test/run_unit.sh

# (only defined when asked for: PGXS, read otherwise, has a `check` of its own)
ifneq ($(filter check,$(MAKECMDGOALS)),)
check: $(BUILD)/test_engine $(BUILD)/ptune
	BUILD=$(BUILD) bash test/run_unit.sh
	BUILD=$(BUILD) bash test/cross_check.sh
endif

installcheck: all
	BUILD=$(BUILD) bash test/run_regress.sh

clean-build:
	rm -rf build build-asan

# ---- the PostgreSQL extension (PGXS) -----------------------------------------
#
# ptune.so:        backends and postmaster (GUCs, shared memory, SQL functions);
#                  links no math library.
# ptune_worker.so: the model worker, the only library with the engine inside.

PG_CONFIG ?= pg_config
EXTENSION  = ptune
DATA       = sql/ptune--0.1.0.sql
MODULE_big = ptune
OBJS       = src/pg/ptune.o src/pg/guc.o src/pg/ipc.o src/pg/slot.o src/pg/wire.o src/pg/client.o src/pg/prompt_store.o \
             src/pg/scoring.o src/pg/sql_classify.o src/pg/sql_train.o src/pg/sql_evaluate.o src/pg/sql_admin.o \
             src/pg/sql_generate.o \
             src/pg/tasks.o src/pg/table_scan.o src/pg/distribute.o \
             src/engine/metrics.o
PG_CPPFLAGS = -Isrc/engine -Isrc/pg
# zlib: the CRC-32 of task exports (src/pg/distribute.c), the prompts' own
SHLIB_LINK  = -lz
PG_CFLAGS   = -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare
EXTRA_CLEAN = ptune_worker.so $(WORKER_OBJS) src/pg/ipc_other.wo

WORKER_OBJS = src/pg/worker.wo src/pg/worker_classify.wo src/pg/worker_train.wo \
              src/pg/worker_explain.wo src/pg/worker_generate.wo src/pg/request_job.wo \
              src/pg/ipc.wo src/pg/slot.wo src/pg/wire.wo

# ptune must be preloaded, so PGXS's installcheck (against a running server that
# may not preload it) cannot work: ours starts its own cluster.  PGXS's `check`
# only says "not supported"; ours needs no PostgreSQL at all, so `make check`
# (run it on its own) does not read PGXS, whose rule would clash with ours.
NO_INSTALLCHECK = 1
PGXS := $(shell $(PG_CONFIG) --pgxs)
ifeq ($(filter check,$(MAKECMDGOALS)),)
include $(PGXS)
else ifneq ($(MAKECMDGOALS),check)
$(error run `make check` on its own: it builds what it needs)
endif

all: ptune_worker.so cli

# PGXS knows nothing of our headers: rebuild the backend objects when one changes
$(filter src/pg/%,$(OBJS)): $(wildcard src/pg/*.h src/engine/*.h)

# Worker objects: hidden symbols, so its copies of ipc.c, slot.c and wire.c never clash
# with ptune.so's (PostgreSQL loads libraries with RTLD_GLOBAL).
src/pg/%.wo: src/pg/%.c $(wildcard src/pg/*.h src/engine/*.h)
	$(CC) $(CFLAGS) $(CFLAGS_SL) $(CPPFLAGS) -Isrc/engine -Isrc/pg -fvisibility=hidden \
	  '-DPGDLLEXPORT=__attribute__((visibility("default")))' -c $< -o $@

ptune_worker.so: $(WORKER_OBJS) $(ENGINE_LIB)
	$(CC) -shared -o $@ $(WORKER_OBJS) -Wl,--exclude-libs,ALL $(ENGINE_LIB) $(ENGINE_LIBS) \
	  $(LDFLAGS_SL) -fopenmp

# The worker library as another build would make it: another shared-memory
# layout (test/pg/tests.sh checks that it stops with a clear message, no crash loop).
src/pg/ipc_other.wo: src/pg/ipc.c $(wildcard src/pg/*.h)
	$(CC) $(CFLAGS) $(CFLAGS_SL) $(CPPFLAGS) -Isrc/engine -Isrc/pg -fvisibility=hidden \
	  '-DPGDLLEXPORT=__attribute__((visibility("default")))' -DPTUNE_SHMEM_LAYOUT_OTHER -c $< -o $@

$(BUILD)/ptune_worker_other_layout.so: $(filter-out src/pg/ipc.wo,$(WORKER_OBJS)) src/pg/ipc_other.wo $(ENGINE_LIB)
	$(CC) -shared -o $@ $(filter-out src/pg/ipc.wo,$(WORKER_OBJS)) src/pg/ipc_other.wo -Wl,--exclude-libs,ALL \
	  $(ENGINE_LIB) $(ENGINE_LIBS) $(LDFLAGS_SL) -fopenmp

install: install-worker
install-worker: ptune_worker.so
	$(INSTALL_SHLIB) ptune_worker.so '$(DESTDIR)$(pkglibdir)/'
