/* Integration tests of host-visible defects (second list), each observed from outside an
 * unmodified program (tests/progs/h2_*) under the shim: its exit status and output, what
 * the test upstream or a server in this test counted, and the files it left on disk.
 *   - a config file is watched even when no lane routes the program's connects;
 *   - lane ids are never shared by two lanes, however many names reloads brought;
 *   - warm substitution keeps a signal-driven socket's owner and signal (F_SETOWN, F_SETSIG);
 *   - a fork child does not serve metrics at its parent's address, and leaves no socket file;
 *   - adaptive preconnect stops for a server whose warm sockets are never used.
 * Every program runs with a timeout; every wait is bounded; loopback only. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static char cfgpath[400];
static char cfgenv[450];

static void start(void)
{
	h_start_plain();
	snprintf(cfgpath, sizeof(cfgpath), "%s/connroute.conf", h_dir);
	snprintf(cfgenv, sizeof(cfgenv), "CONNROUTE_CONFIG=%s", cfgpath);
}

/* Writes the config as a deployment would: a new file renamed over the old one. */
static void write_config(const char *text)
{
	char tmp[450];
	cr_assert_eq(h_write_file(h_dir, "connroute.conf.new", text, tmp, sizeof(tmp)), 0);
	cr_assert_eq(rename(tmp, cfgpath), 0);
}

