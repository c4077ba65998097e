/* The connroute(1) contract (issue: operator experience), judged from outside: exit
 * statuses, what goes to stdout and stderr, and what the shim then does with the same file
 * or endpoint.
 *   cli_contract  every subcommand takes --help (stdout, 0) and refuses an unknown option
 *                 with one line and 2; --version/-V; --config=F; check '-' and several files
 *   cli_check     the shim's own trust rules for the user the service runs as; warnings
 *                 (empty file, shadowed lane); the dump is valid input; --key explains
 *   cli_inspect   run/doctor see static, Go and setuid programs, libcurl, the shim in a PID
 *   cli_endpoint  stats/reload refuse another process's endpoint; unchanged; rejected
 *   cli_notice    info lines once per lane and unmatched key; the first EAGAIN at warn
 *   cli_sysconf   the system config file (a test build of the shim looks for it in the
 *                 build directory, never /etc): used when CONNROUTE_CONFIG is unset and
 *                 it passes the trust rules; never the current directory */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static const char *cli(void)
{
	static char p[400];
	snprintf(p, sizeof(p), "%s/connroute", h_build());
	return p;
}

static const char *prog(const char *name)
{
	static char p[4][400];
	static int i;
	char *b = p[i++ % 4];
	snprintf(b, 400, "%s/progs/%s", h_build(), name);
	return b;
}

/* build/connroute ARGS... */
#define CLI(r, ...)                                                                              \
	do {                                                                                     \
		const char *argv_[] = {cli(), __VA_ARGS__, NULL};                                \
		h_run_ok((r), argv_, NULL, 0, 20000);                                            \
	} while (0)

static int lines(const char *s)
{
	int n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static int count(const char *s, const char *needle)
{
	int n = 0;
	for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/* A file in DIR with TEXT and MODE; its path (static, 4 in turn). */
static const char *file(const char *name, const char *text, mode_t mode)
{
	static char p[4][400];
	static int i;
	char *b = p[i++ % 4];
	cr_assert_eq(h_write_file(h_dir, name, text, b, 400), 0);
	cr_assert_eq(chmod(b, mode), 0);
	return b;
}

static const char *conf_lanes =
	"[threads]\n"
	"batch-* = reports/batch\n"
	"[lane critical]\n"
	"match = payment-gateway/critical, */critical\n"
	"tos = 0xb8\n"
	"[lane api]\n"
	"match = x/*\n"
	"hosts = 10.0.0.0/8:443, api.internal\n"
	"[lane batch]\n"
	"match = */batch\n"
	"dscp = cs1\n";

/* ------------------------------------------------------------- the contract */

static void mkdir_private(void)
{
	snprintf(h_dir, sizeof(h_dir), "/tmp/cr-cli-XXXXXX");
	cr_assert_not_null(mkdtemp(h_dir));
}

static void rm_private(void)
{
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", h_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", h_dir);
}

static const char *const subcommands[] = {"run", "check", "doctor", "stats", "reload"};

Test(cli_contract, every_subcommand_takes_help_on_stdout)
{
	struct h_run r;
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++) {
		char want[64];
		snprintf(want, sizeof(want), "usage: connroute %s", subcommands[i]);
		CLI(&r, subcommands[i], "--help");
		cr_expect_eq(r.status, 0, "%s --help: %d %s", subcommands[i], r.status, r.err);
		cr_expect(strncmp(r.out, want, strlen(want)) == 0, "%s --help: %s", subcommands[i], r.out);
		cr_expect_str_empty(r.err, "%s --help: %s", subcommands[i], r.err);
		h_run_free(&r);
		CLI(&r, "help", subcommands[i]);
		cr_expect_eq(r.status, 0);
		cr_expect(strncmp(r.out, want, strlen(want)) == 0, "help %s: %s", subcommands[i], r.out);
		h_run_free(&r);
	}
	CLI(&r, "--help");
	cr_expect_eq(r.status, 0);
	cr_expect(strstr(r.out, "usage: connroute run") && strstr(r.out, "connroute doctor"), "%s", r.out);
	h_run_free(&r);
}

