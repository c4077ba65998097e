/* Integration tests of connroute's own long-lived fds (lib/ownfd.h; docs/INTERNALS.md, "Warm
 * pools: what the tests verify" and "Metrics and reload"): warm sockets, the metrics listener and its client live at or above a
 * high floor (RLIMIT_NOFILE soft / 2, at most 4096), warm pools stand back when the limit is
 * tiny, and a number of ours that the program closed and reused is never read, kept or
 * closed. The program is tests/progs/fdprog (unmodified, counts on fd numbers); everything is
 * judged from outside: its exit status and output, its files, /proc/PID/fd while it waits,
 * and what the test upstream counted.
 *
 * Each test sets RLIMIT_NOFILE in its own (Criterion worker) process, so the program run
 * under it inherits exactly that limit. Programs that wait for the test meet it through
 * files in the upstream's temp dir: fdprog writes DIR/ready, the test writes DIR/go.
 * The warm pool fills only after the process's first routed connect; fdprog's "kick" is a
 * connect to the upstream's control port (never counted). */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

/* The soft RLIMIT_NOFILE of this test process, which the program inherits. */
static void set_nofile(rlim_t n)
{
	struct rlimit rl;
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < n)
		cr_skip_test("the hard RLIMIT_NOFILE (%lu) is below %lu", (unsigned long)rl.rlim_max,
			     (unsigned long)n);
	rl.rlim_cur = n;
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
}

static const char *num(int n)
{
	static char b[8][16];
	static int i;
	char *s = b[i++ % 8];
	snprintf(s, 16, "%d", n);
	return s;
}

static void put(const char *name)
{
	cr_assert_eq(h_write_file(h_dir, name, "", NULL, 0), 0);
}

/* Waits (timeout_ms) for DIR/NAME; its contents (malloc'd), NULL on timeout or when
 * *GONE (the program exited) becomes set. */
static char *await(const char *name, int timeout_ms, atomic_int *gone)
{
	char path[400];
	snprintf(path, sizeof(path), "%s/%s", h_dir, name);
	for (long long end = h_now_ms() + timeout_ms; h_now_ms() < end; h_sleep_ms(10)) {
		int last = atomic_load(gone);
		if (access(path, F_OK) == 0)
			return h_read_file(path);
		if (last)
			break;
	}
	return NULL;
}

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof(a);
	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &l), 0);
	close(fd);
	return ntohs(a.sin_port);
}

/* ------------------------------------------------------------------- /proc */

/* The socket fds of PID with their numbers: fds[i] has inode inos[i]. Returns the count. */
static int socket_fds(long pid, int *fds, unsigned long *inos, int max)
{
	char path[64], link[128], ent[400];
	snprintf(path, sizeof(path), "/proc/%ld/fd", pid);
	DIR *d = opendir(path);
	cr_assert_not_null(d, "%s: %s", path, strerror(errno));
	struct dirent *e;
	int n = 0;
	while ((e = readdir(d)) && n < max) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(ent, sizeof(ent), "%s/%s", path, e->d_name);
		ssize_t k = readlink(ent, link, sizeof(link) - 1);
		if (k <= 0)
			continue;
		link[k] = '\0';
		unsigned long ino;
		if (sscanf(link, "socket:[%lu]", &ino) == 1) {
			fds[n] = atoi(e->d_name);
			inos[n++] = ino;
		}
	}
	closedir(d);
	return n;
}

/* The inode of the TCP socket on 127.0.0.1 whose local port is LPORT and peer port RPORT
 * (/proc/net/tcp), 0 if none. */
static unsigned long tcp_inode(int lport, int rport)
{
	FILE *f = fopen("/proc/net/tcp", "r");
	cr_assert_not_null(f);
	char line[512];
	unsigned long found = 0;
	while (!found && fgets(line, sizeof(line), f)) {
		unsigned la, lp, ra, rp, st;
		unsigned long ino;
		if (sscanf(line, " %*d: %8X:%4X %8X:%4X %2X %*s %*s %*s %*d %*d %lu", &la, &lp, &ra, &rp, &st,
			   &ino) == 6 &&
		    (int)lp == lport && (int)rp == rport)
			found = ino;
	}
	fclose(f);
	return found;
}

/* ---------------------------------------------------------------------- tests */

/* A daemon's idiom: close(0) and close(1), reopen them (/dev/null, a log) and count on getting
 * 0 and 1 back. A warm socket made meanwhile (the pool refills behind the program's connect,
 * made while 0 and 1 were free) must not take those numbers: with the limit at 1024, every
 * socket of the process but the program's own is at 512 or above. The log line lands in the
 * log, never on a warm connection (the server sees one request, no bad one). */