/* Creates DIR/NAME (the programs' waitfile steps look for it). */
static void touch(const char *name)
{
	cr_assert_eq(h_write_file(h_dir, name, "", NULL, 0), 0);
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

static char step_buf[64][96];
static int step_i;

/* printf into a step buffer that lives as long as the test. */
__attribute__((format(printf, 1, 2))) static const char *stepf(const char *fmt, ...)
{
	char *b = step_buf[step_i++ % 64];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(b, 96, fmt, ap);
	va_end(ap);
	return b;
}

/* ------------------------------------------------------------------- the CLI */

static const char *cli(void)
{
	static char p[400];
	snprintf(p, sizeof(p), "%s/connroute", h_build());
	return p;
}

#define CLI(r, ...)                                                                  \
	do {                                                                         \
		const char *argv_[] = {cli(), __VA_ARGS__, NULL};                    \
		cr_assert_eq(h_run((r), argv_, NULL, 0, 20000), 0);                  \
		cr_assert_eq((r)->timed_out, 0, "connroute %s hung", argv_[1]);      \
	} while (0)

/* Waits (10 s) for a file DIR/PREFIX<pid>.sock; returns the pid, fills PATH. */
static long wait_socket(const char *prefix, char *path, size_t n)
{
	size_t pl = strlen(prefix);
	for (int i = 0; i < 1000; i++) {
		DIR *d = opendir(h_dir);
		struct dirent *e;
		long pid = 0;
		while (d && (e = readdir(d)))
			if (!strncmp(e->d_name, prefix, pl) && strstr(e->d_name, ".sock")) {
				int w = snprintf(path, n, "%s/%s", h_dir, e->d_name);
				if (w > 0 && (size_t)w < n)
					pid = strtol(e->d_name + pl, NULL, 10);
			}
		if (d)
			closedir(d);
		if (pid > 0)
			return pid;
		h_sleep_ms(10);
	}
	cr_assert_fail("no metrics socket %s* appeared in %s", prefix, h_dir);
	return -1;
}

/* ------------------------------------------------ 1. a pass-through config is watched */

/* No [lane default], and the one lane is never chosen by the program's key: every connect
 * goes through untouched. The file is still the program's config: replaced (atomic rename)
 * with one whose lane default allows one connection per destination, it applies within
 * seconds, without any connect ever having been routed. (Before: the file was watched only
 * from the first routed connect, i.e. never.) */
Test(hosts2, passthrough_config_is_still_watched, .init = start, .fini = h_stop)
{
	struct h_bg b = {0};
	write_config("[lane other]\nmatch = other/*\nmax_conns_per_host = 1\n");
	b.env[0] = cfgenv;
	int i = 0;
	b.argv[i++] = "h2_prog";
	b.argv[i++] = "tcp=a";
	b.argv[i++] = stepf("connect=a@127.0.0.1:%d", h_up.port);
	b.argv[i++] = "close=a";
	b.argv[i++] = stepf("waitfile=%s/go", h_dir);
	b.argv[i++] = stepf("limitprobe=127.0.0.1:%d:5000", h_up.port);
	b.argv[i] = NULL;
	h_bg_start(&b);

	/* After its first connect (the server saw it), the file is replaced. */
	long acc = h_wait_stat(&h_up, "accepted", 1, 10000);
	write_config("[lane default]\nmax_conns_per_host = 1\n");
	touch("go");
	h_bg_join(&b);
	cr_log_info("pass-through config: %s", b.r.out);
	cr_expect_eq(acc, 1, "the program's first connect did not arrive: %s", b.r.out);
	cr_expect(strstr(b.r.out, "connect a ok") != NULL, "%s", b.r.out);
	cr_expect(strstr(b.r.out, "limitprobe eagain after") != NULL,
		  "the new file was not applied within 5 s (no limit on the second connect):\n%s\n%s", b.r.out,
		  b.r.err);
	cr_expect_eq(b.r.status, 0, "%s", b.r.err);
	h_run_free(&b.r);
}

/* ------------------------------------------------------- 2. lane ids are never shared */

static void lanes_config(char *out, size_t n, const char *lanes)
{
	snprintf(out, n,
		 "[global]\nmetrics = unix:%s/m-%%p.sock\n[threads]\ntx = x\nty = y\n%s"
		 "[lane default]\nmax_conns_per_host = 100\n",
		 h_dir, lanes);
}

/* Reloads bring 300 lane names (5 files of 60) into a running program, more than it can give
 * ids to (256). Then a config with two new lanes x and y, one connection each, chosen by
 * thread name. Either both get ids of their own, or the reload that ran out was refused (a
 * log line; the old config stays); never may x and y share one id, hence one limit unit:
 * a connect in x and one in y both succeed while each lane's second connect is refused.
 * (Before: every name past the 255th got id 255, and x and y shared their limit.) */
Test(hosts2, lane_ids_are_never_shared_after_many_reloads, .init = start, .fini = h_stop)
{
	static char text[8192], lanes[4096];
	struct h_bg b = {0};
	char sock[400], spec[420];
	lanes_config(text, sizeof(text), "");
	write_config(text);
	b.env[0] = cfgenv;
	int i = 0;
	b.argv[i++] = "h2_prog";
	b.argv[i++] = "tcp=k";
	b.argv[i++] = stepf("connect=k@127.0.0.1:%d", h_up.port);
	b.argv[i++] = "close=k";
	b.argv[i++] = stepf("waitfile=%s/go", h_dir);
	const char *names[] = {"tx", "ty", "tx", "ty"}, *socks[] = {"a", "b", "c", "d"};
	for (int k = 0; k < 4; k++) {
		b.argv[i++] = stepf("name=%s", names[k]);
		b.argv[i++] = stepf("tcp=%s", socks[k]);
		b.argv[i++] = stepf("nonblock=%s", socks[k]);
		b.argv[i++] = stepf("connect=%s@127.0.0.1:%d", socks[k], h_up.port);
	}
	b.argv[i] = NULL;
	b.timeout_ms = 60000;
	h_bg_start(&b);
	wait_socket("m-", sock, sizeof(sock));
	snprintf(spec, sizeof(spec), "unix:%s", sock);

	int rejected = 0;
	for (int f = 1; f <= 5; f++) {
		size_t used = 0;
		for (int l = 0; l < 60; l++)
			used += (size_t)snprintf(lanes + used, sizeof(lanes) - used, "[lane f%dl%02d]\n", f, l);
		lanes_config(text, sizeof(text), lanes);
		write_config(text);
		struct h_run r;
		CLI(&r, "reload", spec);
		int ok = !strcmp(r.out, "applied\n") || !strcmp(r.out, "unchanged\n");
		cr_expect(ok || !strcmp(r.out, "rejected\n"), "reload %d: %s%s", f, r.out, r.err);
		if (!strcmp(r.out, "rejected\n") && f > 1) {
			/* The old config stays: the previous file's lanes, none of this one's. */
			char was[32], now[32];
			snprintf(was, sizeof(was), "lane=\"f%dl00\"", f - 1);
			snprintf(now, sizeof(now), "lane=\"f%dl00\"", f);
			struct h_run m;
			CLI(&m, "stats", "--raw", spec);
			cr_expect(strstr(m.out, was) && !strstr(m.out, now), "reload %d rejected, yet:\n%s", f, m.out);
			h_run_free(&m);
			rejected++;
		}
		h_run_free(&r);
	}
	lanes_config(text, sizeof(text), "[lane x]\nmax_conns_per_host = 1\n[lane y]\nmax_conns_per_host = 1\n");
	write_config(text);
	struct h_run r;
	CLI(&r, "reload", spec);
	cr_expect(!strcmp(r.out, "applied\n") || !strcmp(r.out, "unchanged\n"), "final reload: %s%s", r.out, r.err);
	h_run_free(&r);
	touch("go");
	h_bg_join(&b);
	cr_log_info("lane ids: %d of 5 reloads rejected", rejected);

	const char *out = b.r.out;
	cr_expect(strstr(out, "connect a ok") || strstr(out, "connect a err EINPROGRESS"), "lane x: %s", out);
	cr_expect(strstr(out, "connect b ok") || strstr(out, "connect b err EINPROGRESS"),
		  "lane y was refused while x held its one connection: x and y share a limit:\n%s", out);
	cr_expect(strstr(out, "connect c err EAGAIN") != NULL, "lane x's limit of 1 did not apply: %s", out);
	cr_expect(strstr(out, "connect d err EAGAIN") != NULL, "lane y's limit of 1 did not apply: %s", out);
	if (rejected)
		cr_expect(strstr(b.r.err, "reload rejected") != NULL, "a rejected reload without a log line: %s",
			  b.r.err);
	cr_expect_eq(b.r.status, 0, "%s", b.r.err);
	h_run_free(&b.r);
}

/* ----------------------------------------- 3. O_ASYNC sockets keep their owner and signal */

static long body_conn(const char *out)
{
	const char *p = strstr(out, "body conn=");
	return p ? strtol(p + strlen("body conn="), NULL, 10) : -1;
}

static int signals_of(const char *out, const char *what)
{
	char pat[32];
	snprintf(pat, sizeof(pat), "%s ", what);
	const char *p = strstr(out, pat);
	return p ? atoi(p + strlen(pat)) : -1;
}

/* A socket made the process's (F_SETOWN), given SIGRTMIN (F_SETSIG) or left with SIGIO, then
 * O_ASYNC | O_NONBLOCK, then connected: served warm (its request arrives on a connection the
 * server accepted before), it must still raise its signal when the response arrives, as
 * it does without the shim. (Before: the owner and signal stayed on the replaced socket;
 * the program waited for a signal that never came.) */
static void sigio_case(const char *mode)
{
	char conf[256];
	snprintf(conf, sizeof(conf), "[lane default]\nprewarm = 127.0.0.1:%d*2\nnodelay = off\n", h_up.port);
	write_config(conf);
	const char *env[] = {cfgenv, NULL};
	char kick[16], port[16];
	snprintf(kick, sizeof(kick), "%d", h_up.control_port);
	snprintf(port, sizeof(port), "%d", h_up.port);
	const char *argv[] = {"h2_sigio", kick, port, mode, NULL};
	struct h_run base, shim;
	cr_assert_eq(h_run(&base, argv, NULL, 0, 20000), 0);
	cr_assert_eq(h_run(&shim, argv, env, 1, 20000), 0);
	cr_expect_eq(base.status, 0, "without the shim: %s", base.out);
	cr_expect_geq(signals_of(base.out, "signals"), 1, "no signal even without the shim: %s", base.out);
	cr_expect_eq(body_conn(base.out), 1, "%s", base.out);

	cr_expect_eq(shim.status, 0, "%s\n%s", shim.out, shim.err);
	long id = body_conn(shim.out);
	cr_expect(id == 2 || id == 3, "served warm: the baseline had conn 1, the pool 2 and 3 (conn %ld): %s", id,
		  shim.out);
	cr_expect_geq(signals_of(shim.out, "signals"), 1, "the response raised no signal under the shim: %s",
		      shim.out);
	if (!strcmp(mode, "rt")) {
		cr_expect_geq(signals_of(base.out, "pollin"), 1, "%s", base.out);
		cr_expect_geq(signals_of(shim.out, "pollin"), 1, "no SIGRTMIN with POLL_IN for the app's fd: %s",
			      shim.out);
	}
	cr_expect_str_empty(shim.err, "the shim said something: %s", shim.err);
	h_run_free(&base);
	h_run_free(&shim);
}

Test(hosts2, warm_socket_keeps_f_setown_and_sigio, .init = start, .fini = h_stop)
{
	sigio_case("io");
}

Test(hosts2, warm_socket_keeps_f_setown_and_f_setsig, .init = start, .fini = h_stop)
{
	sigio_case("rt");
}

/* ---------------------------------------------------------- 4. metrics in fork children */

/* Names of DIR entries starting with PREFIX and ending in .sock, as pids, into PIDS (at most
 * MAX); returns how many. */
static int socket_pids(const char *prefix, long *pids, int max)
{
	int n = 0;
	size_t pl = strlen(prefix);
	DIR *d = opendir(h_dir);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		size_t l = strlen(e->d_name);
		if (!strncmp(e->d_name, prefix, pl) && l > 5 && !strcmp(e->d_name + l - 5, ".sock") && n < max)
			pids[n++] = strtol(e->d_name + pl, NULL, 10);
	}
	if (d)
		closedir(d);
	return n;
}