Test(cli_contract, unknown_options_are_one_line_and_status_2)
{
	struct h_run r;
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++) {
		const char *bad[] = {"--no-such-option", "-Z"};
		for (int b = 0; b < 2; b++) {
			CLI(&r, subcommands[i], bad[b], "x");
			cr_expect_eq(r.status, 2, "%s %s: %d", subcommands[i], bad[b], r.status);
			cr_expect_eq(lines(r.err), 1, "%s %s: one line: %s", subcommands[i], bad[b], r.err);
			cr_expect(strstr(r.err, bad[b]) != NULL, "names the option: %s", r.err);
			cr_expect_str_empty(r.out, "%s", r.out);
			h_run_free(&r);
		}
	}
	CLI(&r, "frobnicate");
	cr_expect_eq(r.status, 2);
	cr_expect_eq(lines(r.err), 1, "%s", r.err);
	h_run_free(&r);
}

Test(cli_contract, version_long_and_short)
{
	struct h_run r;
	CLI(&r, "--version");
	cr_expect_eq(r.status, 0);
	cr_expect(strncmp(r.out, "connroute ", 10) == 0 && lines(r.out) == 1, "%s", r.out);
	h_run_free(&r);
	CLI(&r, "-V");
	cr_expect_eq(r.status, 0);
	cr_expect(strncmp(r.out, "connroute ", 10) == 0, "%s", r.out);
	h_run_free(&r);
}

Test(cli_contract, run_takes_config_equals_file, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r;
	char opt[450], at[64];
	snprintf(opt, sizeof(opt), "--config=%s", file("c.conf", conf_lanes, 0644));
	snprintf(at, sizeof(at), "connect=a@127.0.0.1:%d", h_up.port);
	CLI(&r, "run", opt, "--key=pay/critical", "--", prog("sockprog"), "tcp=a", at, "opts=a");
	cr_expect_eq(r.status, 0, "%s", r.err);
	cr_expect(strstr(r.out, "tos=184") != NULL, "the lane's options applied: %s", r.out);
	h_run_free(&r);
}

Test(cli_contract, check_reads_stdin_and_several_files, .init = mkdir_private, .fini = rm_private)
{
	struct h_run r;
	const char *good = file("good.conf", conf_lanes, 0644);
	char good2[400], bad[400], cmd[1400];
	snprintf(good2, sizeof(good2), "%s", file("good2.conf", "[lane x]\n", 0644));
	snprintf(bad, sizeof(bad), "%s", file("bad.conf", "[lane x]\nconnect_timeout = 5\n", 0644));
	CLI(&r, "check", "-q", good, good2);
	cr_expect_eq(r.status, 0, "%s", r.err);
	cr_expect_eq(count(r.err, ": OK"), 2, "%s", r.err);
	h_run_free(&r);
	CLI(&r, "check", "-q", good, bad, good2);
	cr_expect_eq(r.status, 1, "one bad file: %s", r.err);
	cr_expect(strstr(r.err, "bad.conf:2:") != NULL, "%s", r.err);
	cr_expect_eq(count(r.err, ": OK"), 2, "the others are still checked: %s", r.err);
	h_run_free(&r);
	snprintf(cmd, sizeof(cmd), "'%s' check - < '%s'", cli(), good);
	const char *sh[] = {"/bin/sh", "-c", cmd, NULL};
	h_run_ok(&r, sh, NULL, 0, 20000);
	cr_expect_eq(r.status, 0, "%s", r.err);
	cr_expect(strstr(r.out, "[lane critical]") != NULL, "%s", r.out);
	cr_expect(strstr(r.err, "<stdin>: OK") != NULL, "%s", r.err);
	h_run_free(&r);
	snprintf(cmd, sizeof(cmd), "'%s' check - < '%s'", cli(), bad);
	const char *sh2[] = {"/bin/sh", "-c", cmd, NULL};
	h_run_ok(&r, sh2, NULL, 0, 20000);
	cr_expect_eq(r.status, 1);
	cr_expect(strstr(r.err, "<stdin>:2:") != NULL, "%s", r.err);
	h_run_free(&r);
}

Test(cli_contract, a_path_from_the_command_line_is_not_blamed_on_the_variable)
{
	struct h_run r;
	CLI(&r, "check", "/nonexistent/connroute.conf");
	cr_expect_eq(r.status, 1);
	cr_expect(strstr(r.err, "CONNROUTE_CONFIG") == NULL, "wrong hint: %s", r.err);
	cr_expect(strstr(r.err, "check the path given") != NULL, "%s", r.err);
	h_run_free(&r);
}

