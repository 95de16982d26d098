# optstudio: one non-recursive Makefile.
#   make                 build optstudio (CUDA backend too when nvcc is on the PATH)
#   make test            every test that needs no GPU; ends with one "N passed, N failed" line
#   make bench           benchmarks, printed as tables
#   make fuzz            fuzz targets (clang libFuzzer) for a bounded time each
#   make deps            install missing Debian packages
#   make models          fetch the demo model and the public-domain text into the data home
#   make install PREFIX=/usr/local DESTDIR=
#   make SAN=1           address + undefined sanitizers;  make V=1  show commands
#   make CUDA=0          build without CUDA even when nvcc is present

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
DATADIR ?= $(PREFIX)/share/optstudio
BUILD ?= build

CC ?= cc
NVCC ?= nvcc
PKG_CONFIG ?= pkg-config
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60

ifeq ($(V),1)
Q :=
say := @true
else
Q := @
say := @printf '  %-6s %s\n'
endif

# --- libraries: pkg-config first, a named Debian package when missing --------------------
# name:pkg-config module:Debian package
LIBS_WANTED := ncursesw:ncursesw:libncurses-dev sqlite3:sqlite3:libsqlite3-dev cjson:libcjson:libcjson-dev
DEB_PACKAGES := build-essential pkg-config libncurses-dev libsqlite3-dev libcjson-dev \
	libmicrohttpd-dev clang tmux python3-pip bible-kjv

pc_ok = $(shell $(PKG_CONFIG) --exists $(1) 2>/dev/null && echo yes)
missing_pkgs := $(strip $(foreach l,$(LIBS_WANTED),$(if $(call pc_ok,$(word 2,$(subst :, ,$(l)))),,$(word 3,$(subst :, ,$(l))))))
PC_MODULES := ncursesw sqlite3 libcjson

ifeq ($(filter deps models clean help,$(MAKECMDGOALS)),)
ifneq ($(missing_pkgs),)
$(error missing libraries; install them with 'make deps' or 'sudo apt-get install $(missing_pkgs)')
endif
endif

# asked once, on first use, so that `make deps models test` on a fresh machine sees the
# libraries `deps` has just installed
PC_CFLAGS = $(eval PC_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PC_MODULES) 2>/dev/null))$(PC_CFLAGS)
PC_LIBS = $(eval PC_LIBS := $(shell $(PKG_CONFIG) --libs $(PC_MODULES) 2>/dev/null))$(PC_LIBS)

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter
OPT ?= -O2 -g
CFLAGS ?=
CFLAGS += -std=gnu11 $(OPT) $(WARN) -MMD -MP -pthread -I. $(PC_CFLAGS)
LDLIBS += $(PC_LIBS) -lpthread -lm

ifeq ($(SAN),1)
CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer
LDFLAGS += -fsanitize=address,undefined
endif