/* Runs h2_fork in the background until its children are done; returns the parent's pid. */
static long fork_run(struct h_bg *b, int nchild, const char *how, int hold_ms)
{
	static char port[16], n[16], hold[16];
	snprintf(port, sizeof(port), "%d", h_up.port);
	snprintf(n, sizeof(n), "%d", nchild);
	snprintf(hold, sizeof(hold), "%d", hold_ms);
	b->env[0] = cfgenv;
	const char *argv[] = {"h2_fork", port, n, how, hold, h_dir, NULL};
	memcpy(b->argv, argv, sizeof(argv));
	h_bg_start(b);
	char done[400];
	snprintf(done, sizeof(done), "%s/children-done", h_dir);
	for (int i = 0; i < 2000 && access(done, F_OK) != 0; i++)
		h_sleep_ms(10);
	char *pid = h_read_file(done);
	long p = pid ? atol(pid) : -1;
	free(pid);
	return p;
}

/* `[global] metrics = 127.0.0.1:PORT`: the parent serves it; five fork children, each
 * routing a connect, must not try to bind the parent's address (they used to, each logging
 * "cannot serve metrics ... Address already in use" and retrying every 10 s). */
Test(hosts2, fork_children_do_not_serve_the_parents_tcp_metrics, .init = start, .fini = h_stop)
{
	struct h_bg b = {0};
	char text[256], spec[64];
	int port = free_port();
	snprintf(spec, sizeof(spec), "127.0.0.1:%d", port);
	snprintf(text, sizeof(text), "[global]\nmetrics = %s\n[lane default]\nmax_conns_per_host = 100\n", spec);
	write_config(text);
	long ppid = fork_run(&b, 5, "exit", 300);
	cr_expect_gt(ppid, 0, "the children did not finish");

	/* The parent's endpoint works while it runs. */
	struct h_run r;
	CLI(&r, "stats", "--raw", spec);
	cr_expect_eq(r.status, 0, "the parent's endpoint: %s", r.err);
	cr_expect(strstr(r.out, "connroute_connections_opened_total{lane=\"default\"}") != NULL, "%s", r.out);
	h_run_free(&r);
	touch("go");
	h_bg_join(&b);
	cr_expect_eq(b.r.status, 0, "%s\n%s", b.r.out, b.r.err);
	cr_expect(strstr(b.r.out, "children 5 ok 5") != NULL, "%s", b.r.out);
	cr_expect_eq(h_stat(&h_up, "requests"), 6, "one request from the parent and one per child");
	cr_expect_eq(h_count_str(b.r.err, "cannot serve metrics"), 0, "%s", b.r.err);
	cr_expect_str_empty(b.r.err, "no connroute line from parent or children: %s", b.r.err);
	h_run_free(&b.r);
}