Test(ownfd, warm_sockets_never_take_the_numbers_a_program_reopens, .init = h_start_plain, .fini = h_stop)
{
	set_nofile(1024);
	char conf[256], log[400];
	snprintf(conf, sizeof(conf), "[lane default]\nprewarm = 127.0.0.1:%d*4\n", h_up.port);
	snprintf(log, sizeof(log), "%s/app.log", h_dir);
	struct h_bg b = {.timeout_ms = 60000};
	b.env[0] = h_config(conf);
	const char *argv[] = {"fdprog", "lowfds", num(h_up.control_port), num(h_up.port), log, h_dir, NULL};
	memcpy(b.argv, argv, sizeof(argv));
	h_bg_start(&b);

	char *ready = await("ready", 15000, &b.finished);
	long pid = 0;
	int a = -1;
	if (ready)
		sscanf(ready, "%ld %d", &pid, &a);
	free(ready);
	int fds[256], low = 0, high = 0;
	unsigned long inos[256];
	char lows[512] = "";
	if (pid > 0) {
		int n = socket_fds(pid, fds, inos, 256);
		for (int i = 0; i < n; i++) {
			if (fds[i] == a)
				continue;
			if (fds[i] >= 512) {
				high++;
			} else {
				low++;
				snprintf(lows + strlen(lows), sizeof(lows) - strlen(lows), " %d", fds[i]);
			}
		}
	}
	put("go");
	h_bg_join(&b);
	cr_assert_gt(pid, 0, "the program never got ready: %s", b.r.err);
	cr_expect_eq(low, 0, "sockets of connroute's below the floor 512, at:%s", lows);
	cr_expect_eq(high, 4, "the warm pool (4 sockets at 512 or above)");
	cr_expect_eq(b.r.status, 0, "%s%s", b.r.out, b.r.err);
	cr_expect(strstr(b.r.err, "stdin=0 log=1 ") == b.r.err && strstr(b.r.err, " get=200\n") &&
			  !strchr(b.r.err, '\n')[1],
		  "the program got other numbers: %s", b.r.err);
	char *text = h_read_file(log);
	cr_expect_str_eq(text ? text : "(none)", "fdprog: a log line\n");
	free(text);
	h_run_free(&b.r);
	/* Every connection closed (the program exited): whatever it sent has been read. */
	cr_expect_eq(h_wait_stat(&h_up, "open", 0, 5000), 0);
	cr_expect_eq(h_stat(&h_up, "requests"), 1, "the program's one GET, nothing else");
	cr_expect_eq(h_stat(&h_up, "bad_requests"), 0, "garbage reached the server");
}

/* `ulimit -n 64`: too small to share. A program with a warm lane that opens files until
 * EMFILE gets exactly as many as without the shim (no warm socket holds a number), and its
 * later connect works. */
Test(ownfd, ulimit_64_emfile_count_as_without_the_shim, .init = h_start_plain, .fini = h_stop)
{
	set_nofile(64);
	char conf[256];
	snprintf(conf, sizeof(conf), "[lane default]\nprewarm = 127.0.0.1:%d*4\n", h_up.port);
	const char *env[] = {h_config(conf), NULL};
	const char *argv[] = {"fdprog", "emfile", num(h_up.control_port), num(h_up.port), NULL};
	struct h_run base, r;
	cr_assert_eq(h_run(&base, argv, NULL, 0, 30000), 0);
	cr_assert_eq(h_run(&r, argv, env, 1, 30000), 0);
	cr_expect_eq(base.status, 0, "%s%s", base.out, base.err);
	cr_expect(strstr(base.out, " err=EMFILE\nget 200\n") != NULL, "without the shim: %s", base.out);
	cr_expect_str_eq(r.out, base.out, "with the shim:\n%swithout:\n%s", r.out, base.out);
	cr_expect_eq(r.status, base.status, "%s", r.err);
	h_run_free(&base);
	h_run_free(&r);
}

/* Warm connects that never complete (their SYNs dropped: the server's accept queue is full)
 * are pending when the program closes every fd from 3 up and dup2s one file onto 3..700.
 * Past the warm connect timeout (1 s) every one of those numbers is still the file: the
 * pending connect's number, now the program's, is never read nor closed. */
static void pending_case(const char *how)
{
	const char *args[] = {"--no-accept", "--backlog", "0", NULL};
	cr_assert_eq(h_upstream_start(&h_up, args), 0);
	snprintf(h_dir, sizeof(h_dir), "%s", h_up.dir);
	int q[4];
	int nq = h_fill_backlog(&h_up, q, 4);
	cr_assert_geq(nq, 1, "no connect to the full backlog hung");
	set_nofile(1024);
	char conf[256];
	snprintf(conf, sizeof(conf), "[lane default]\nprewarm = 127.0.0.1:%d*4\nconnect_timeout = 1s\n",
		 h_up.port);
	const char *env[] = {h_config(conf), NULL};
	const char *argv[] = {"fdprog", "pending", num(h_up.control_port), how, NULL};
	struct h_run r;
	cr_assert_eq(h_run(&r, argv, env, 1, 30000), 0);
	cr_expect_eq(r.timed_out, 0);
	cr_expect_eq(r.status, 0, "%s%s", r.out, r.err);
	cr_expect_str_eq(r.out, "intact 3..700\n");
	h_run_free(&r);
	for (int i = 0; i < nq; i++)
		close(q[i]);
	h_upstream_stop(&h_up);
}

Test(ownfd, pending_warm_connects_and_closefrom)
{
	pending_case("closefrom");
}

