/* Secure execution: a setuid program run by an unprivileged user must never be steered by
 * that user's environment (docs/INTERNALS.md "Reliability", README "Environment").
 *
 * Setuid-root copies of tests/progs/sockprog and of cat(1) are made in a 0755 temp dir and
 * run as nobody (setpriv --reuid=65534 --regid=65534 --clear-groups, else su), so the kernel
 * sets AT_SECURE. The environment is handed over by env(1) *after* the switch, so only the
 * setuid program sees LD_PRELOAD and the CONNROUTE_* variables. Two ways the shim could get
 * in:
 *   (a) LD_PRELOAD=<build>/libconnroute.so (a path): glibc drops it for secure programs;
 *       cat /proc/self/maps shows no libconnroute, the config (max_conns_per_host = 1,
 *       priority = 5) has no effect, no log file appears;
 *   (b) a copy of the shim in a trusted system directory with the setuid bit, preloaded by
 *       bare name: glibc loads it (maps shows it), and the shim then ignores every
 *       CONNROUTE_* variable: pass-through, the limit of 1 does not limit, no log file.
 * Each is checked against a control run of the same setuid binary started by root (no
 * AT_SECURE), where the same environment does apply: otherwise "nothing happened" would
 * prove nothing. The copy in the system directory is removed right after use and again in
 * .fini. Needs root and a setuid-capable file system; skips otherwise. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static struct h_upstream up;
static char dir[256];           /* 0755, root: the setuid copies, the config */
static char sockprog_suid[320], cat_suid[320], conf_path[320], log_path[320];
static char syscopy[PATH_MAX];  /* the shim copied into a trusted directory, when made */
static char syscopy_name[64];

static int copy_file(const char *from, const char *to, mode_t mode)
{
	int in = open(from, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return -1;
	int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0700);
	if (out < 0) {
		close(in);
		return -1;
	}
	char buf[65536];
	int ok = 1;
	for (int i = 0; i < 100000; i++) {
		ssize_t n = read(in, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ok = 0;
			break;
		}
		if (n == 0)
			break;
		if (write(out, buf, (size_t)n) != n) {
			ok = 0;
			break;
		}
	}
	close(in);
	if (close(out) != 0 || !ok)
		return -1;
	/* chown first: chown clears the setuid bit */
	if (chown(to, 0, 0) != 0 || chmod(to, mode) != 0)
		return -1;
	return 0;
}

static void remove_syscopy(void)
{
	if (syscopy[0]) {
		unlink(syscopy);
		syscopy[0] = '\0';
	}
}

