/* connroute(1): run a program under the shim, check a config file, look at
 * and reload a running process (cli/stats.c).
 *
 *   connroute run [--key K] [--config F] [--log LEVEL] [--strict] -- CMD [ARGS...]
 *   connroute check FILE
 *   connroute stats [PID | ADDRESS] [--watch [SECS]] [--count N] [--raw]
 *   connroute reload PID | ADDRESS
 *   connroute --version | --help
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "key.h"
#include "log.h"

static void usage(FILE *f)
{
	fputs("usage: connroute run [--key KEY] [--config FILE] [--log LEVEL] [--strict] -- CMD [ARGS...]\n"
	      "       connroute check FILE\n"
	      "       connroute stats [PID | ADDRESS] [--watch [SECS]] [--count N] [--raw]\n"
	      "       connroute reload PID | ADDRESS\n"
	      "       connroute --version | --help\n"
	      "\n"
	      "run     runs CMD with libconnroute.so preloaded (LD_PRELOAD), so its connections\n"
	      "        are routed into lanes; --key sets CONNROUTE_KEY (the process default key),\n"
	      "        --config sets CONNROUTE_CONFIG, --log CONNROUTE_LOG, --strict CONNROUTE_STRICT=1\n"
	      "check   validates FILE and prints the effective lanes; exit status 0 if valid, 1 if not\n"
	      "stats   prints a per-lane table (active/idle connections, queued, in flight, requests,\n"
	      "        req/s, p50/p99 latency, overflows, retries, unmatched keys) of a running process,\n"
	      "        read from its metrics endpoint ([global] metrics in its config). PID: the\n"
	      "        endpoint is found from the process's CONNROUTE_CONFIG (%p = PID); ADDRESS:\n"
	      "        127.0.0.1:9464, [::1]:9464 or unix:/PATH; neither: the one process of yours\n"
	      "        running under connroute. --watch refreshes every SECS [1] until Ctrl-C (or N\n"
	      "        times with --count; put PID before --watch); --raw prints the Prometheus text.\n"
	      "        Exit status 0, 1 if the endpoint cannot be read, 2 on bad usage\n"
	      "reload  makes a running process re-read its config file now (it also checks the file\n"
	      "        for changes every second): prints applied, unchanged or rejected; exit status\n"
	      "        0 applied/unchanged, 1 rejected (the old config stays), 3 endpoint unreachable\n"
	      "\n"
	      "Environment: CONNROUTE_CONFIG, CONNROUTE_KEY, CONNROUTE_LOG, CONNROUTE_LOG_FILE,\n"
	      "CONNROUTE_STRICT, CONNROUTE_DISABLE. See README.md and docs/.\n",
	      f);
}

static int file_exists(const char *p)
{
	return access(p, R_OK) == 0;
}

/* The shim next to this binary (build tree), then ../lib (installed tree),
 * then the configured LIBDIR. */
static int find_library(char *out, size_t n)
{
	char self[PATH_MAX];
	ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (len > 0) {
		self[len] = '\0';
		char *slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			if (snprintf(out, n, "%s/libconnroute.so", self) < (int)n && file_exists(out))
				return 0;
			if (snprintf(out, n, "%s/../lib/libconnroute.so", self) < (int)n &&
			    file_exists(out)) {
				char real[PATH_MAX];
				if (realpath(out, real))
					snprintf(out, n, "%s", real);
				return 0;
			}
		}
	}
	snprintf(out, n, "%s/libconnroute.so", CONNROUTE_LIBDIR);
	return file_exists(out) ? 0 : -1;
}

