/* connroute(1): the subcommands, one file each (cli/). Every subcommand
 * takes --help (usage on stdout, exit 0) and refuses an unknown option with
 * one line on stderr and exit 2, as the GNU tools do. */
#ifndef CR_CLI_H
#define CR_CLI_H

#include <stdio.h>
#include <sys/types.h>

/* Exit statuses shared by the subcommands. */
#define CLI_OK    0
#define CLI_FAIL  1
#define CLI_USAGE 2

int cr_cli_run(int argc, char **argv);
int cr_cli_check(int argc, char **argv);
int cr_cli_stats(int argc, char **argv);
int cr_cli_reload(int argc, char **argv);
int cr_cli_doctor(int argc, char **argv);

/* For doctor: the lanes process PID's endpoint reports traffic for. */
void cr_cli_lanes_seen(long pid, FILE *out);

/* One line "connroute CMD: unknown option 'X'; see connroute CMD --help"
 * (or "needs a value"), from getopt's optopt / the argument. Returns 2. */
int cr_cli_bad_option(const char *cmd, char **argv, int optind_after, int optopt_c);

/* The shim's path: next to this binary (build tree), ../lib (installed), the
 * multiarch directory, then LIBDIR. 0 or -1. */
int cr_cli_find_library(char *out, size_t n);

/* The config file a process of this environment would read (docs/config.md,
 * "Which file"): CONNROUTE_CONFIG; unset: the system file if it exists; "" =
 * none. ORIGIN gets the enum cr_trust_origin. */
const char *cr_cli_config_path(const char *env_value, int env_set, int *origin);

/* ELF inspection of a program before exec (cli/inspect.c). */
struct cr_inspect {
	char path[4096];   /* the file inspected (after #! interpreters) */
	char script[4096]; /* the script, when PATH is its interpreter */
	int elf;           /* an ELF file we could read */
	int wrong_class;   /* 32-bit (the shim is 64-bit) or another machine */
	int is_static;     /* no program interpreter */
	char interp[256];  /* PT_INTERP */
	int foreign_libc;  /* an interpreter that is not glibc's (musl...) */
	int libc;          /* libc.so.6 in its needed list (or a dependency's) */
	int go;            /* a Go build id / buildinfo */
	int secure;        /* setuid/setgid/capabilities that start secure execution */
	char secure_why[160];
	int curl;            /* 0: no libcurl found, 1: needed directly, 2: by a library */
	char curl_lib[4096]; /* the libcurl file */
	char curl_via[4096]; /* the object that needs it (curl == 2) */
	int php;             /* PHP: loads extensions with RTLD_DEEPBIND */
	int nobjects;        /* objects in the needed graph that were found */
	char missing[256];   /* a needed library that was not found, "" if none */
};

/* Inspects PROG (a path, or a name looked up in $PATH as execvp does).
 * 0, or -1 when the file cannot be found or read (ERR gets why). */
int cr_inspect_program(const char *prog, struct cr_inspect *in, char *err, size_t n);

/* What would not be routed, one line each, for `run` and `doctor`; returns
 * how many blocking problems (static, Go, secure execution, wrong class,
 * foreign libc) were printed. PREFIX starts each line. */
int cr_inspect_report(const struct cr_inspect *in, FILE *out, const char *prefix);

/* `connroute tail PID | PATH [--slow] [-n N] [--lane NAME]` (cli/tail.c) */
int cr_cli_tail(int argc, char **argv);

#endif