Test(ownfd, pending_warm_connects_and_close_range)
{
	pending_case("close_range");
}

Test(ownfd, pending_warm_connects_and_a_raw_close_range_syscall)
{
	pending_case("sys_close_range");
}

/* A full request to the metrics endpoint on 127.0.0.1:PORT: the status, -1 if none. */
static int scrape_status(int port)
{
	int fd = h_connect("127.0.0.1", port, 2000);
	if (fd < 0)
		return -1;
	int st = -1;
	if (h_sock_http(fd, "GET", "/metrics", NULL, NULL, &st, NULL) != 0)
		st = -1;
	close(fd);
	return st;
}

static int await_scrape(int port, int timeout_ms)
{
	int st = -1;
	for (long long end = h_now_ms() + timeout_ms; h_now_ms() < end && st != 200; h_sleep_ms(50))
		st = scrape_status(port);
	return st;
}

/* Issue 17 item 6. A metrics client sends half a request and waits; meanwhile the program
 * closes every fd from 3 up and dup2s a file onto 3..700 (one of which was the client's
 * number). The endpoint never reads, writes or closes that number: after 3 s every number
 * still is the file, each took its line, the file holds exactly those lines, and the program
 * exits 0 (no SIGPIPE). The listener, closed by the program too, is made anew: a full request
 * is answered afterwards. */
Test(ownfd, metrics_client_and_closefrom, .init = h_start_plain, .fini = h_stop)
{
	set_nofile(1024);
	int mport = free_port();
	char conf[256], out[400];
	/* A lane with something to apply: a passthrough lane's connect is not routed, and the
	 * endpoint starts with the first routed call. */
	snprintf(conf, sizeof(conf), "[global]\nmetrics = 127.0.0.1:%d\n[lane default]\nconnect_timeout = 5s\n",
		 mport);
	snprintf(out, sizeof(out), "%s/out.txt", h_dir);
	struct h_bg b = {.timeout_ms = 60000};
	b.env[0] = h_config(conf);
	const char *argv[] = {"fdprog", "metrics", num(h_up.control_port), out, h_dir, NULL};
	memcpy(b.argv, argv, sizeof(argv));
	h_bg_start(&b);

	char *ready = await("ready", 15000, &b.finished);
	long pid = ready ? atol(ready) : 0;
	free(ready);
	if (pid <= 0) {
		put("go");
		put("exit");
		h_bg_join(&b);
		cr_assert_fail("the program never got ready: %s", b.r.err);
	}
	cr_expect_eq(await_scrape(mport, 10000), 200, "the metrics endpoint never answered");

	/* Half a request; then wait until the program holds the accepted socket. */
	int c = h_connect("127.0.0.1", mport, 5000);
	cr_assert_geq(c, 0);
	const char *half = "GET /metrics HTTP/1.0\r\n";
	cr_assert_eq(write(c, half, strlen(half)), (ssize_t)strlen(half));
	struct sockaddr_in me;
	socklen_t ml = sizeof(me);
	cr_assert_eq(getsockname(c, (struct sockaddr *)&me, &ml), 0);
	int cfd = -1;
	for (long long end = h_now_ms() + 3000; h_now_ms() < end && cfd < 0; h_sleep_ms(10)) {
		unsigned long ino = tcp_inode(mport, ntohs(me.sin_port));
		int fds[256];
		unsigned long inos[256];
		int n = ino ? socket_fds(pid, fds, inos, 256) : 0;
		for (int i = 0; i < n; i++)
			if (inos[i] == ino)
				cfd = fds[i];
	}
	put("go");
	char *done = await("done", 15000, &b.finished);
	int st = await_scrape(mport, 5000);
	put("exit");
	h_bg_join(&b);
	cr_expect_geq(cfd, 0, "the endpoint never accepted the half request");
	cr_expect_str_eq(done ? done : "(none)", "ok\n", "the program's numbers (client at fd %d)", cfd);
	free(done);
	cr_expect_eq(st, 200, "the endpoint did not listen again after the program closed its listener");
	cr_expect_eq(b.r.status, 0, "exit status %d (128+13: SIGPIPE; client at fd %d): %s%s", b.r.status, cfd,
		     b.r.out, b.r.err);
	cr_expect_str_eq(b.r.out, "intact 3..700\n");
	/* Exactly "fd 3\n" .. "fd 700\n": nothing of the endpoint's, nothing lost. */
	char *text = h_read_file(out);
	cr_assert_not_null(text);
	const char *p = text;
	int whole = 1;
	for (int n = 3; n <= 700 && whole; n++) {
		char line[32];
		int k = snprintf(line, sizeof(line), "fd %d\n", n);
		if (strncmp(p, line, (size_t)k) != 0) {
			cr_expect_fail("the file's line for fd %d is not there; from there on it holds: %.200s", n,
				       p);
			whole = 0;
		} else {
			p += k;
		}
	}
	if (whole)
		cr_expect_str_empty(p, "extra bytes at the end: %.200s", p);
	free(text);
	close(c);
	h_run_free(&b.r);
}