/* `metrics = unix:DIR/m.%p.sock`: each process has its own address. Children that end with
 * exit() leave no socket file; the parent's stays while it runs and is gone after. While
 * the children run, their own sockets are seen (so the check is not vacuous). */
Test(hosts2, fork_children_leave_no_unix_metrics_socket_after_exit, .init = start, .fini = h_stop)
{
	struct h_bg b = {0};
	char text[512];
	snprintf(text, sizeof(text), "[global]\nmetrics = unix:%s/m.%%p.sock\n[lane default]\nmax_conns_per_host = 100\n",
		 h_dir);
	write_config(text);

	/* Watch the directory while the program runs: every socket file ever seen. */
	static char port[16], done[400];
	snprintf(port, sizeof(port), "%d", h_up.port);
	snprintf(done, sizeof(done), "%s/children-done", h_dir);
	b.env[0] = cfgenv;
	const char *argv[] = {"h2_fork", port, "5", "exit", "600", h_dir, NULL};
	memcpy(b.argv, argv, sizeof(argv));
	h_bg_start(&b);
	long seen[64];
	int nseen = 0;
	for (int i = 0; i < 4000 && access(done, F_OK) != 0; i++) {
		long now[64];
		int n = socket_pids("m.", now, 64);
		for (int k = 0; k < n; k++) {
			int known = 0;
			for (int j = 0; j < nseen && !known; j++)
				known = seen[j] == now[k];
			if (!known && nseen < 64)
				seen[nseen++] = now[k];
		}
		h_sleep_ms(5);
	}
	char *pidtext = h_read_file(done);
	long ppid = pidtext ? atol(pidtext) : -1;
	free(pidtext);
	cr_expect_gt(ppid, 0, "the children did not finish");

	long left[64];
	int nleft = socket_pids("m.", left, 64);
	cr_expect_eq(nleft, 1, "after the children ended: only the parent's socket (%d files)", nleft);
	if (nleft >= 1)
		cr_expect_eq(left[0], ppid, "the socket left is not the parent's (%ld, parent %ld)", left[0], ppid);
	int children_seen = 0;
	for (int j = 0; j < nseen; j++)
		children_seen += seen[j] != ppid;
	cr_expect_geq(children_seen, 1, "no child ever served its own endpoint: the check above proves nothing");

	touch("go");
	h_bg_join(&b);
	cr_expect_eq(b.r.status, 0, "%s\n%s", b.r.out, b.r.err);
	cr_expect(strstr(b.r.out, "children 5 ok 5") != NULL, "%s", b.r.out);
	cr_expect_str_empty(b.r.err, "%s", b.r.err);
	cr_expect_eq(socket_pids("m.", left, 64), 0, "a socket file outlived the program");
	h_run_free(&b.r);
}