/* ----------------------------------------------------------------- check */

Test(cli_check, trust_rules_are_the_shims_for_the_user_judged, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r;
	char at[64], env[450];
	const char *f = file("ww.conf", conf_lanes, 0666);
	snprintf(at, sizeof(at), "connect=a@127.0.0.1:%d", h_up.port);
	snprintf(env, sizeof(env), "CONNROUTE_CONFIG=%s", f);

	CLI(&r, "check", "-q", "--as-root", f);
	cr_expect_eq(r.status, 1, "a world-writable file is refused for root: %s", r.err);
	cr_expect(strstr(r.err, "writable by every user") && strstr(r.err, "judged as root"), "%s", r.err);
	h_run_free(&r);
	CLI(&r, "check", "-q", "--as-user", f);
	cr_expect_eq(r.status, 0, "for another user the root rules do not apply: %s", r.err);
	cr_expect(strstr(r.err, "not root") != NULL, "says whom it judged for: %s", r.err);
	h_run_free(&r);
	if (geteuid() == 0) {
		/* the shim, run as root, refuses exactly that file */
		const char *e[] = {env, "CONNROUTE_STRICT=1", NULL};
		const char *argv[] = {"sockprog", "tcp=a", at, NULL};
		h_run_ok(&r, argv, e, 1, 20000);
		cr_expect_eq(r.status, 78, "the shim refused it too: %d %s", r.status, r.err);
		cr_expect(strstr(r.err, "writable by every user") != NULL, "%s", r.err);
		h_run_free(&r);
		CLI(&r, "check", "-q", f);
		cr_expect_eq(r.status, 1, "as root, the default is to judge for root: %s", r.err);
		h_run_free(&r);
		chmod(f, 0644);
		CLI(&r, "check", "-q", f);
		cr_expect_eq(r.status, 0, "%s", r.err);
		h_run_free(&r);
		h_run_ok(&r, argv, e, 1, 20000);
		cr_expect_eq(r.status, 0, "and the shim reads it: %s", r.err);
		h_run_free(&r);
	}
	/* a link in a world-writable directory: refused for everyone, by both */
	char link[300];
	snprintf(link, sizeof(link), "/tmp/cr-cli-link-%d", (int)getpid());
	unlink(link);
	cr_assert_eq(symlink(f, link), 0);
	CLI(&r, "check", "-q", "--as-user", link);
	cr_expect_eq(r.status, 1, "%s", r.err);
	cr_expect(strstr(r.err, "symbolic link in the world-writable directory") != NULL, "%s", r.err);
	h_run_free(&r);
	snprintf(env, sizeof(env), "CONNROUTE_CONFIG=%s", link);
	const char *e2[] = {env, "CONNROUTE_STRICT=1", NULL};
	const char *argv2[] = {"sockprog", "tcp=a", at, NULL};
	h_run_ok(&r, argv2, e2, 1, 20000);
	cr_expect_eq(r.status, 78, "%s", r.err);
	h_run_free(&r);
	unlink(link);
}

Test(cli_check, warns_on_an_empty_file_and_a_shadowed_lane, .init = mkdir_private, .fini = rm_private)
{
	struct h_run r;
	CLI(&r, "check", "-q", file("empty.conf", "; nothing yet\n", 0644));
	cr_expect_eq(r.status, 0, "a warning is not an error: %s", r.err);
	cr_expect(strstr(r.err, "warning: the file sets nothing") != NULL, "%s", r.err);
	h_run_free(&r);
	CLI(&r, "check", "-q",
	    file("shadow.conf", "[lane all]\nmatch = */*\n[lane late]\nmatch = pay/critical, x/*\n"
				"[lane fine]\nmatch = nobatch\n", 0644));
	cr_expect_eq(r.status, 0, "%s", r.err);
	cr_expect(strstr(r.err, "shadow.conf:3: warning: [lane late] is never selected: [lane all] (line 1)"),
		  "%s", r.err);
	cr_expect(strstr(r.err, "[lane fine]") == NULL, "a lane that can match is not reported: %s", r.err);
	h_run_free(&r);
	/* a host filter on the earlier lane: the later one still gets other destinations */
	CLI(&r, "check", "-q",
	    file("hosts.conf", "[lane all]\nmatch = *\nhosts = 10.0.0.0/8\n[lane late]\nmatch = a\n", 0644));
	cr_expect(strstr(r.err, "never selected") == NULL, "%s", r.err);
	h_run_free(&r);
	CLI(&r, "check", "-q", file("lanes.conf", conf_lanes, 0644));
	cr_expect(strstr(r.err, "warning") == NULL, "%s", r.err);
	h_run_free(&r);
}

