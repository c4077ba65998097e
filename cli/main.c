/* connroute(1): run a program under the shim, check a config file, inspect a
 * program or a process, look at and reload a running process. The
 * subcommands live in cli/<name>.c; this file dispatches and holds what they
 * share. The manual is docs/man/connroute.1.scd.
 *
 *   connroute run [OPTIONS] [--] CMD [ARGS...]
 *   connroute check [OPTIONS] [FILE...]
 *   connroute doctor PROGRAM | PID
 *   connroute stats [OPTIONS] [PID | ADDRESS]
 *   connroute reload PID | ADDRESS
 *   connroute --version | --help
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "trust.h"

static void usage(FILE *f)
{
	fputs("usage: connroute run [--key KEY] [--config FILE] [--log LEVEL] [--strict] [--] CMD "
	      "[ARGS...]\n"
	      "       connroute check [--as-root] [--quiet] [--key KEY [--host HOST:PORT] "
	      "[--thread NAME]] [FILE...]\n"
	      "       connroute doctor PROGRAM | PID\n"
	      "       connroute stats [--watch [SECS]] [--count N] [--raw | --json] [PID | "
	      "ADDRESS]\n"
	      "       connroute reload PID | ADDRESS\n"
	      "       connroute tail [--slow] [-n N] [--lane LANE] PID | PATH\n"
	      "       connroute --version | --help\n"
	      "\n"
	      "run     run CMD with libconnroute.so preloaded, so its connections are routed into\n"
	      "        lanes; the program is inspected first (static, Go, setuid: not routable)\n"
	      "check   validate config files with the shim's own parser and trust rules, print "
	      "the\n"
	      "        effective lanes; --key explains which lane a key selects and why\n"
	      "doctor  what would and would not be routed in PROGRAM, or in the running process "
	      "PID\n"
	      "stats   per-lane table of a running process, from its metrics endpoint\n"
	      "reload  make a running process re-read its config file now\n"
	      "tail    the last requests of a process's access log (docs/access-log.md)\n"
	      "\n"
	      "`connroute COMMAND --help` describes each command; man connroute(1), "
	      "connroute.conf(5).\n"
	      "Environment: CONNROUTE_CONFIG, CONNROUTE_KEY, CONNROUTE_LOG, CONNROUTE_LOG_FILE,\n"
	      "CONNROUTE_STRICT, CONNROUTE_DISABLE (connroute(7)).\n",
	      f);
}

int cr_cli_bad_option(const char *cmd, char **argv, int optind_after, int optopt_c)
{
	/* getopt leaves the offending word at optind - 1 for a long option,
	 * and the character in optopt for a short one. */
	const char *word = optind_after > 0 ? argv[optind_after - 1] : "?";
	if (optopt_c && optopt_c != '?' && !(word[0] == '-' && word[1] == '-'))
		fprintf(stderr,
			"connroute %s: option '-%c' is unknown or needs a value; see connroute %s "
			"--help\n",
			cmd, optopt_c, cmd);
	else
		fprintf(stderr,
			"connroute %s: option '%s' is unknown or needs a value; see connroute %s "
			"--help\n",
			cmd, word, cmd);
	return CLI_USAGE;
}

static int file_exists(const char *p)
{
	return access(p, R_OK) == 0;
}

int cr_cli_find_library(char *out, size_t n)
{
	char self[PATH_MAX];
	ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (len > 0) {
		self[len] = '\0';
		char *slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			static const char *const rel[] = {"", "/../lib",
							  "/../lib/" CONNROUTE_MULTIARCH};
			for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
				char cand[PATH_MAX], real[PATH_MAX];
				if (snprintf(cand, sizeof(cand), "%s%s/libconnroute.so", self,
					     rel[i]) >= (int)sizeof(cand) ||
				    !file_exists(cand))
					continue;
				snprintf(out, n, "%s", realpath(cand, real) ? real : cand);
				return 0;
			}
		}
	}
	snprintf(out, n, "%s/libconnroute.so", CONNROUTE_LIBDIR);
	return file_exists(out) ? 0 : -1;
}

const char *cr_cli_config_path(const char *env_value, int env_set, int *origin)
{
	struct stat st;
	*origin = CR_TRUST_ENV;
	if (env_set)
		return env_value ? env_value : "";
	if (lstat(CONNROUTE_SYSCONF, &st) == 0 || errno != ENOENT) {
		*origin = CR_TRUST_SYSCONF;
		return CONNROUTE_SYSCONF;
	}
	return "";
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return CLI_USAGE;
	}
	const char *c = argv[1];
	if (!strcmp(c, "--version") || !strcmp(c, "-V") || !strcmp(c, "version")) {
		printf("connroute %s\n", CONNROUTE_VERSION);
		return CLI_OK;
	}
	if (!strcmp(c, "--help") || !strcmp(c, "-h") || !strcmp(c, "help")) {
		if (argc > 2 && strcmp(c, "help") == 0) { /* `connroute help check` */
			static char *sub[3];
			sub[0] = argv[2];
			sub[1] = "--help";
			argv = sub;
			argc = 2;
			c = argv[0];
			goto dispatch;
		}
		usage(stdout);
		return CLI_OK;
	}
	argc--;
	argv++;
dispatch:
	if (!strcmp(c, "run"))
		return cr_cli_run(argc, argv);
	if (!strcmp(c, "check"))
		return cr_cli_check(argc, argv);
	if (!strcmp(c, "doctor"))
		return cr_cli_doctor(argc, argv);
	if (!strcmp(c, "stats"))
		return cr_cli_stats(argc, argv);
	if (!strcmp(c, "reload"))
		return cr_cli_reload(argc, argv);
	if (!strcmp(c, "tail"))
		return cr_cli_tail(argc - 1, argv + 1);
	fprintf(stderr, "connroute: unknown command '%s'; see connroute --help\n", c);
	return CLI_USAGE;
}
