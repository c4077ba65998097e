/* connroute doctor: what would and would not be routed in a program (its
 * file, cli/inspect.c), or in a running process (its file, what it has
 * mapped, its environment and auxiliary vector, and its metrics endpoint). */
#include <ctype.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static void doctor_usage(FILE *f)
{
	fputs("usage: connroute doctor PROGRAM | PID\n"
	      "Say what connroute would and would not route in PROGRAM (a path or a name in "
	      "PATH),\n"
	      "or in the running process PID: raw sockets, libcurl (found and how), objects that\n"
	      "bind around the preload (RTLD_DEEPBIND), static and Go programs, secure execution;\n"
	      "for a PID also whether the shim is loaded and which lanes saw traffic.\n"
	      "\n"
	      "  -h, --help   this text\n"
	      "\n"
	      "Exit status: 0 routable (a PID: and the shim is loaded), 1 not, 2 bad usage.\n",
	      f);
}

static int all_digits(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return 0;
	return 1;
}

static void report_program(const struct cr_inspect *in)
{
	if (in->script[0])
		printf("script:       %s, run by %s\n", in->script, in->path);
	printf("program:      %s", in->path);
	if (in->elf && !in->wrong_class)
		printf(" (%s%s%s)",
		       in->is_static ? "statically linked" : "dynamically linked, interpreter ",
		       in->is_static ? "" : in->interp, in->go ? ", Go" : "");
	printf("\n");
	if (!in->elf || in->wrong_class || in->is_static || in->go || in->foreign_libc)
		return;
	printf("raw sockets:  %s\n",
	       in->libc ? "routed: connect() and close() go through libc, where the shim "
			  "interposes them"
			: "libc.so.6 is not in its needed list: connect() may not go through "
			  "glibc");
	if (in->curl == 1)
		printf("libcurl:      %s, needed by the program itself: its easy calls get the "
		       "lanes' pools, "
		       "timeouts and limits\n",
		       in->curl_lib);
	else if (in->curl == 2)
		printf("libcurl:      %s, needed by %s: its easy calls get the lanes' pools, "
		       "timeouts and "
		       "limits\n",
		       in->curl_lib, in->curl_via);
	else
		printf("libcurl:      not in its needed libraries; one loaded later (dlopen: "
		       "pycurl, "
		       "plugins) is found at its first call\n");
	if (in->php)
		printf("DEEPBIND:     PHP loads its extensions with RTLD_DEEPBIND: connroute "
		       "rebinds their "
		       "references to the interposed names as they are loaded (glibc 2.35 or "
		       "later), so "
		       "PHP's curl_* transfers get the lanes; connections an extension makes from "
		       "its own "
		       "constructor are not routed (docs/INTERNALS.md, \"RTLD_DEEPBIND hosts\")\n");
	if (in->missing[0])
		printf("note:         %s was not found where the loader looks: the program may not "
		       "start\n",
		       in->missing);
}

static int doctor_program(const char *prog)
{
	struct cr_inspect in;
	char err[PATH_MAX + 128];
	if (cr_inspect_program(prog, &in, err, sizeof(err)) != 0) {
		fprintf(stderr, "connroute doctor: %s\n", err);
		return CLI_FAIL;
	}
	report_program(&in);
	int bad = cr_inspect_report(&in, stdout, "NOT ROUTED:   ");
	printf("verdict:      %s\n",
	       bad ? "connroute cannot route this program" : "connroute can route this program");
	return bad ? CLI_FAIL : CLI_OK;
}

/* AT_SECURE of a running process, -1 unknown. */
static long auxv_secure(long pid)
{
	char path[64];
	Elf64_auxv_t a;
	snprintf(path, sizeof(path), "/proc/%ld/auxv", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	long v = -1;
	if (fd < 0)
		return -1;
	while (read(fd, &a, sizeof(a)) == (ssize_t)sizeof(a) && a.a_type != AT_NULL)
		if (a.a_type == AT_SECURE)
			v = (long)a.a_un.a_val;
	close(fd);
	return v;
}

static int doctor_pid(long pid)
{
	char path[64], exe[PATH_MAX];
	snprintf(path, sizeof(path), "/proc/%ld/exe", pid);
	ssize_t n = readlink(path, exe, sizeof(exe) - 1);
	if (n <= 0) {
		fprintf(stderr, "connroute doctor: process %ld: %s\n", pid, strerror(errno));
		return CLI_FAIL;
	}
	exe[n] = '\0';
	printf("process:      %ld\n", pid);
	struct cr_inspect in;
	char err[PATH_MAX + 128];
	/* The file as it is now (it may have been replaced since): /proc/PID/exe. */
	int bad = 0;
	if (cr_inspect_program(path, &in, err, sizeof(err)) == 0) {
		snprintf(in.path, sizeof(in.path), "%s", exe);
		report_program(&in);
		bad = cr_inspect_report(&in, stdout, "NOT ROUTED:   ");
	}
	snprintf(path, sizeof(path), "/proc/%ld/maps", pid);
	FILE *m = fopen(path, "re");
	int shim = 0, curl = 0, phpext = 0;
	char line[PATH_MAX + 128], curlpath[PATH_MAX] = "";
	while (m && fgets(line, sizeof(line), m)) {
		char *p = strchr(line, '/');
		if (!p)
			continue;
		p[strcspn(p, "\n")] = '\0';
		if (strstr(p, "libconnroute"))
			shim = 1;
		if (strstr(p, "/libcurl") && !curl) {
			curl = 1;
			snprintf(curlpath, sizeof(curlpath), "%s", p);
		}
		if (strstr(p, "/php/") && strstr(p, ".so"))
			phpext = 1;
	}
	if (m)
		fclose(m);
	long sec = auxv_secure(pid);
	printf("shim:         %s\n",
	       shim ? "loaded (libconnroute.so is mapped)"
	       : !m ? "unknown (cannot read its maps: run as its user or root)"
		    : "NOT loaded: the process was not started under connroute (LD_PRELOAD)");
	if (sec == 1)
		printf("NOT ROUTED:   the process runs with secure execution (AT_SECURE): "
		       "connroute "
		       "ignores CONNROUTE_* and passes everything through\n");
	printf("libcurl:      %s%s\n", curl ? "mapped: " : "not mapped (no libcurl in use yet)",
	       curlpath);
	if (phpext)
		printf("DEEPBIND:     PHP extensions are mapped: they were loaded with "
		       "RTLD_DEEPBIND; the "
		       "shim rebinds their calls to the interposed names at load (glibc 2.35 or "
		       "later)\n");
	if (shim)
		cr_cli_lanes_seen(pid, stdout);
	int ok = shim && !bad && sec != 1;
	printf("verdict:      %s\n", ok ? "routed by connroute" : "not routed by connroute");
	return ok ? CLI_OK : CLI_FAIL;
}

int cr_cli_doctor(int argc, char **argv)
{
	static const struct option longs[] = {{"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
	int c;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "+h", longs, NULL)) != -1) {
		if (c == 'h') {
			doctor_usage(stdout);
			return CLI_OK;
		}
		return cr_cli_bad_option("doctor", argv, optind, optopt);
	}
	if (argc - optind != 1) {
		fprintf(stderr,
			"connroute doctor: give one PROGRAM or PID; see connroute doctor --help\n");
		return CLI_USAGE;
	}
	const char *a = argv[optind];
	if (all_digits(a))
		return doctor_pid(strtol(a, NULL, 10));
	return doctor_program(a);
}
