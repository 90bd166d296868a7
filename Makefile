# cowfork build. Plain make: `make`, `make check`, `make SAN=1 check`, `make fuzz`.
# Every lib/*.c goes into libcowfork.a, every cli/*.c into the cowfork binary,
# every tests/unit/*.c becomes one TAP test program, every bench/*.c one benchmark.

CC      ?= cc
SAN     ?=
BUILD   ?= $(if $(SAN),build-san,build)
LIBS    := -lroaring -lxxhash -luuid -lext2fs -lcom_err -lmicrohttpd -ljansson -larchive -lseccomp
CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
           -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -Iinclude -Ilib -I. -pthread -MMD -MP
LDFLAGS += -pthread
ifneq ($(SAN),)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

LIB_SRC   := $(wildcard lib/*.c)
CLI_SRC   := $(wildcard cli/*.c)
# Front ends other than the CLI's own files (NBD server, VMM, shim, daemon):
# linked into the cowfork binary, the tests and the benchmarks.
FRONT_SRC := $(wildcard nbd/*.c vmm/*.c shim/*.c daemon/*.c)
UNIT_SRC  := $(wildcard tests/unit/*.c)
BENCH_SRC := $(wildcard bench/*.c)

LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
FRONT_OBJ := $(FRONT_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ   := $(CLI_SRC:%.c=$(BUILD)/%.o)
UNIT_BIN  := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

all: $(BUILD)/cowfork $(UNIT_BIN) $(BENCH_BIN)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

# The Python driver goes into every root (lib/root_driver.c .incbin's it).
$(BUILD)/lib/root_driver.o: shim/py/driver.py

$(BUILD)/libcowfork.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libfront.a: $(FRONT_OBJ)
	@rm -f $@
	ar rcs $@ $^

LINK_LIBS := $(BUILD)/libfront.a $(BUILD)/libcowfork.a

$(BUILD)/cowfork: $(CLI_OBJ) $(LINK_LIBS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(LINK_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(LINK_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# Every test: the unit programs and tests/*.sh, through one runner.
check: all
	BUILD=$(BUILD) tests/run

# libFuzzer targets (clang). Each tests/fuzz/NAME.c -> build-fuzz/NAME, linked
# with one archive of the library and the front ends built once for them all
# (instrumented for coverage: fuzzer-no-link).
FUZZ_SRC := $(wildcard tests/fuzz/*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=build-fuzz/%)
FUZZ_OBJ := $(LIB_SRC:%.c=build-fuzz/obj/%.o) $(FRONT_SRC:%.c=build-fuzz/obj/%.o)
FUZZ_CFLAGS := -std=gnu11 -g -O1 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -Iinclude -Ilib -I. -pthread -MMD -MP
fuzz: $(FUZZ_BIN)
build-fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined -c -o $@ $<
build-fuzz/obj/lib/root_driver.o: shim/py/driver.py
build-fuzz/libfuzz.a: $(FUZZ_OBJ)
	@rm -f $@
	ar rcs $@ $^
build-fuzz/%: tests/fuzz/%.c build-fuzz/libfuzz.a
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $< build-fuzz/libfuzz.a $(LIBS)

# docs/syscalls.md is generated from the shim's system-call table
# (shim/systab.c); tests/syscalls-doc.sh fails when it is stale.
docs: $(BUILD)/cowfork
	$(BUILD)/cowfork syscalls --markdown > docs/syscalls.md

bench: all
	BUILD=$(BUILD) bench/run

clean:
	rm -rf build build-san build-fuzz

.PHONY: all check fuzz bench clean docs
-include $(LIB_OBJ:.o=.d) $(FRONT_OBJ:.o=.d) $(CLI_OBJ:.o=.d) \
  $(UNIT_SRC:%.c=$(BUILD)/%.d) $(BENCH_SRC:%.c=$(BUILD)/%.d) $(FUZZ_OBJ:.o=.d)