static int cmd_run(int argc, char **argv)
{
	char lib[PATH_MAX], abs_cfg[PATH_MAX];
	int i;
	for (i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		if ((strcmp(a, "--key") == 0 || strcmp(a, "--config") == 0 || strcmp(a, "--log") == 0) &&
		    i + 1 >= argc) {
			fprintf(stderr, "connroute run: %s needs a value\n", a);
			return 2;
		}
		if (strcmp(a, "--key") == 0) {
			const char *k = argv[++i];
			if (cr_key_check(k) != 0) {
				fprintf(stderr,
					"connroute run: '%s' is not a valid key; use 1-127 characters of "
					"A-Za-z0-9._~:/@=- (e.g. payments/critical)\n",
					k);
				return 2;
			}
			setenv("CONNROUTE_KEY", k, 1);
		} else if (strcmp(a, "--config") == 0) {
			const char *c = argv[++i];
			/* The program may chdir: pass an absolute path. */
			if (!realpath(c, abs_cfg)) {
				fprintf(stderr, "connroute run: %s: %s; give an existing config file\n", c,
					strerror(errno));
				return 2;
			}
			setenv("CONNROUTE_CONFIG", abs_cfg, 1);
		} else if (strcmp(a, "--log") == 0) {
			const char *l = argv[++i];
			if (cr_log_parse_level(l) < 0) {
				fprintf(stderr, "connroute run: --log %s: use error, warn, info or debug\n", l);
				return 2;
			}
			setenv("CONNROUTE_LOG", l, 1);
		} else if (strcmp(a, "--strict") == 0) {
			setenv("CONNROUTE_STRICT", "1", 1);
		} else if (a[0] == '-') {
			fprintf(stderr, "connroute run: unknown option %s\n", a);
			usage(stderr);
			return 2;
		} else {
			break; /* the command, without a "--" */
		}
	}
	if (i >= argc) {
		fprintf(stderr, "connroute run: no command given\n");
		usage(stderr);
		return 2;
	}
	if (find_library(lib, sizeof(lib)) != 0) {
		fprintf(stderr, "connroute run: libconnroute.so not found next to connroute nor in %s; "
				"run `make` or `make install`\n",
			CONNROUTE_LIBDIR);
		return 127;
	}
	const char *old = getenv("LD_PRELOAD");
	if (!old || !strstr(old, lib)) {
		size_t n = strlen(lib) + (old ? strlen(old) : 0) + 2;
		char *pre = malloc(n);
		if (!pre)
			return 127;
		snprintf(pre, n, "%s%s%s", lib, old && *old ? ":" : "", old ? old : "");
		setenv("LD_PRELOAD", pre, 1);
		free(pre);
	}
	execvp(argv[i], argv + i);
	fprintf(stderr, "connroute run: cannot run %s: %s\n", argv[i], strerror(errno));
	return errno == ENOENT ? 127 : 126;
}

static int cmd_check(int argc, char **argv)
{
	struct cr_config *cfg;
	struct cr_diag *diag;
	int rc;
	if (argc != 1) {
		fprintf(stderr, "usage: connroute check FILE\n");
		return 2;
	}
	cfg = calloc(1, sizeof(*cfg));
	diag = calloc(1, sizeof(*diag));
	if (!cfg || !diag)
		return 2;
	rc = cr_config_load_file(argv[0], cfg, diag);
	if (rc != 0) {
		int shown = diag->n < CR_MAX_DIAG ? diag->n : CR_MAX_DIAG;
		for (int i = 0; i < shown; i++)
			fprintf(stderr, "%s\n", diag->msg[i]);
		if (diag->n > shown)
			fprintf(stderr, "... and %d more\n", diag->n - shown);
		fprintf(stderr, "%s: %d problem%s; a program run with this file would run unrouted\n",
			argv[0], diag->n, diag->n == 1 ? "" : "s");
	} else {
		cr_config_dump(cfg, stdout);
		printf("%s: OK\n", argv[0]);
	}
	free(cfg);
	free(diag);
	return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
		printf("connroute %s\n", CONNROUTE_VERSION);
		return 0;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "run") == 0)
		return cmd_run(argc - 2, argv + 2);
	if (strcmp(argv[1], "check") == 0)
		return cmd_check(argc - 2, argv + 2);
	if (strcmp(argv[1], "stats") == 0)
		return cr_cli_stats(argc - 2, argv + 2);
	if (strcmp(argv[1], "reload") == 0)
		return cr_cli_reload(argc - 2, argv + 2);
	if (strcmp(argv[1], "tail") == 0)
		return cr_cli_tail(argc - 2, argv + 2);
	fprintf(stderr, "connroute: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