Test(cli_check, the_printed_config_is_valid_input, .init = mkdir_private, .fini = rm_private)
{
	struct h_run r;
	CLI(&r, "check", file("lanes.conf", conf_lanes, 0644));
	cr_expect_eq(r.status, 0, "%s", r.err);
	char *dump = strdup(r.out);
	h_run_free(&r);
	CLI(&r, "check", file("dump.conf", dump, 0644));
	cr_expect_eq(r.status, 0, "fed back: %s", r.err);
	h_run_free(&r);
	free(dump);
}

Test(cli_check, key_explains_the_lane_and_the_rule, .init = mkdir_private, .fini = rm_private)
{
	struct h_run r;
	const char *f = file("lanes.conf", conf_lanes, 0644);
	CLI(&r, "check", f, "--key", "payments/critical", "--host", "127.0.0.1:443");
	cr_expect_eq(r.status, 0, "%s", r.err);
	cr_expect(strstr(r.out, "[lane critical] line 3: YES: the key matches '*/critical'"), "%s", r.out);
	cr_expect(strstr(r.out, "\nlane: critical\n"), "%s", r.out);
	h_run_free(&r);
	CLI(&r, "check", f, "--key", "x/y", "--host", "10.1.2.3:443");
	cr_expect(strstr(r.out, "hosts rule '10.0.0.0/8:443'") && strstr(r.out, "\nlane: api\n"), "%s", r.out);
	h_run_free(&r);
	CLI(&r, "check", f, "--key", "x/y", "--host", "192.0.2.1:443");
	cr_expect(strstr(r.out, "[lane api] line 6: no: the key matches 'x/*', but the destination"), "%s",
		  r.out);
	cr_expect(strstr(r.out, "\nlane: default") != NULL, "%s", r.out);
	h_run_free(&r);
	CLI(&r, "check", f, "--thread", "batch-7");
	cr_expect(strstr(r.out, "key 'reports/batch' ([threads] batch-* = reports/batch, line 2"), "%s", r.out);
	cr_expect(strstr(r.out, "\nlane: batch\n") != NULL, "%s", r.out);
	h_run_free(&r);
	CLI(&r, "check", f, "--key", "paymnets/critcal");
	cr_expect(strstr(r.out, "[lane default] (implicit): YES: no other lane takes the key"), "%s", r.out);
	h_run_free(&r);
}

/* --------------------------------------------------------------- inspect */

