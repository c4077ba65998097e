# connroute — see README.md. `make`, `make test`, `make demo`, `make demo-php`, `make install`.
VERSION   := 0.1.0
PREFIX    ?= /usr/local
LIBDIR    ?= $(PREFIX)/lib
BINDIR    ?= $(PREFIX)/bin
INCDIR    ?= $(PREFIX)/include
PCDIR     ?= $(LIBDIR)/pkgconfig
DATADIR   ?= $(PREFIX)/share
MANDIR    ?= $(DATADIR)/man
DOCDIR    ?= $(DATADIR)/doc/connroute
BASHCOMPDIR ?= $(DATADIR)/bash-completion/completions
SYSCONFDIR ?= /etc
STRIP     ?= strip
DESTDIR   ?=

CC        ?= cc
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)
SAN       ?=
B         ?= build$(if $(SAN),-$(SAN))

WARN      := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
BASEFLAGS := -std=c11 -D_GNU_SOURCE -g -O2 -fPIC $(WARN) -Ilib -Iinclude \
             -DCONNROUTE_VERSION='"$(VERSION)"' -DCONNROUTE_LIBDIR='"$(LIBDIR)"' \
             -DCONNROUTE_MULTIARCH='"$(MULTIARCH)"' -DCONNROUTE_SYSCONF='"$(SYSCONFDIR)/connroute.conf"'
ifeq ($(SAN),address)
  SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else ifeq ($(SAN),undefined)
  SANFLAGS := -fsanitize=undefined -fno-sanitize-recover=undefined
else ifeq ($(SAN),thread)
  SANFLAGS := -fsanitize=thread
endif
# Engine and shim: hidden by default, static TLS (the shim is preloaded, never dlopen'ed).
LIBFLAGS  := $(BASEFLAGS) -fvisibility=hidden -ftls-model=initial-exec $(CFLAGS)
TESTFLAGS := $(BASEFLAGS) $(SANFLAGS) $(CFLAGS)
CURL_CFLAGS := $(shell pkg-config --cflags libcurl 2>/dev/null)

V ?= 0
ifeq ($(V),0)
  Q := @
  say = @echo "  $(1)	$(2)"
else
  Q :=
  say = @true
endif

LIB_SRC   := $(wildcard lib/*.c lib/curl/*.c)
SHIM_SRC  := $(wildcard shim/*.c)
CLI_SRC   := $(wildcard cli/*.c)
UNIT_SRC  := $(wildcard tests/unit/*.c)
INTEG_SRC := $(wildcard tests/integration/*.c)
PROG_SRC  := $(wildcard tests/progs/*.c)
UP_SRC    := $(wildcard tests/upstream/*.c)

LIB_OBJ   := $(LIB_SRC:%.c=$(B)/obj/%.o)
LIBT_OBJ  := $(LIB_SRC:%.c=$(B)/tobj/%.o)
SHIM_OBJ  := $(SHIM_SRC:%.c=$(B)/obj/%.o)
PROGS     := $(PROG_SRC:tests/progs/%.c=$(B)/progs/%) $(B)/progs/jmpexc
MAN_SRC   := $(wildcard docs/man/*.scd)
MAN_PAGES := $(patsubst docs/man/%.scd,$(B)/man/%,$(MAN_SRC))

LIB_HDR   := $(wildcard lib/*.h lib/curl/*.h)
# ar keeps one member per file name: lib/ and lib/curl/ must not share one.
ifneq ($(words $(notdir $(LIB_SRC))),$(words $(sort $(notdir $(LIB_SRC)))))
  $(error a file name is in both lib/ and lib/curl/: $(sort $(notdir $(LIB_SRC))))
endif
INIH_A    := $(firstword $(wildcard /usr/lib/*/libinih.a /usr/lib/libinih.a))

.PHONY: all deps test unit integration demo demo-php install clean check-deps tsan bench
all: $(B)/libconnroute.so $(B)/connroute

# --- dependencies: install what is missing (no-op when all is there) -------
deps:
	@bash scripts/deps.sh

