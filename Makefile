# twirl — the two commands a newcomer needs are `make run` and `make test`.
# Every target first checks (and, as root, installs) its Debian packages.

JOBS      ?= $(shell nproc)
PREFIX    ?= /usr/local
CMAKE_GEN := -G Ninja
# CI builds with warnings as errors.
WERROR    ?= $(if $(CI),ON,OFF)
CTEST     := ctest --output-on-failure -j $(JOBS)
FUZZ_SECONDS ?= 60
RUN_ADDR  ?= 127.0.0.1
RUN_PORT  ?= 8080

.PHONY: all deps build run test asan tsan valgrind bench fuzz install clean

all: build

deps:
	@tools/deps.sh build

build: deps
	cmake -S . -B build $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTWIRL_WERROR=$(WERROR) >/dev/null
	cmake --build build -j $(JOBS)

run: build
	@tools/run-demo.sh build $(RUN_ADDR) $(RUN_PORT)

test: build
	cd build && $(CTEST)

asan: deps
	cmake -S . -B build-asan $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Debug -DTWIRL_WERROR=$(WERROR) \
	  -DTWIRL_SANITIZE=address,undefined
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $(CTEST)

tsan: deps
	cmake -S . -B build-tsan $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Debug -DTWIRL_WERROR=$(WERROR) \
	  -DTWIRL_SANITIZE=thread
	cmake --build build-tsan -j $(JOBS)
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 $(CTEST)

valgrind: deps
	cmake -S . -B build-valgrind $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Debug -DTWIRL_WERROR=$(WERROR) \
	  "-DTWIRL_TEST_WRAPPER=valgrind;--error-exitcode=99;--leak-check=full;--errors-for-leak-kinds=definite,indirect,possible;--track-fds=no;--quiet"
	cmake --build build-valgrind -j $(JOBS)
	cd build-valgrind && $(CTEST) --timeout 900

bench:
	@tools/deps.sh bench
	cmake -S . -B build-bench $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Release -DTWIRL_TESTS=OFF
	cmake --build build-bench -j $(JOBS)
	bench/run.sh build-bench

fuzz:
	@tools/deps.sh fuzz
	CC=clang cmake -S . -B build-fuzz $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DTWIRL_FUZZ=ON -DTWIRL_TESTS=OFF
	cmake --build build-fuzz -j $(JOBS)
	tools/run-fuzz.sh build-fuzz $(FUZZ_SECONDS)

install: build
	cmake --install build --prefix $(PREFIX)

clean:
	rm -rf build build-asan build-tsan build-valgrind build-bench build-fuzz