/* ---------------------------------- 5. adaptive preconnect and a one-at-a-time server */

/* A server that accepts one connection at a time and serves it until EOF (many simple
 * servers and test doubles do): an idle connection it accepted blocks everyone behind it. */
struct serial {
	int lfd, port;
	atomic_int stop;
	atomic_long accepted, unused;
	pthread_t t;
};

static void *serial_main(void *arg)
{
	struct serial *s = arg;
	while (!atomic_load(&s->stop)) {
		struct pollfd p = {.fd = s->lfd, .events = POLLIN};
		if (poll(&p, 1, 50) <= 0)
			continue;
		int c = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue;
		long id = atomic_fetch_add(&s->accepted, 1) + 1, reqs = 0;
		char buf[4096];
		size_t have = 0;
		while (!atomic_load(&s->stop)) {
			struct pollfd q = {.fd = c, .events = POLLIN};
			if (poll(&q, 1, 50) <= 0)
				continue;
			ssize_t n = recv(c, buf + have, sizeof(buf) - 1 - have, 0);
			if (n <= 0)
				break;
			have += (size_t)n;
			buf[have] = '\0';
			char *end;
			while ((end = strstr(buf, "\r\n\r\n"))) {
				char body[64], resp[160];
				int bl = snprintf(body, sizeof(body), "conn=%ld\n", id);
				int rl = snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s",
						  bl, body);
				ssize_t w = send(c, resp, (size_t)rl, MSG_NOSIGNAL);
				(void)w;
				reqs++;
				size_t used = (size_t)(end + 4 - buf);
				memmove(buf, end + 4, have - used + 1);
				have -= used;
			}
			if (have >= sizeof(buf) - 1)
				break;
		}
		if (reqs == 0)
			atomic_fetch_add(&s->unused, 1);
		close(c);
	}
	return NULL;
}

