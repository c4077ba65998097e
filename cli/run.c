/* connroute run: a program under the shim. The environment is what the
 * shim reads (CONNROUTE_*, LD_PRELOAD); the program is inspected first
 * (cli/inspect.c): one that LD_PRELOAD cannot reach is said so, a warning,
 * or an error with --strict (exit 126, nothing run), the way torsocks
 * refuses a setuid program. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "key.h"
#include "log.h"
#include "trust.h"

static void run_usage(FILE *f)
{
	fputs("usage: connroute run [OPTIONS] [--] CMD [ARGS...]\n"
	      "Run CMD with libconnroute.so preloaded (LD_PRELOAD), so its connections are routed\n"
	      "into the lanes of its config file.\n"
	      "\n"
	      "  -k, --key KEY       the process's default routing key (CONNROUTE_KEY)\n"
	      "  -c, --config FILE   the config file (CONNROUTE_CONFIG; made absolute). Without "
	      "it:\n"
	      "                      CONNROUTE_CONFIG if set, else " CONNROUTE_SYSCONF
	      " if it exists\n"
	      "      --no-config     no config file at all (CONNROUTE_CONFIG=): one pass-through "
	      "lane\n"
	      "  -l, --log LEVEL     error, warn, info or debug (CONNROUTE_LOG)\n"
	      "      --strict        CONNROUTE_STRICT=1: a bad config or key stops the program "
	      "(exit\n"
	      "                      78); and a program connroute cannot route is not run (exit "
	      "126)\n"
	      "  -q, --quiet         no warning about a program connroute cannot route\n"
	      "  -h, --help          this text\n"
	      "\n"
	      "Exit status: CMD's own; 2 bad usage; 126 CMD cannot be run (or, with --strict, "
	      "cannot\n"
	      "be routed); 127 CMD or libconnroute.so not found.\n",
	      f);
}

int cr_cli_run(int argc, char **argv)
{
	enum { O_STRICT = 256, O_NO_CONFIG };
	static const struct option longs[] = {
		{"key", required_argument, 0, 'k'},
		{"config", required_argument, 0, 'c'},
		{"log", required_argument, 0, 'l'},
		{"strict", no_argument, 0, O_STRICT},
		{"no-config", no_argument, 0, O_NO_CONFIG},
		{"quiet", no_argument, 0, 'q'},
		{"help", no_argument, 0, 'h'},
		{0, 0, 0, 0},
	};
	char lib[PATH_MAX], abs_cfg[PATH_MAX];
	int c, strict = 0, quiet = 0;
	opterr = 0;
	optind = 1;
	/* "+": stop at the command, its own options are its own. */
	while ((c = getopt_long(argc, argv, "+hqk:c:l:", longs, NULL)) != -1) {
		switch (c) {
		case 'h': run_usage(stdout); return CLI_OK;
		case 'q': quiet = 1; break;
		case 'k':
			if (cr_key_check(optarg) != 0) {
				fprintf(stderr,
					"connroute run: '%s' is not a valid key; use 1-127 "
					"characters of "
					"A-Za-z0-9._~:/@=- (e.g. payments/critical)\n",
					optarg);
				return CLI_USAGE;
			}
			setenv("CONNROUTE_KEY", optarg, 1);
			break;
		case 'c':
			/* The program may chdir: pass an absolute path. */
			if (!realpath(optarg, abs_cfg)) {
				fprintf(stderr,
					"connroute run: --config %s: %s; give an existing config "
					"file\n",
					optarg, strerror(errno));
				return CLI_USAGE;
			}
			setenv("CONNROUTE_CONFIG", abs_cfg, 1);
			break;
		case O_NO_CONFIG: setenv("CONNROUTE_CONFIG", "", 1); break;
		case 'l':
			if (cr_log_parse_level(optarg) < 0) {
				fprintf(stderr,
					"connroute run: --log %s: use error, warn, info or debug\n",
					optarg);
				return CLI_USAGE;
			}
			setenv("CONNROUTE_LOG", optarg, 1);
			break;
		case O_STRICT:
			strict = 1;
			setenv("CONNROUTE_STRICT", "1", 1);
			break;
		default: return cr_cli_bad_option("run", argv, optind, optopt);
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "connroute run: no command given; see connroute run --help\n");
		return CLI_USAGE;
	}
	char **cmd = argv + optind;
	if (cr_cli_find_library(lib, sizeof(lib)) != 0) {
		fprintf(stderr,
			"connroute run: libconnroute.so not found next to connroute nor in %s; "
			"run `make` or `make install`\n",
			CONNROUTE_LIBDIR);
		return 127;
	}
	struct cr_inspect in;
	char err[PATH_MAX + 128];
	if (cr_inspect_program(cmd[0], &in, err, sizeof(err)) != 0) {
		fprintf(stderr, "connroute run: cannot run %s\n", err);
		return errno == ENOENT ? 127 : 126;
	}
	if (!quiet || strict) {
		int bad = cr_inspect_report(&in, stderr,
					    strict ? "connroute run: error: "
						   : "connroute run: warning: ");
		if (bad && strict) {
			fprintf(stderr,
				"connroute run: --strict: not running %s (drop --strict to run it "
				"unrouted)\n",
				cmd[0]);
			return 126;
		}
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
	execvp(cmd[0], cmd);
	fprintf(stderr, "connroute run: cannot run %s: %s\n", cmd[0], strerror(errno));
	return errno == ENOENT ? 127 : 126;
}