# --- CUDA: compiled and linked when nvcc is present ---------------------------------------
CUDA ?= $(if $(shell command -v $(NVCC) 2>/dev/null),1,0)
ifeq ($(CUDA),1)
CUDA_HOME ?= $(patsubst %/bin/,%,$(dir $(shell command -v $(NVCC))))
NVCCFLAGS ?= -O2 -std=c++17 -I. --compiler-options -Wall,-fPIC
CFLAGS += -DOPTSTUDIO_CUDA=1 -I$(CUDA_HOME)/include
LDLIBS += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart -lstdc++
GPU_SRC := $(wildcard gpu/*.cu)
CUDA_NOTE := CUDA backend: in ($(NVCC) from $(CUDA_HOME))
else
GPU_SRC :=
CUDA_NOTE := CUDA backend: not built (no nvcc on PATH, or CUDA=0); CPU only
endif

# --- sources --------------------------------------------------------------------------------
CORE_DIRS := core core/format core/engine core/cpu core/optimize core/eval core/jobs core/serve store
LIB_SRC := $(foreach d,$(CORE_DIRS),$(wildcard $(d)/*.c))
TUI_SRC := $(wildcard tui/*.c)
# data files compiled into the binary, so a fresh data home is seeded without an install tree
EMBED_SRC := examples/instances.json themes/dark.json themes/light.json themes/high-contrast.json \
	themes/mono.json
EMBED_OBJ := $(EMBED_SRC:%=$(BUILD)/embed/%.o)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o) $(GPU_SRC:%.cu=$(BUILD)/%.cu.o) $(EMBED_OBJ)
TUI_OBJ := $(TUI_SRC:%.c=$(BUILD)/%.o)
LIB := $(BUILD)/liboptstudio.a
BIN := $(BUILD)/optstudio

TEST_SRC := $(wildcard tests/unit/test_*.c)
TEST_BIN := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TOOL_SRC := $(wildcard tests/tools/*.c)
TOOL_BIN := $(TOOL_SRC:tests/tools/%.c=$(BUILD)/tests/%)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)

.PHONY: all test bench fuzz deps models install uninstall clean cuda-note help
all: cuda-note $(BIN)

cuda-note:
	@echo "$(CUDA_NOTE)"

$(BUILD)/%.o: %.c
	$(say) CC $<
	@mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/%.cu.o: %.cu
	$(say) NVCC $<
	@mkdir -p $(@D)
	$(Q)$(NVCC) $(NVCCFLAGS) -DOPTSTUDIO_CUDA=1 -MMD -MP -c $< -o $@

# examples/instances.json -> const char embedded_instances_json[] (+ _len), NUL-terminated
$(BUILD)/embed/%.c: %
	$(say) EMBED $<
	@mkdir -p $(@D)
	$(Q)sym=embedded_$$(basename $< | tr -c 'a-zA-Z0-9\n' '_'); { \
		echo "#include <stddef.h>"; echo "const char $$sym[] = {"; \
		od -An -v -tx1 $< | sed 's/ *\([0-9a-f][0-9a-f]\)/0x\1,/g'; echo "0x00};"; \
		echo "const size_t $${sym}_len = sizeof $$sym - 1;"; } > $@

$(BUILD)/embed/%.o: $(BUILD)/embed/%.c
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	$(say) AR $@
	$(Q)rm -f $@ && ar rcs $@ $^

$(BIN): $(TUI_OBJ) $(LIB)
	$(say) LINK $@
	$(Q)$(CC) $(LDFLAGS) $(TUI_OBJ) $(LIB) $(LDLIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(LIB)
	$(say) LINK $@
	$(Q)$(CC) $(LDFLAGS) $< $(LIB) $(LDLIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/tests/tools/%.o $(LIB)
	$(say) LINK $@
	$(Q)$(CC) $(LDFLAGS) $< $(LIB) $(LDLIBS) -o $@

# tests: unit binaries, tools (fixture generator) and the CLI scripts, one summary line
test: all $(TEST_BIN) $(TOOL_BIN)
	$(Q)BUILD=$(BUILD) bash tests/run.sh

bench: all $(TOOL_BIN)
	$(Q)BUILD=$(BUILD) bash tests/bench.sh

# fuzz targets: clang's libFuzzer over the library sources, built apart from the main build
FUZZ_CFLAGS = -std=gnu11 -g -O1 -I. $(PC_CFLAGS) -fsanitize=fuzzer,address,undefined
# core/jobs' pipeline and worker sit on the store (SQLite + embedded data): not parsers, left out
FUZZ_LIB_SRC := $(filter-out core/jobs/pipeline.c core/jobs/worker.c,$(filter core/%,$(LIB_SRC)))
$(BUILD)/fuzz/%: tests/fuzz/%.c $(FUZZ_LIB_SRC)
	$(say) FUZZ $@
	@mkdir -p $(@D)
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) $^ $(PC_LIBS) -lm -lpthread -o $@

# the studio's theme parser reads user files too; it lives in tui/ with the embedded themes
$(BUILD)/fuzz/fuzz_theme: tests/fuzz/fuzz_theme.c tui/theme.c core/errors.c $(EMBED_OBJ)
	$(say) FUZZ $@
	@mkdir -p $(@D)
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) $^ $(PC_LIBS) -o $@

fuzz: $(FUZZ_BIN)
	$(Q)for f in $(FUZZ_BIN); do \
		name=$$(basename $$f); corpus=$(BUILD)/fuzz/corpus-$$name; mkdir -p $$corpus; \
		seeds=tests/fuzz/seeds/$${name#fuzz_}; \
		echo "fuzz: $$name for $(FUZZ_SECONDS) s"; \
		$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 $$corpus $$( [ -d $$seeds ] && echo $$seeds ) 2>&1 | tail -n 3 || exit 1; \
	done

deps:
	$(Q)bash examples/scripts/install-deps.sh $(DEB_PACKAGES)

models: all
	$(Q)BUILD=$(BUILD) bash examples/scripts/fetch-models.sh

install: all
	$(say) INSTALL "$(DESTDIR)$(PREFIX) (bin, man, share/optstudio)"
	$(Q)install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 \
		$(DESTDIR)$(DATADIR)/themes $(DESTDIR)$(DATADIR)/examples
	$(Q)install -m 755 $(BIN) $(DESTDIR)$(BINDIR)/optstudio
	$(Q)for m in $(wildcard man/*.1); do install -m 644 $$m $(DESTDIR)$(MANDIR)/man1/; done
	$(Q)for m in $(wildcard man/*.5); do install -m 644 $$m $(DESTDIR)$(MANDIR)/man5/; done
	$(Q)for t in $(wildcard themes/*.json); do install -m 644 $$t $(DESTDIR)$(DATADIR)/themes/; done
	$(Q)cp -R examples/. $(DESTDIR)$(DATADIR)/examples/

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/optstudio $(addprefix $(DESTDIR)$(MANDIR)/man1/,$(notdir $(wildcard man/*.1))) \
		$(addprefix $(DESTDIR)$(MANDIR)/man5/,$(notdir $(wildcard man/*.5)))
	rm -rf $(DESTDIR)$(DATADIR)

clean:
	rm -rf $(BUILD)

.SECONDARY:
-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