Test(cli_inspect, run_says_what_it_cannot_route_and_strict_refuses, .init = mkdir_private,
     .fini = rm_private)
{
	struct h_run r;
	char st[400], gonote[400], go[400], cmd[1400];
	const char *src = file("st.c", "int main(void) { return 3; }\n", 0644);
	snprintf(st, sizeof(st), "%s/static", h_dir);
	const char *cc[] = {"cc", "-static", "-o", st, src, NULL};
	h_run_ok(&r, cc, NULL, 0, 20000);
	cr_assert_eq(r.status, 0, "cc -static: %s", r.err);
	h_run_free(&r);

	CLI(&r, "run", "--", st);
	cr_expect_eq(r.status, 3, "without --strict it runs (unrouted): %d", r.status);
	cr_expect(strstr(r.err, "warning:") && strstr(r.err, "statically linked"), "%s", r.err);
	h_run_free(&r);
	CLI(&r, "run", "--strict", "--", st);
	cr_expect_eq(r.status, 126, "%s", r.err);
	cr_expect(strstr(r.err, "error:") && strstr(r.err, "not running"), "%s", r.err);
	h_run_free(&r);

	/* a Go build id note (what `go build` writes), on a copy of true(1) */
	snprintf(gonote, sizeof(gonote), "%s", file("gonote", "Go\n", 0644));
	snprintf(go, sizeof(go), "%s/goprog", h_dir);
	snprintf(cmd, sizeof(cmd), "objcopy --add-section .note.go.buildid='%s' /bin/true '%s'", gonote, go);
	const char *sh[] = {"/bin/sh", "-c", cmd, NULL};
	h_run_ok(&r, sh, NULL, 0, 20000);
	cr_assert_eq(r.status, 0, "objcopy: %s", r.err);
	h_run_free(&r);
	CLI(&r, "run", "--strict", go);
	cr_expect_eq(r.status, 126);
	cr_expect(strstr(r.err, "is a Go program") != NULL, "%s", r.err);
	h_run_free(&r);
	CLI(&r, "doctor", go);
	cr_expect_eq(r.status, 1);
	cr_expect(strstr(r.out, "NOT ROUTED:") && strstr(r.out, "Go program"), "%s", r.out);
	h_run_free(&r);

	if (geteuid() == 0) {
		/* setuid to another user: secure execution for us */
		char su[400];
		snprintf(su, sizeof(su), "%s/suid", h_dir);
		snprintf(cmd, sizeof(cmd), "cp /bin/true '%s' && chown 65534 '%s' && chmod 4755 '%s'", su, su, su);
		const char *sh2[] = {"/bin/sh", "-c", cmd, NULL};
		h_run_ok(&r, sh2, NULL, 0, 20000);
		cr_assert_eq(r.status, 0, "%s", r.err);
		h_run_free(&r);
		CLI(&r, "run", "--strict", su);
		cr_expect_eq(r.status, 126);
		cr_expect(strstr(r.err, "secure execution") && strstr(r.err, "setuid"), "%s", r.err);
		h_run_free(&r);
	}
	/* a routable program runs with no word */
	CLI(&r, "run", "--strict", "--no-config", "/bin/true");
	cr_expect_eq(r.status, 0);
	cr_expect_str_empty(r.err, "%s", r.err);
	h_run_free(&r);
}

Test(cli_inspect, doctor_finds_libcurl_and_how)
{
	struct h_run r;
	CLI(&r, "doctor", "curl");
	cr_expect_eq(r.status, 0, "%s", r.err);
	cr_expect(strstr(r.out, "libcurl:") && strstr(r.out, "needed by the program itself"), "%s", r.out);
	h_run_free(&r);
	CLI(&r, "doctor", prog("curlprog"));
	cr_expect(strstr(r.out, "needed by the program itself") != NULL, "%s", r.out);
	h_run_free(&r);
	CLI(&r, "doctor", prog("sockprog"));
	cr_expect(strstr(r.out, "libcurl:      not in its needed libraries") != NULL, "%s", r.out);
	cr_expect(strstr(r.out, "raw sockets:  routed") != NULL, "%s", r.out);
	h_run_free(&r);
}

/* The parent of process PID (from /proc/PID/stat), -1 if unknown. */
static long parent_of(const char *pid)
{
	char path[300], buf[1024];
	snprintf(path, sizeof(path), "/proc/%s/stat", pid);
	FILE *f = fopen(path, "r");
	size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
	if (f)
		fclose(f);
	buf[n] = '\0';
	const char *p = strrchr(buf, ')'); /* the name may hold spaces and parentheses */
	long ppid = -1;
	if (!p || sscanf(p + 1, " %*c %ld", &ppid) != 1)
		return -1;
	return ppid;
}

/* The pid of the sockprog process with MARKER among its arguments (read
 * from /proc: a pgrep run by a shell would find the shell), 0 if none
 * appears within 5 s. Only this test's own children count: another run of
 * the suite on the same machine starts sockprogs with the same markers. */
static long find_pid(const char *marker)
{
	for (int i = 0; i < 500; i++) {
		DIR *d = opendir("/proc");
		struct dirent *e;
		long found = 0;
		while (d && !found && (e = readdir(d))) {
			char path[300], buf[4096];
			if (e->d_name[0] < '0' || e->d_name[0] > '9')
				continue;
			snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
			FILE *f = fopen(path, "r");
			size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
			if (f)
				fclose(f);
			buf[n] = '\0';
			const char *base = strrchr(buf, '/');
			if (n == 0 || strcmp(base ? base + 1 : buf, "sockprog") != 0)
				continue;
			for (size_t k = 0; k < n; k += strlen(buf + k) + 1)
				if (!strcmp(buf + k, marker) && parent_of(e->d_name) == (long)getpid())
					found = strtol(e->d_name, NULL, 10);
		}
		if (d)
			closedir(d);
		if (found)
			return found;
		h_sleep_ms(10);
	}
	return 0;
}

