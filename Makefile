# understudy — active/passive HA manager.
#   make          build build/understudy (release, -O2)
#   make test     layer check, unit tests, decision scenarios, fuzz smoke and integration tests (ASan + UBSan)
#   make demo     a 3-node local cluster with a sample service
#   make bench    failover (loopback), VIP failover vs keepalived, proxy vs HAProxy (root for the last two)
#   make bench-scale  25 agents, 200 services (10 -> 1000): failover vs 3 nodes, CPU, RSS (SCALE_ARGS=...)
#   make bench-redis  the redis recipe vs Redis Sentinel: kill -9 / link down of the primary (REDIS_BENCH_ARGS=...)
#   make bench-pg     the postgresql recipe vs Patroni on etcd: kill -9 / link down of the primary (PG_BENCH_ARGS=...)
#   make fuzz     every libFuzzer target for FUZZ_SECONDS (default 120) each; fuzz-smoke: briefly
#   make chaos    random faults over agents in network namespaces, history checked (root; FAULTS=200 SEED=S
#                 NODES=3|5 CHAOS_BIN=...); chaos-smoke: 20 faults, part of `make test` (docs/testing.md)
#   make scale-smoke  20 agents, 1,000 services (release build), part of `make test`
# Every entry point first runs scripts/setup.sh, which installs what is missing (quiet when all is there).

CC      ?= gcc
PKGS    := raft libuv jansson libmicrohttpd libmnl libsodium
# libcurl: its header only; the CLI opens the library when it starts (src/cli/http.c), so that
# agents do not carry it and its dependencies.
HDR_PKGS := libcurl
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
# Recursive variables: pkg-config runs after setup.sh has installed the packages.
CFLAGS_COMMON = -std=c17 -D_GNU_SOURCE $(WARN) -g -MMD -MP -Isrc $(shell pkg-config --cflags $(PKGS) $(HDR_PKGS))
LIBS     = $(shell pkg-config --libs $(PKGS)) -lm
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