static void setup(void)
{
	if (geteuid() != 0)
		cr_skip_test("needs root (setuid copies, a trusted system directory)");
	char *st = h_read_file("/proc/self/status");
	int nnp = st && strstr(st, "\nNoNewPrivs:\t1") != NULL;
	free(st);
	if (nnp)
		cr_skip_test("no_new_privs is set: setuid bits are not honoured here");
	snprintf(dir, sizeof(dir), "/tmp/cr-secure-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(chmod(dir, 0755), 0);
	snprintf(sockprog_suid, sizeof(sockprog_suid), "%s/sockprog-suid", dir);
	snprintf(cat_suid, sizeof(cat_suid), "%s/cat-suid", dir);
	snprintf(conf_path, sizeof(conf_path), "%s/connroute.conf", dir);
	snprintf(log_path, sizeof(log_path), "%s/shim.log", dir);
	char src[PATH_MAX];
	snprintf(src, sizeof(src), "%s/progs/sockprog", h_build());
	cr_assert_eq(copy_file(src, sockprog_suid, 04755), 0, "%s: %s", src, strerror(errno));
	const char *cat = access("/usr/bin/cat", X_OK) == 0 ? "/usr/bin/cat" : "/bin/cat";
	cr_assert_eq(copy_file(cat, cat_suid, 04755), 0, "%s: %s", cat, strerror(errno));
	/* the lane a routed connect would get: one connection per destination, SO_PRIORITY 5 */
	cr_assert_eq(h_write_file(dir, "connroute.conf",
				  "[lane default]\nmax_conns_per_host = 1\nqueue_timeout = 200ms\n"
				  "priority = 5\n",
				  NULL, 0),
		     0);
	cr_assert_eq(h_upstream_start(&up, NULL), 0);
}

static void teardown(void)
{
	remove_syscopy();
	h_upstream_stop(&up);
	if (dir[0]) {
		unlink(sockprog_suid);
		unlink(cat_suid);
		unlink(conf_path);
		unlink(log_path);
		rmdir(dir);
	}
}

/* argv for running PROG ARGS... as nobody with ENV (NULL-terminated "K=V") set only for
 * PROG, or as root when !as_nobody. Returns the count. */
static int build_argv(const char **argv, int as_nobody, const char *const *env, const char *prog,
		      const char *const *args)
{
	int n = 0;
	if (as_nobody) {
		if (access("/usr/bin/setpriv", X_OK) == 0) {
			argv[n++] = "/usr/bin/setpriv";
			argv[n++] = "--reuid=65534";
			argv[n++] = "--regid=65534";
			argv[n++] = "--clear-groups";
			argv[n++] = "--";
		} else {
			argv[n++] = "su";
			argv[n++] = "nobody";
			argv[n++] = "-s";
			argv[n++] = "/bin/sh";
			argv[n++] = "-c";
			argv[n++] = "exec \"$0\" \"$@\"";
		}
	}
	argv[n++] = "/usr/bin/env";
	for (int i = 0; env && env[i]; i++)
		argv[n++] = env[i];
	argv[n++] = prog;
	for (int i = 0; args && args[i]; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	return n;
}

static void run_as(struct h_run *r, int as_nobody, const char *preload, const char *prog,
		   const char *const *args)
{
	char pre[PATH_MAX + 16], cfg[400], lf[400];
	snprintf(pre, sizeof(pre), "LD_PRELOAD=%s", preload);
	snprintf(cfg, sizeof(cfg), "CONNROUTE_CONFIG=%s", conf_path);
	snprintf(lf, sizeof(lf), "CONNROUTE_LOG_FILE=%s", log_path);
	const char *env[] = {pre, cfg, lf, "CONNROUTE_LOG=debug", "CONNROUTE_KEY=secure/test", NULL};
	const char *argv[64];
	build_argv(argv, as_nobody, env, prog, args);
	unlink(log_path);
	cr_assert_eq(h_run(r, argv, NULL, 0, 30000), 0, "could not run %s", prog);
	cr_assert_eq(r->timed_out, 0, "%s hung: %s\n%s", prog, r->out, r->err);
}

/* The setuid bit took effect for nobody: real uid 65534, effective 0. */
static void require_setuid_works(void)
{
	struct h_run r;
	const char *args[] = {"/proc/self/status", NULL};
	const char *argv[32];
	build_argv(argv, 1, NULL, cat_suid, args);
	cr_assert_eq(h_run(&r, argv, NULL, 0, 30000), 0);
	int ok = r.status == 0 && strstr(r.out, "\nUid:\t65534\t0\t0\t0") != NULL;
	if (!ok) {
		char why[200];
		snprintf(why, sizeof(why), "setuid is not honoured for nobody here (status %d)", r.status);
		h_run_free(&r);
		cr_skip_test("%s", why);
	}
	h_run_free(&r);
}

static const char *const limit_steps_fmt[] = {"tcp=a", "tcp=b", NULL};

/* sockprog: two connects to the upstream (the second waits for the limit of 1 and fails
 * after 200 ms when the lane applies), then the first socket's options. */
static void sockprog_args(const char **args, char *ca, char *cb, size_t n)
{
	snprintf(ca, n, "connect=a@127.0.0.1:%d", up.port);
	snprintf(cb, n, "connect=b@127.0.0.1:%d", up.port);
	int k = 0;
	for (int i = 0; limit_steps_fmt[i]; i++)
		args[k++] = limit_steps_fmt[i];
	args[k++] = ca;
	args[k++] = cb;
	args[k++] = "opts=a";
	args[k] = NULL;
}

static int file_exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0;
}

/* What a routed and an unrouted run look like. */
static void expect_routed(const struct h_run *r, const char *what)
{
	cr_expect(strstr(r->out, "connect b err ETIMEDOUT") != NULL, "%s: the limit of 1 did not apply:\n%s%s",
		  what, r->out, r->err);
	cr_expect(strstr(r->out, "priority=5") != NULL, "%s: SO_PRIORITY not set:\n%s", what, r->out);
	cr_expect(file_exists(log_path), "%s: the shim wrote no log line", what);
}

static void expect_unrouted(const struct h_run *r, const char *what)
{
	cr_expect(strstr(r->out, "connect a ok") != NULL, "%s:\n%s%s", what, r->out, r->err);
	cr_expect(strstr(r->out, "connect b ok") != NULL, "%s: limited although secure:\n%s%s", what,
		  r->out, r->err);
	cr_expect(strstr(r->out, "priority=0") != NULL, "%s: lane options applied:\n%s", what, r->out);
	cr_expect(!file_exists(log_path), "%s: CONNROUTE_LOG_FILE was honoured", what);
	cr_expect(strstr(r->err, "connroute") == NULL, "%s: the shim spoke:\n%s", what, r->err);
}

Test(secure_execution, loader_drops_a_preload_given_by_path, .init = setup, .fini = teardown, .timeout = 60)
{
	require_setuid_works();
	char shim[PATH_MAX], ca[64], cb[64];
	snprintf(shim, sizeof(shim), "%s/libconnroute.so", h_build());
	const char *args[16];
	sockprog_args(args, ca, cb, sizeof(ca));
	const char *maps[] = {"/proc/self/maps", NULL};
	struct h_run r;

	/* control: root runs the same setuid binary (no AT_SECURE): the shim routes */
	run_as(&r, 0, shim, sockprog_suid, args);
	expect_routed(&r, "root");
	h_run_free(&r);
	run_as(&r, 0, shim, cat_suid, maps);
	cr_expect(strstr(r.out, "libconnroute.so") != NULL, "root: not preloaded?\n%s", r.out);
	h_run_free(&r);

	/* nobody: glibc drops a preload with a '/' for a setuid program */
	run_as(&r, 1, shim, cat_suid, maps);
	cr_expect_eq(r.status, 0, "%s", r.err);
	cr_expect(strstr(r.out, "libconnroute") == NULL, "secure: the loader kept the preload:\n%s", r.out);
	h_run_free(&r);
	run_as(&r, 1, shim, sockprog_suid, args);
	expect_unrouted(&r, "secure, preload by path");
	h_run_free(&r);
}

/* The standard directory glibc trusts for secure preloads on this system. */
static const char *trusted_dir(void)
{
	static const char *const dirs[] = {"/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu",
					   "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", NULL};
	for (int i = 0; dirs[i]; i++) {
		struct stat st;
		if (stat(dirs[i], &st) == 0 && S_ISDIR(st.st_mode))
			return dirs[i];
	}
	return NULL;
}

Test(secure_execution, setuid_shim_in_a_trusted_dir_loads_and_ignores_the_environment, .init = setup,
     .fini = teardown, .timeout = 60)
{
	require_setuid_works();
	const char *td = trusted_dir();
	if (!td)
		cr_skip_test("no standard library directory found");
	snprintf(syscopy_name, sizeof(syscopy_name), "libconnroute-test-%d.so", (int)getpid());
	snprintf(syscopy, sizeof(syscopy), "%s/%s", td, syscopy_name);
	char shim[PATH_MAX];
	snprintf(shim, sizeof(shim), "%s/libconnroute.so", h_build());
	if (copy_file(shim, syscopy, 04755) != 0) {
		int e = errno;
		remove_syscopy();
		cr_skip_test("cannot place a copy in %s: %s", td, strerror(e));
	}
	char ca[64], cb[64];
	const char *args[16];
	sockprog_args(args, ca, cb, sizeof(ca));
	const char *maps[] = {"/proc/self/maps", NULL};
	struct h_run r;

	/* control: root, the copy preloaded by its bare name, routes */
	run_as(&r, 0, syscopy_name, sockprog_suid, args);
	expect_routed(&r, "root, trusted copy");
	h_run_free(&r);

	/* nobody: the loader accepts the setuid copy from a trusted directory ... */
	run_as(&r, 1, syscopy_name, cat_suid, maps);
	cr_expect(strstr(r.out, syscopy_name) != NULL, "secure: the trusted setuid copy was not loaded:\n%s%s",
		  r.out, r.err);
	h_run_free(&r);
	/* ... and the shim ignores every CONNROUTE_* variable: pass-through */
	run_as(&r, 1, syscopy_name, sockprog_suid, args);
	expect_unrouted(&r, "secure, trusted setuid copy");
	h_run_free(&r);

	remove_syscopy();
	cr_expect(!file_exists(syscopy), "the copy in %s must be gone", td);
}