# --- the engine: a static archive for the shim, the CLI and the unit tests ---
$(B)/obj/%.o: %.c $(LIB_HDR) $(wildcard lib/*.def) $(wildcard include/*.h shim/*.h)
	@mkdir -p $(dir $@)
	$(call say,CC,$<)
	$(Q)$(CC) $(LIBFLAGS) $(CURL_CFLAGS) -c $< -o $@

$(B)/tobj/%.o: %.c $(LIB_HDR) $(wildcard lib/*.def) $(wildcard include/*.h)
	@mkdir -p $(dir $@)
	$(call say,CC,$<)
	$(Q)$(CC) $(TESTFLAGS) $(CURL_CFLAGS) -c $< -o $@

$(B)/libcr.a: $(LIB_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(B)/libcr-test.a: $(LIBT_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

# --- the shim: only libc NEEDED, only hooks and connroute_* exported --------
# The version script: every name in lib/hooks.def, connroute_*, nothing else.
$(B)/connroute.map: lib/hooks.def
	@mkdir -p $(dir $@)
	$(call say,GEN,$@)
	$(Q){ echo '{ global:'; \
	  $(CC) -E -P -x c -D'CR_LIBC(name,ret,params)=name;' -D'CR_CURL(name,ret,params)=name;' $<; \
	  echo 'connroute_*; local: *; };'; } > $@.tmp && mv $@.tmp $@

$(B)/libconnroute.so: $(SHIM_OBJ) $(B)/libcr.a $(B)/connroute.map
	$(call say,LD,$@)
	$(Q)$(CC) -shared -o $@ $(SHIM_OBJ) $(B)/libcr.a $(INIH_A) \
	  -Wl,--version-script=$(B)/connroute.map -Wl,--exclude-libs,ALL \
	  -Wl,-z,defs -Wl,-z,relro,-z,now -Wl,--as-needed -Wl,-soname,libconnroute.so $(LDFLAGS)

$(B)/connroute: $(CLI_SRC) $(B)/libcr.a
	$(call say,LD,$@)
	$(Q)$(CC) $(LIBFLAGS) -fPIE -pie -o $@ $(CLI_SRC) $(B)/libcr.a $(INIH_A) -lpthread $(LDFLAGS)

# --- tests ------------------------------------------------------------------
$(B)/progs/%: tests/progs/%.c include/connroute.h $(wildcard tests/progs/*.h)
	@mkdir -p $(dir $@)
	$(call say,CC,$@)
	$(Q)$(CC) $(BASEFLAGS) -o $@ $< -lcurl -lpthread

# jmpexc is C++: its exceptions are thrown through libcurl and the hooks.
$(B)/progs/jmpexc: tests/progs/jmpexc.cc
	@mkdir -p $(dir $@)
	$(call say,CXX,$@)
	$(Q)$(CXX) -std=c++11 -g -O2 -Wall -Wextra -Werror -o $@ $< -lcurl -lpthread

# earlyprog needs libearly.so: a NEEDED library of the program is initialised
# before a preloaded one, so its constructor runs before the shim's.
$(B)/progs/libearly.so: tests/progs/early/libearly.c
	@mkdir -p $(dir $@)
	$(call say,CC,$@)
	$(Q)$(CC) $(BASEFLAGS) -shared -Wl,-soname,libearly.so -o $@ $<

$(B)/progs/earlyprog: tests/progs/earlyprog.c $(B)/progs/libearly.so
	@mkdir -p $(dir $@)
	$(call say,CC,$@)
	$(Q)$(CC) $(BASEFLAGS) -o $@ $< $(B)/progs/libearly.so -Wl,-rpath,'$$ORIGIN'

# deephost loads a plugin by bare name through its RUNPATH ($ORIGIN/plug), with
# RTLD_DEEPBIND as PHP loads its extensions (docs/INTERNALS.md, "RTLD_DEEPBIND hosts").
# Two builds of the plugin: full RELRO (-z now) and lazy PLT binding.
$(B)/progs/plug/libcrplug.so: tests/progs/plug/crplug.c
	@mkdir -p $(dir $@)
	$(call say,CC,$@)
	$(Q)$(CC) $(BASEFLAGS) -shared -Wl,-soname,libcrplug.so -Wl,-z,relro,-z,now -o $@ $< -lpthread

$(B)/progs/plug/libcrplug_lazy.so: tests/progs/plug/crplug.c
	@mkdir -p $(dir $@)
	$(call say,CC,$@)
	$(Q)$(CC) $(BASEFLAGS) -DPLUG_NAME='"crplug_lazy"' -shared -Wl,-soname,libcrplug_lazy.so \
	  -Wl,-z,lazy -o $@ $< -lpthread

# libcrpre.so: a NEEDED library whose constructor loads the plugin before the shim's runs.
$(B)/progs/plug/libcrpre.so: tests/progs/plug/crpre.c
	@mkdir -p $(dir $@)
	$(call say,CC,$@)
	$(Q)$(CC) $(BASEFLAGS) -shared -Wl,-soname,libcrpre.so -Wl,-rpath,'$$ORIGIN' -o $@ $<

$(B)/progs/deephost: tests/progs/deephost.c $(B)/progs/plug/libcrplug.so $(B)/progs/plug/libcrplug_lazy.so \
		     $(B)/progs/plug/libcrpre.so
	@mkdir -p $(dir $@)
	$(call say,CC,$@)
	$(Q)$(CC) $(BASEFLAGS) -o $@ $< -Wl,-rpath,'$$ORIGIN/plug' -L$(B)/progs/plug -lcrpre

# plughost (issue 11, item 5) links no libcurl: it dlopens two plugins built from one source,
# one linked with libcurl.so.4 (OpenSSL), one with libcurl-gnutls.so.4 (Debian's
# libcurl3-gnutls ships no .so link: -l: names the file itself).
$(B)/progs/libplug_openssl.so: tests/progs/plugins/plug.c
	@mkdir -p $(dir $@)
	$(call say,CC,$@)
	$(Q)$(CC) $(BASEFLAGS) -shared -fvisibility=hidden -o $@ $< -lcurl

$(B)/progs/libplug_gnutls.so: tests/progs/plugins/plug.c
	@mkdir -p $(dir $@)
	$(call say,CC,$@)
	$(Q)$(CC) $(BASEFLAGS) -shared -fvisibility=hidden -o $@ $< -l:libcurl-gnutls.so.4

# libplug_multi.so: multi transfers from a plugin loaded and unloaded twice by plughost
# (tests/integration/test_multi_fork.c).
$(B)/progs/libplug_multi.so: tests/progs/plugins/mplug.c
	@mkdir -p $(dir $@)
	$(call say,CC,$@)
	$(Q)$(CC) $(BASEFLAGS) -shared -fvisibility=hidden -o $@ $< -lcurl

$(B)/progs/plughost: tests/progs/plughost.c $(B)/progs/libplug_openssl.so $(B)/progs/libplug_gnutls.so \
		     $(B)/progs/libplug_multi.so
	@mkdir -p $(dir $@)
	$(call say,CC,$@)
	$(Q)$(CC) $(BASEFLAGS) -o $@ $< -ldl

$(B)/upstream: $(UP_SRC) $(wildcard tests/upstream/*.h)
	$(call say,CC,$@)
	$(Q)$(CC) $(BASEFLAGS) $(SANFLAGS) -o $@ $(UP_SRC) -lssl -lcrypto -lpthread

$(B)/unit_tests: $(UNIT_SRC) $(B)/libcr-test.a
	$(call say,LD,$@)
	$(Q)$(CC) $(TESTFLAGS) $(CURL_CFLAGS) -o $@ $(UNIT_SRC) $(B)/libcr-test.a $(INIH_A) -lcriterion -lpthread -lcurl

$(B)/integration_tests: $(INTEG_SRC) $(wildcard tests/integration/*.h)
	$(call say,LD,$@)
	$(Q)$(CC) $(TESTFLAGS) -Itests/integration -o $@ $(INTEG_SRC) -lcriterion -lpthread

# The system config file of a test build of the shim is in the build tree,
# never /etc (tests/integration/test_cli.c, cli_sysconf): only the engine is
# compiled again; its object comes before the archive, so the archive's is
# not used.
$(B)/sysconf/engine.o: lib/engine.c $(LIB_HDR) $(wildcard lib/*.def) $(wildcard include/*.h)
	@mkdir -p $(dir $@)
	$(call say,CC,$@)
	$(Q)$(CC) $(LIBFLAGS) $(CURL_CFLAGS) -UCONNROUTE_SYSCONF \
	  -DCONNROUTE_SYSCONF='"$(abspath $(B))/sysconf/connroute.conf"' -c $< -o $@

$(B)/sysconf/libconnroute.so: $(SHIM_OBJ) $(B)/sysconf/engine.o $(B)/libcr.a $(B)/connroute.map
	$(call say,LD,$@)
	$(Q)$(CC) -shared -o $@ $(SHIM_OBJ) $(B)/sysconf/engine.o $(B)/libcr.a $(INIH_A) \
	  -Wl,--version-script=$(B)/connroute.map -Wl,--exclude-libs,ALL \
	  -Wl,-z,defs -Wl,-z,relro,-z,now -Wl,--as-needed -Wl,-soname,libconnroute.so $(LDFLAGS)

TEST_BINS := $(B)/libconnroute.so $(B)/connroute $(B)/upstream $(PROGS) \
             $(B)/unit_tests $(B)/integration_tests $(B)/sysconf/libconnroute.so $(MAN_PAGES)

check-deps:
	@bash scripts/deps.sh

unit: check-deps $(B)/unit_tests
	$(B)/unit_tests --jobs 2

integration: check-deps $(TEST_BINS)
	CR_BUILD=$(abspath $(B)) $(B)/integration_tests --jobs 2

test: check-deps
	@$(MAKE) --no-print-directory $(TEST_BINS)
	bash scripts/run-tests.sh $(B)

demo: check-deps
	@$(MAKE) --no-print-directory all $(B)/upstream $(PROGS)
	bash scripts/demo.sh $(B)

demo-php: check-deps
	@$(MAKE) --no-print-directory all $(B)/upstream
	bash scripts/demo-php.sh $(B)

# --- benchmarks: bench/run.sh runs them all and writes bench/RESULTS.md ------
$(B)/bench/%: bench/%.c
	@mkdir -p $(dir $@)
	$(call say,CC,$@)
	$(Q)$(CC) $(BASEFLAGS) -o $@ $< -ldl

# the resilience client (bench/resilience.sh) is a libcurl program
$(B)/bench/resilience: bench/resilience.c
	@mkdir -p $(dir $@)
	$(call say,CC,$@)
	$(Q)$(CC) $(BASEFLAGS) $(CURL_CFLAGS) -o $@ $< -lcurl -lpthread

bench: check-deps
	@$(MAKE) --no-print-directory all $(B)/upstream $(PROGS) $(B)/bench/overhead \
		$(B)/bench/resilience $(B)/bench/conncost
	bash bench/run.sh $(B)

# --- man pages: scdoc sources in docs/man; connroute.conf(5) is generated from
# docs/config.md (scripts/man-conf.py), and `make test` checks it is current.
$(B)/man/%: docs/man/%.scd
	@mkdir -p $(dir $@)
	$(call say,SCDOC,$@)
	$(Q)scdoc < $< > $@.tmp && mv $@.tmp $@

.PHONY: man man-sources uninstall deb deb-deps deb-test
man: $(MAN_PAGES)

man-sources:
	python3 scripts/man-conf.py docs/config.md > docs/man/connroute.conf.5.scd

# --- install: PREFIX and DESTDIR honoured; binaries stripped on the way (the
# debug build stays in $(B)); ldconfig when installing into the running system.
DOCS      := README.md docs/config.md docs/metrics.md docs/rollout.md docs/INTERNALS.md
install: all man
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(INCDIR) $(DESTDIR)$(PCDIR) \
	  $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(BASHCOMPDIR) \
	  $(foreach s,1 3 5 7,$(DESTDIR)$(MANDIR)/man$(s))
	install -m 0644 $(B)/libconnroute.so $(DESTDIR)$(LIBDIR)/libconnroute.so
	install -m 0755 $(B)/connroute $(DESTDIR)$(BINDIR)/connroute
	$(STRIP) --strip-unneeded $(DESTDIR)$(LIBDIR)/libconnroute.so
	$(STRIP) $(DESTDIR)$(BINDIR)/connroute
	install -m 0644 include/connroute.h $(DESTDIR)$(INCDIR)/connroute.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCDIR@|$(INCDIR)|' \
	    -e 's|@VERSION@|$(VERSION)|' -e 's|@SYSCONF@|$(SYSCONFDIR)/connroute.conf|' \
	    connroute.pc.in > $(DESTDIR)$(PCDIR)/connroute.pc
	$(foreach p,$(MAN_PAGES),install -m 0644 $(p) $(DESTDIR)$(MANDIR)/man$(subst .,,$(suffix $(p)))/$(notdir $(p)) &&) true
	install -m 0644 $(DOCS) $(DESTDIR)$(DOCDIR)/
	install -m 0644 examples/*.conf $(DESTDIR)$(DOCDIR)/examples/
	install -m 0644 completions/connroute.bash $(DESTDIR)$(BASHCOMPDIR)/connroute
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then \
	  echo ldconfig; ldconfig; fi

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libconnroute.so $(DESTDIR)$(BINDIR)/connroute \
	  $(DESTDIR)$(INCDIR)/connroute.h $(DESTDIR)$(PCDIR)/connroute.pc \
	  $(DESTDIR)$(BASHCOMPDIR)/connroute \
	  $(foreach p,$(MAN_PAGES),$(DESTDIR)$(MANDIR)/man$(subst .,,$(suffix $(p)))/$(notdir $(p)))
	rm -rf $(DESTDIR)$(DOCDIR)
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then \
	  echo ldconfig; ldconfig; fi

# --- Debian package: dpkg-buildpackage -b -us -uc on a copy of the tree (its
# build products stay out of the work tree); the .deb lands in $(B)/.
deb-deps:
	@bash scripts/deps.sh --deb

deb: deb-deps
	bash scripts/deb.sh build $(B)

# Installs the .deb, runs `connroute run -- curl` against a local server with a
# lane, checks man pages, removes and purges it (root; changes the system).
deb-test: deb
	bash scripts/deb.sh test $(B)

clean:
	rm -rf build build-*

# --- style: .clang-format is the project's C style ---------------------------
FORMAT_SRC = $(wildcard lib/*.c lib/*.h lib/curl/*.c lib/curl/*.h shim/*.c shim/*.h cli/*.c cli/*.h)
.PHONY: format format-check
format:
	clang-format -i $(FORMAT_SRC)

format-check:
	@clang-format --dry-run --Werror $(FORMAT_SRC) && echo "format: clean"

# ThreadSanitizer run of the threaded engine code (Criterion cannot run under TSan).
$(B)/stress_threads: tests/stress/threads.c $(LIB_SRC) $(LIB_HDR) tests/unit/curlpool_server.h
	$(call say,LD,$@)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(BASEFLAGS) $(SANFLAGS) $(CURL_CFLAGS) -o $@ tests/stress/threads.c $(LIB_SRC) $(INIH_A) -lcurl -lpthread

tsan:
	@$(MAKE) --no-print-directory SAN=thread build-thread/stress_threads
	TSAN_OPTIONS=halt_on_error=1 build-thread/stress_threads

# --- fuzzing: libFuzzer + ASan + UBSan (clang), bounded ---------------------------
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_CI_SECONDS ?= 10
FUZZ_LIBSRC  := lib/config.c lib/config_keys.c lib/config_values.c lib/config_dump.c lib/config_alog.c \
                lib/lane.c lib/key.c lib/glob.c lib/sys.c
FUZZ_FLAGS   := -std=c11 -D_GNU_SOURCE -g -O1 -Ilib -Iinclude -fno-omit-frame-pointer \
                -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_BINS    := $(patsubst fuzz/%.c,$(B)/fuzz/%,$(wildcard fuzz/fuzz_*.c))

$(B)/fuzz/%: fuzz/%.c $(FUZZ_LIBSRC) $(wildcard lib/*.h)
	@mkdir -p $(dir $@)
	$(call say,FUZZ,$@)
	$(Q)$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(FUZZ_LIBSRC) $(INIH_A)

.PHONY: fuzz fuzz-ci soak
fuzz: check-deps $(FUZZ_BINS)
	bash fuzz/run.sh $(B) $(FUZZ_SECONDS)

fuzz-ci: check-deps $(FUZZ_BINS)
	bash fuzz/run.sh $(B) $(FUZZ_CI_SECONDS)

SOAK_SECONDS ?= 120
soak: check-deps
	@$(MAKE) --no-print-directory $(B)/libconnroute.so $(B)/upstream $(B)/progs/curlprog $(B)/progs/sockprog
	B=$(B) bash scripts/soak.sh $(SOAK_SECONDS)