SRCS    := $(wildcard src/*/*.c)
LIBSRCS := $(filter-out src/cli/main.c,$(SRCS))
UNIT    := $(wildcard tests/unit/test_*.c)

REL_OBJS  := $(SRCS:src/%.c=build/rel/%.o)
SAN_OBJS  := $(SRCS:src/%.c=build/san/%.o)
SAN_LIB   := $(LIBSRCS:src/%.c=build/san/%.o)
UNIT_BINS := $(UNIT:tests/unit/%.c=build/san/tests/%)
MANS      := $(patsubst docs/man/%.scd,build/man/%,$(wildcard docs/man/*.scd))

.PHONY: all setup test unit integration demo bench format check-format clean man fuzz fuzz-smoke fuzz-build check-layers \
	chaos chaos-smoke chaos-checker soak bench-scale scale-smoke bench-redis bench-pg
all: build/understudy man

man: $(MANS)

build/man/%: docs/man/%.scd | build/.deps-ok
	@mkdir -p $(dir $@)
	scdoc < $< > $@

setup build/.deps-ok: scripts/setup.sh scripts/setup-databases.sh
	@sh scripts/setup.sh
	@sh scripts/setup-databases.sh
	@pkg-config --atleast-version=0.22 raft || { echo "libraft >= 0.22 is required (found $$(pkg-config --modversion raft)); Debian 12's 0.15 has Raft safety bugs. Run scripts/setup.sh" >&2; exit 1; }
	@mkdir -p build && touch build/.deps-ok

build/understudy: $(REL_OBJS)
	$(CC) -o $@ $^ $(LIBS)

build/rel/%.o: src/%.c | build/.deps-ok
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) -O2 -c -o $@ $<

build/san/understudy: $(SAN_OBJS)
	$(CC) $(SAN) -o $@ $^ $(LIBS)

build/san/%.o: src/%.c | build/.deps-ok
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) -O1 $(SAN) -c -o $@ $<

# Shared unit-test helpers (tests/unit/helpers.h), linked into every unit test.
UT_HELPERS := build/san/tests/helpers.o

$(UT_HELPERS): tests/unit/helpers.c | build/.deps-ok
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) -O1 $(SAN) -c -o $@ $<

build/san/tests/%: tests/unit/%.c $(UT_HELPERS) $(SAN_LIB) | build/.deps-ok
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) -O1 $(SAN) -o $@ $< $(UT_HELPERS) $(SAN_LIB) $(LIBS) $(shell pkg-config --libs cmocka)

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

integration: build/san/understudy
	UNDERSTUDY_BIN=$(CURDIR)/build/san/understudy /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration

test: setup check-layers unit fuzz-smoke integration chaos-smoke scale-smoke

# 20 agents and 1,000 services (tests/integration/test_scale.py) with the release build: under ASan
# 20 agents need more than this 2-core machine has (the integration run skips it).
scale-smoke: build/understudy
	US_SCALE_TEST=1 UNDERSTUDY_BIN=$(CURDIR)/build/understudy /usr/bin/python3 -m pytest -q -s \
		-p no:cacheprovider tests/integration/test_scale.py

# ---- chaos (tests/chaos, docs/testing.md): seeded random faults, a pure history checker ----
FAULTS       ?= 200
NODES        ?= 3
SEED         ?=
CHAOS_BIN    ?= build/understudy
# chaos-smoke inside `make test` fails on safety violations; liveness ones are printed but do not
# fail it until issue 11's liveness defects are closed (CHAOS_GATE=all judges both, as `make chaos`).
CHAOS_GATE   ?= safety
CHAOS_JSON   ?=
CHAOS_ARGS    = --nodes $(NODES) $(if $(SEED),--seed $(SEED)) $(if $(CHAOS_JSON),--json $(CHAOS_JSON))

chaos-checker:
	/usr/bin/python3 -m pytest -q -p no:cacheprovider tests/chaos/test_checker.py

build/chaos-service: tests/chaos/chaos_service.c
	@mkdir -p build
	$(CC) -std=c17 -D_GNU_SOURCE $(WARN) -O2 -pthread -o $@ $<

chaos: $(CHAOS_BIN) build/chaos-service chaos-checker
	/usr/bin/python3 tests/chaos/nemesis.py --faults $(FAULTS) --bin $(CHAOS_BIN) $(CHAOS_ARGS)

# Bounded: 20 faults, the fault phase cut at 4 minutes. The release binary: liveness is judged in
# milliseconds, and ASan's slowdown on a loaded 2-core machine costs leases that no fault took.
chaos-smoke: $(CHAOS_BIN) build/chaos-service chaos-checker
	/usr/bin/python3 tests/chaos/nemesis.py --faults 20 --max-seconds 240 --gate $(CHAOS_GATE) --bin $(CHAOS_BIN) $(CHAOS_ARGS)

# Soak (bench/soak.py): MINUTES per profile (default 30), both cores saturated, 5 % loss between
# the nodes, no fault: zero failovers and zero lease losses.
MINUTES ?= 30
PROFILES ?= default
soak: build/understudy
	@sh scripts/setup-bench.sh
	sh bench/soak --minutes $(MINUTES) --profiles $(PROFILES)

# Scale (bench/scale.py, issue 11): 25 agents on loopback, 200 services (growing 10 -> 1000),
# failover vs 3 nodes in the same run, the leader-and-active kill, idle CPU, RSS, Raft size, API.
SCALE_ARGS ?=
bench-scale: build/understudy
	sh bench/scale $(SCALE_ARGS)

# Redis (bench/redis-failover.py): the recipe of examples/redis under understudy vs Redis Sentinel
# (3 Sentinels, quorum 2, down-after 1 s), same redis-servers, same run: kill -9 of the primary's
# redis-server and link down of its node; fault -> first acknowledged write, acked writes lost.
REDIS_BENCH_ARGS ?=
bench-redis: build/understudy
	@sh scripts/setup-bench.sh
	@sh scripts/setup-databases.sh
	sh bench/redis-failover $(REDIS_BENCH_ARGS)

# PostgreSQL (bench/pg-failover.py): the recipe of examples/postgresql under understudy vs Patroni 3.0
# on etcd 3.4 behind HAProxy (profiles default and tuned), same PostgreSQL 15 settings, same run:
# kill -9 of the primary's postmaster and link down of its node; fault -> first acknowledged write,
# acked writes lost. Debian's packages, their daemons not started (the bench runs its own).
PG_BENCH_ARGS ?=
bench-pg: build/understudy
	@sh scripts/setup-databases.sh
	@sh scripts/install-missing.sh bench-postgresql patroni etcd-server etcd-client haproxy
	sh bench/pg-failover $(PG_BENCH_ARGS)

demo: build/understudy
	@sh demo/run.sh

bench: build/understudy
	@sh scripts/setup-bench.sh
	@rc=0; sh bench/failover || rc=1; sh bench/failover-netns || rc=1; sh bench/proxy || rc=1; sh bench/service-crash || rc=1; sh bench/commit || rc=1; exit $$rc

format:
	clang-format -i src/*/*.c src/*/*.h tests/unit/*.c tests/unit/*.h tests/fuzz/*.c bench/*.c

# Includes in src/ go down the layers of docs/architecture.md.
check-layers:
	@/usr/bin/python3 scripts/check-layers.py

check-format:
	clang-format --dry-run --Werror src/*/*.c src/*/*.h tests/unit/*.c tests/unit/*.h tests/fuzz/*.c bench/*.c

clean:
	rm -rf build

# ---- fuzzing (tests/fuzz/README.md): clang's libFuzzer with ASan + UBSan ----
FUZZ_CC      ?= $(shell command -v clang-14 || command -v clang || echo clang)
FUZZ_SAN     := -fno-omit-frame-pointer -fno-sanitize-recover=undefined
FUZZ_TARGETS := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_OBJS    := $(LIBSRCS:src/%.c=build/fuzz/%.o)
FUZZ_BINS    := $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)
FUZZ_SECONDS ?= 120
# Harnesses that #include a source file (to reach its static parsers) do not link its object.
FUZZ_EXCLUDE_api := build/fuzz/net/api.o build/fuzz/agent/agent_api.o

build/fuzz/%.o: src/%.c | build/.deps-ok
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CFLAGS_COMMON) -O1 -fsanitize=fuzzer-no-link,address,undefined $(FUZZ_SAN) -c -o $@ $<

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(FUZZ_OBJS) | build/.deps-ok
	$(FUZZ_CC) $(CFLAGS_COMMON) -O1 -fsanitize=fuzzer,address,undefined $(FUZZ_SAN) -Itests/fuzz \
		-o $@ $< $(filter-out $(FUZZ_EXCLUDE_$*),$(FUZZ_OBJS)) $(LIBS)

# Kept between runs (make would delete them as intermediates of the pattern rules).
.SECONDARY: $(FUZZ_OBJS)

# Building every harness is the first check of fuzz-smoke (no cmocka involved).
fuzz-build: $(FUZZ_BINS)

fuzz-smoke: fuzz-build
	@sh tests/fuzz/run.sh smoke $(FUZZ_TARGETS)

fuzz: fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) sh tests/fuzz/run.sh long $(FUZZ_TARGETS)

# The dashboard page is embedded into the binary (src/net/dashboard.c, .incbin).
build/rel/net/dashboard.o build/san/net/dashboard.o build/fuzz/net/dashboard.o: $(wildcard web/*)

-include $(REL_OBJS:.o=.d) $(SAN_OBJS:.o=.d) $(UT_HELPERS:.o=.d) $(FUZZ_OBJS:.o=.d) $(FUZZ_BINS:=.d)