static void serial_start(struct serial *s)
{
	memset(s, 0, sizeof(*s));
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof(a);
	cr_assert_eq(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(s->lfd, 64), 0);
	cr_assert_eq(getsockname(s->lfd, (struct sockaddr *)&a, &l), 0);
	s->port = ntohs(a.sin_port);
	cr_assert_eq(pthread_create(&s->t, NULL, serial_main, s), 0);
}

static void serial_stop(struct serial *s)
{
	atomic_store(&s->stop, 1);
	pthread_join(s->t, NULL);
	close(s->lfd);
}

/* preconnect_ratio = 1, and a client whose sockets can never be served warm (each is bound
 * to 127.0.0.1:0 before its connect): ten requests, one new connection each, 100 ms apart.
 * The warm sockets adaptive preconnect makes are never used, and each one the server
 * accepts holds it until the pool drops it. Preconnect must stop (default warm_max_idle)
 * for such a destination: the server sees at most a couple of unused connections, and the
 * ten requests take a few seconds at most. (Before: an idle warm connection ahead of every
 * other request, about 10 s in all with warm_max_idle = 1s, 80 s with the default 15s.) */
Test(hosts2, adaptive_preconnect_stops_for_a_server_it_only_blocks)
{
	struct serial s;
	char tmpl[] = "/tmp/cr-hosts2-XXXXXX";
	cr_assert_not_null(mkdtemp(tmpl));
	snprintf(h_dir, sizeof(h_dir), "%s", tmpl);
	snprintf(cfgpath, sizeof(cfgpath), "%s/connroute.conf", h_dir);
	snprintf(cfgenv, sizeof(cfgenv), "CONNROUTE_CONFIG=%s", cfgpath);
	write_config("[lane default]\npreconnect_ratio = 1\n");
	serial_start(&s);

	const char *argv[64];
	int i = 0;
	argv[i++] = "h2_prog";
	for (int k = 0; k < 10; k++) {
		argv[i++] = stepf("tcp=s%d", k);
		argv[i++] = stepf("bind=s%d@127.0.0.1", k);
		argv[i++] = stepf("connect=s%d@127.0.0.1:%d", k, s.port);
		argv[i++] = stepf("get=s%d:/", k);
		argv[i++] = stepf("close=s%d", k);
		argv[i++] = "sleep=100";
	}
	argv[i] = NULL;
	const char *env[] = {cfgenv, NULL};
	struct h_run r;
	int rc = h_run(&r, argv, env, 1, 12000);
	h_sleep_ms(200); /* the server takes what the program's exit closed */
	serial_stop(&s);
	cr_assert_eq(rc, 0);
	long unused = atomic_load(&s.unused), accepted = atomic_load(&s.accepted);
	cr_log_info("serial server: %.1f s, %ld accepted, %ld unused", r.secs, accepted, unused);
	cr_expect_eq(r.timed_out, 0, "ten requests did not finish in 12 s (server: %ld accepted, %ld unused):\n%s",
		     accepted, unused, r.out);
	cr_expect_lt(r.secs, 8.0, "ten requests took %.1f s (server: %ld accepted, %ld unused)", r.secs, accepted,
		     unused);
	for (int k = 0; k < 10; k++) {
		char want[32];
		snprintf(want, sizeof(want), "get s%d conn=", k);
		cr_expect(strstr(r.out, want) != NULL, "request %d got no response: %s", k, r.out);
	}
	cr_expect_leq(unused, 2, "the server accepted %ld connections that never carried a request (of %ld)",
		      unused, accepted);
	cr_expect_eq(r.status, 0, "%s", r.err);
	h_run_free(&r);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpl);
	cr_expect_eq(system(cmd), 0);
}