static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;
	cr_assert(fd >= 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	getsockname(fd, (struct sockaddr *)&a, &l);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

/* Waits (5 s) until `connroute stats --raw SPEC` answers. */
static void wait_endpoint(const char *spec)
{
	struct h_run r;
	for (int i = 0; i < 100; i++) {
		CLI(&r, "stats", "--raw", spec);
		int ok = r.status == 0;
		h_run_free(&r);
		if (ok)
			return;
		h_sleep_ms(50);
	}
	cr_assert_fail("%s never answered", spec);
}

Test(cli_inspect, doctor_of_a_pid_sees_the_shim_and_the_lanes, .init = h_start_plain, .fini = h_stop)
{
	struct h_bg b = {0};
	struct h_run r;
	char env[450], at[64], text[600], marker[64], pid[24];
	snprintf(text, sizeof(text), "[global]\nmetrics = unix:%s/m-%%p.sock\n%s", h_dir, conf_lanes);
	snprintf(env, sizeof(env), "CONNROUTE_CONFIG=%s", file("d.conf", text, 0644));
	snprintf(at, sizeof(at), "connect=a@127.0.0.1:%d", h_up.port);
	snprintf(marker, sizeof(marker), "sleep=2999");
	b.env[0] = env;
	b.env[1] = "CONNROUTE_KEY=pay/critical";
	const char *argv[] = {prog("sockprog"), "tcp=a", at, marker, NULL};
	memcpy(b.argv, argv, sizeof(argv));
	h_bg_start(&b);
	long p = find_pid(marker);
	cr_assert(p > 0);
	snprintf(pid, sizeof(pid), "%ld", p);
	/* its connect starts the endpoint: asked until it shows (it holds the
	 * connection 3 s), not after a fixed pause a loaded machine may outlast */
	const char *want = "lanes used:   critical (1 connections open";
	for (long long end = h_now_ms() + 10000;; h_sleep_ms(50)) {
		CLI(&r, "doctor", pid);
		if (strstr(r.out, want) || h_now_ms() > end || atomic_load(&b.finished))
			break;
		h_run_free(&r);
	}
	cr_expect_eq(r.status, 0, "%s\n%s", r.out, r.err);
	cr_expect(strstr(r.out, "shim:         loaded") != NULL, "%s", r.out);
	cr_expect(strstr(r.out, want) != NULL, "%s\n%s", r.out, r.err);
	h_run_free(&r);
	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	CLI(&r, "doctor", pid);
	cr_expect_eq(r.status, 1, "this test runs without the shim: %s", r.out);
	cr_expect(strstr(r.out, "NOT loaded") != NULL, "%s", r.out);
	h_run_free(&r);
	h_bg_wait(&b);
	h_run_free(&b.r);
}

/* -------------------------------------------------------------- endpoint */

Test(cli_endpoint, stats_and_reload_refuse_another_processs_endpoint, .init = h_start_plain, .fini = h_stop)
{
	struct h_bg a = {0}, b = {0};
	struct h_run r;
	char env[450], at[64], text[300], addr[64], pa[24], pb[24];
	int port = free_port();
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	snprintf(text, sizeof(text), "[global]\nmetrics = %s\n[lane default]\ntos = 0x20\n", addr);
	const char *cfg = file("same.conf", text, 0644);
	snprintf(env, sizeof(env), "CONNROUTE_CONFIG=%s", cfg);
	snprintf(at, sizeof(at), "connect=a@127.0.0.1:%d", h_up.port);
	const char *argva[] = {prog("sockprog"), "tcp=a", at, "sleep=6001", NULL};
	const char *argvb[] = {prog("sockprog"), "tcp=a", at, "sleep=6002", NULL};
	a.env[0] = b.env[0] = env;
	memcpy(a.argv, argva, sizeof(argva));
	memcpy(b.argv, argvb, sizeof(argvb));
	h_bg_start(&a);
	long pida = find_pid("sleep=6001");
	wait_endpoint(addr);
	h_bg_start(&b);
	long pidb = find_pid("sleep=6002");
	cr_assert(pida > 0 && pidb > 0);
	h_sleep_ms(300); /* B tried to bind, and could not */
	snprintf(pa, sizeof(pa), "%ld", pida);
	snprintf(pb, sizeof(pb), "%ld", pidb);

	CLI(&r, "stats", pb);
	cr_expect_eq(r.status, 1, "B's stats are not A's figures: %s", r.out);
	cr_expect(strstr(r.err, "is served by process") && strstr(r.err, pa), "%s", r.err);
	cr_expect_str_empty(r.out, "%s", r.out);
	h_run_free(&r);
	CLI(&r, "reload", pb);
	cr_expect_eq(r.status, 3, "%s %s", r.out, r.err);
	cr_expect(strstr(r.err, "nothing was reloaded") != NULL, "%s", r.err);
	cr_expect(strstr(r.out, "applied") == NULL, "%s", r.out);
	h_run_free(&r);
	CLI(&r, "stats", "--raw", addr);
	cr_expect(strstr(r.out, "connroute_config_reloads_total{result=\"ok\"} 0"), "A did not reload: %s", r.out);
	cr_expect(strstr(r.out, "connroute_build_info{version=\"") && strstr(r.out, pa), "%s", r.out);
	h_run_free(&r);

	CLI(&r, "stats", pa);
	cr_expect_eq(r.status, 0, "%s", r.err);
	cr_expect(strstr(r.out, "pid ") && strstr(r.out, pa), "%s", r.out);
	h_run_free(&r);
	CLI(&r, "stats", "--json", pa);
	cr_expect_eq(r.status, 0, "%s", r.err);
	char want[64];
	snprintf(want, sizeof(want), "{\"pid\":%s,\"version\":\"", pa);
	cr_expect(strncmp(r.out, want, strlen(want)) == 0 && strstr(r.out, "\"lanes\":[{\"lane\":\"default\""),
		  "%s", r.out);
	h_run_free(&r);
	CLI(&r, "reload", pa);
	cr_expect_eq(r.status, 0, "%s", r.err);
	cr_expect_str_eq(r.out, "unchanged\n", "a forced reload of the same file");
	h_run_free(&r);
	char tmp[400];
	snprintf(text, sizeof(text), "[global]\nmetrics = %s\n[lane x]\nconnect_timeout = 5\n", addr);
	cr_assert_eq(h_write_file(h_dir, "same.conf.new", text, tmp, sizeof(tmp)), 0);
	cr_assert_eq(rename(tmp, cfg), 0);
	CLI(&r, "reload", pa);
	cr_expect_eq(r.status, 1, "%s %s", r.out, r.err);
	cr_expect_str_eq(r.out, "rejected\n");
	h_run_free(&r);
	h_bg_wait(&a);
	h_bg_wait(&b);
	cr_expect(strstr(b.r.err, "Address already in use") || strstr(b.r.err, "in use"), "B said so: %s",
		  b.r.err);
	h_run_free(&a.r);
	h_run_free(&b.r);
}

/* ---------------------------------------------------------------- notices */

Test(cli_notice, info_once_per_lane_and_unmatched_key, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r;
	char env[450], at[3][64];
	snprintf(env, sizeof(env), "CONNROUTE_CONFIG=%s", file("n.conf", conf_lanes, 0644));
	for (int i = 0; i < 3; i++)
		snprintf(at[i], sizeof(at[i]), "connect=%c@127.0.0.1:%d", 'a' + i, h_up.port);
	const char *e[] = {env, "CONNROUTE_LOG=info", "CONNROUTE_KEY=paymnets/critcal", NULL};
	const char *argv[] = {"sockprog", "tcp=a", "tcp=b", "tcp=c", at[0], at[1], at[2], NULL};
	h_run_ok(&r, argv, e, 1, 20000);
	cr_expect_eq(r.status, 0, "%s", r.err);
	cr_expect_eq(count(r.err, "key 'paymnets/critcal' matches no lane"), 1, "%s", r.err);
	cr_expect_eq(count(r.err, "lane default: first use"), 1, "%s", r.err);
	h_run_free(&r);
	const char *e2[] = {env, NULL}; /* the default level: quiet */
	h_run_ok(&r, argv, e2, 1, 20000);
	cr_expect_str_empty(r.err, "%s", r.err);
	h_run_free(&r);
}

Test(cli_notice, first_eagain_refusal_is_a_warning, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r;
	char env[450], at[4][64];
	snprintf(env, sizeof(env), "CONNROUTE_CONFIG=%s",
		 file("l.conf", "[lane default]\nmax_conns_per_host = 1\nqueue_timeout = 200ms\n", 0644));
	for (int i = 0; i < 4; i++)
		snprintf(at[i], sizeof(at[i]), "connect=%c@127.0.0.1:%d", 'a' + i, h_up.port);
	const char *e[] = {env, NULL};
	const char *argv[] = {"sockprog", "tcp=a", "tcp=b", "tcp=c", "tcp=d", "nonblock=a", "nonblock=b",
			      "nonblock=c", "nonblock=d", at[0], at[1], at[2], at[3], NULL};
	h_run_ok(&r, argv, e, 1, 20000);
	cr_expect(strstr(r.out, "connect b err EAGAIN") != NULL, "%s", r.out);
	cr_expect_eq(count(r.err, "failed with EAGAIN"), 1, "once, at the default level: %s", r.err);
	cr_expect(strstr(r.err, "max_conns_per_host = 1") != NULL, "%s", r.err);
	h_run_free(&r);
}

/* ---------------------------------------------------------------- sysconf */

/* The test build of the shim (Makefile: $(B)/sysconf/libconnroute.so) looks
 * for the system file at $(B)/sysconf/connroute.conf instead of /etc. */
Test(cli_sysconf, system_file_used_when_unset_exists_and_trusted, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r;
	char lib[450], sys[450], pre[500], at[64], cwdconf[400], cmd[2000];
	snprintf(lib, sizeof(lib), "%s/sysconf/libconnroute.so", h_build());
	snprintf(sys, sizeof(sys), "%s/sysconf/connroute.conf", h_build());
	snprintf(pre, sizeof(pre), "LD_PRELOAD=%s", lib);
	snprintf(at, sizeof(at), "connect=a@127.0.0.1:%d", h_up.port);
	unsetenv("CONNROUTE_CONFIG");
	const char *argv[] = {"sockprog", "tcp=a", at, "opts=a", NULL};
	const char *e[] = {pre, NULL};

	unlink(sys);
	h_run_ok(&r, argv, e, 0, 20000);
	cr_expect(strstr(r.out, "tos=0 ") != NULL, "no system file: no config: %s", r.out);
	cr_expect_str_empty(r.err, "%s", r.err);
	h_run_free(&r);

	FILE *f = fopen(sys, "w");
	cr_assert(f);
	fputs("[lane default]\ntos = 0x20\n", f);
	fclose(f);
	chmod(sys, 0644);
	h_run_ok(&r, argv, e, 0, 20000);
	cr_expect(strstr(r.out, "tos=32 ") != NULL, "the system file applies: %s %s", r.out, r.err);
	h_run_free(&r);

	const char *e2[] = {pre, "CONNROUTE_CONFIG=", NULL};
	h_run_ok(&r, argv, e2, 0, 20000);
	cr_expect(strstr(r.out, "tos=0 ") != NULL, "CONNROUTE_CONFIG= (empty) opts out: %s", r.out);
	h_run_free(&r);

	/* never the current directory: a connroute.conf there is not read */
	unlink(sys);
	snprintf(cwdconf, sizeof(cwdconf), "%s", file("connroute.conf", "[lane default]\ntos = 0x20\n", 0644));
	snprintf(cmd, sizeof(cmd), "cd '%s' && exec env '%s' '%s' tcp=a '%s' opts=a", h_dir, pre, prog("sockprog"),
		 at);
	const char *sh[] = {"/bin/sh", "-c", cmd, NULL};
	h_run_ok(&r, sh, NULL, 0, 20000);
	cr_expect(strstr(r.out, "tos=0 ") != NULL, "the current directory is never looked at: %s", r.out);
	h_run_free(&r);

	if (geteuid() == 0) {
		f = fopen(sys, "w");
		cr_assert(f);
		fputs("[lane default]\ntos = 0x20\n", f);
		fclose(f);
		chmod(sys, 0666);
		h_run_ok(&r, argv, e, 0, 20000);
		cr_expect(strstr(r.out, "tos=0 ") != NULL, "an untrusted system file is not used: %s", r.out);
		cr_expect(strstr(r.err, "writable by every user") && strstr(r.err, "not used"), "%s", r.err);
		h_run_free(&r);
	}
	unlink(sys);
}
