/* Integration tests of warm pools (issue 6), observed from outside only: what an unmodified
 * program printed (tests/progs/sockprog, curlprog, curl, ab, redis-benchmark, nginx) and what
 * the server saw (accept counts, connection ids in /conn and /peers).
 *
 * How a test knows a warm socket was used: the upstream numbers its connections in accept
 * order (X-Conn-Id, /conn's "conn=N"). Each scenario first makes one routed connect to the
 * server's CONTROL port (never counted): that starts the lane's refill thread, which connects
 * the prewarmed sockets to the MAIN port, and those become connections 1..N. After a sleep,
 * an app connect served warm shows conn <= N; a cold one shows a new, higher id.
 *
 * The pool fills only after the process's first routed connect (the refill thread is never
 * started in the constructor): a process whose very first connection goes to the prewarmed
 * destination gets that one cold. Hence the "kick" connect above. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

extern char **environ;

/* Writes NAME (a config) into the test's temp dir; returns "CONNROUTE_CONFIG=path". */
static const char *config_named(const char *name, const char *text)
{
	static char env[4][512];
	static int i;
	char path[400];
	cr_assert_eq(h_write_file(h_dir, name, text, path, sizeof(path)), 0);
	char *e = env[i++ % 4];
	snprintf(e, 512, "CONNROUTE_CONFIG=%s", path);
	return e;
}

static const char *config(const char *text)
{
	return config_named("connroute.conf", text);
}

/* "[lane default]\nprewarm = 127.0.0.1:PORT*N\n" + extra */
static const char *warm_conf(int port, int n, const char *extra)
{
	static char text[1024];
	snprintf(text, sizeof(text), "[lane default]\nprewarm = 127.0.0.1:%d*%d\n%s", port, n, extra ? extra : "");
	return text;
}

static char step_buf[32][96];
static int step_i;
static const char *stepf(const char *fmt, const char *sock, int port)
{
	char *b = step_buf[step_i++ % 32];
	snprintf(b, 96, fmt, sock, port);
	return b;
}

/* connect=S@127.0.0.1:PORT */
static const char *at(const char *sock, int port)
{
	return stepf("connect=%s@127.0.0.1:%d", sock, port);
}

/* The routed connect that starts the refill thread: to the uncounted control port. */
static const char *kick(void)
{
	return at("kick", h_up.control_port);
}

/* The conn id from "get S conn=N ...", -1 if absent. */
static long conn_of(const char *out, const char *sock)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "get %s conn=", sock);
	const char *p = strstr(out, pat);
	return p ? strtol(p + strlen(pat), NULL, 10) : -1;
}

/* sockprog output without what legitimately differs between runs (times, conn ids, local
 * ports): "connect a ok errno=0 ms=3" -> "connect a ok errno=0", "get a conn=7 peer=..." ->
 * "get a conn". Malloc'd. */
static char *normalize(const char *out)
{
	size_t n = strlen(out);
	char *res = malloc(n + 1), *w = res;
	cr_assert_not_null(res);
	const char *p = out;
	while (*p) {
		const char *e = strchr(p, '\n');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		char line[512];
		if (len >= sizeof(line))
			len = sizeof(line) - 1;
		memcpy(line, p, len);
		line[len] = '\0';
		char *ms = strstr(line, " ms=");
		if (ms)
			*ms = '\0';
		if (!strncmp(line, "get ", 4)) {
			char *c = strstr(line, " conn=");
			if (c)
				strcpy(c, " conn");
		}
		if (strncmp(line, "connect kick ", 13) != 0) {
			size_t l = strlen(line);
			memcpy(w, line, l);
			w += l;
			*w++ = '\n';
		}
		p = e ? e + 1 : p + strlen(p);
	}
	*w = '\0';
	return res;
}

/* Runs ARGV without the shim, then with it under ENV; expects the same normalized output and
 * exit status. r_shim gets the shim run (free it). */
static void expect_identical(const char *const *argv, const char *const *env, struct h_run *r_shim)
{
	struct h_run base;
	h_run_ok(&base, argv, NULL, 0, 30000);
	h_run_ok(r_shim, argv, env, 1, 30000);
	char *a = normalize(base.out), *b = normalize(r_shim->out);
	cr_expect_str_eq(b, a, "with the shim:\n%s\nwithout:\n%s", r_shim->out, base.out);
	cr_expect_eq(r_shim->status, base.status);
	cr_expect_str_empty(r_shim->err, "the shim said something: %s", r_shim->err);
	free(a);
	free(b);
	h_run_free(&base);
}

static int tool_exists(const char *name)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", name);
	return system(cmd) == 0;
}

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof(a);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &l) != 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return ntohs(a.sin_port);
}

/* /peers lines "<id> <ip>:<port> open|closed <requests>": how many connections served no
 * request, and the lowest id among them (LONG_MAX if none). */
static int unused_conns(const char *peers, long *lowest)
{
	int n = 0;
	*lowest = 0x7fffffffL;
	for (const char *line = peers; line && *line;) {
		const char *nl = strchr(line, '\n');
		long id = strtol(line, NULL, 10);
		const char *sp = NULL;
		for (const char *q = line; q < (nl ? nl : line + strlen(line)); q++)
			if (*q == ' ')
				sp = q;
		if (sp && strtol(sp + 1, NULL, 10) == 0 && sp[1] == '0') {
			n++;
			if (id < *lowest)
				*lowest = id;
		}
		line = nl ? nl + 1 : NULL;
	}
	return n;
}

/* ---- background processes (redis-server, nginx): own process group, PDEATHSIG, bounded stop */

static pid_t bg_start(const char *const *argv, const char *const *env_extra, int preload, const char *log)
{
	static char ld[600];
	const char *envp[256];
	int n = 0;
	for (char **e = environ; *e && n < 200; e++) {
		int skip = preload && !strncmp(*e, "LD_PRELOAD=", 11);
		for (int k = 0; env_extra && env_extra[k] && !skip; k++) {
			const char *eq = strchr(env_extra[k], '=');
			if (eq && !strncmp(*e, env_extra[k], (size_t)(eq - env_extra[k]) + 1))
				skip = 1;
		}
		if (!skip)
			envp[n++] = *e;
	}
	for (int k = 0; env_extra && env_extra[k] && n < 250; k++)
		envp[n++] = env_extra[k];
	if (preload) {
		snprintf(ld, sizeof(ld), "LD_PRELOAD=%s/libconnroute.so", h_build());
		envp[n++] = ld;
	}
	envp[n] = NULL;
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid == 0) {
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		int in = open("/dev/null", O_RDONLY), out = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (in >= 0)
			dup2(in, 0);
		if (out >= 0) {
			dup2(out, 1);
			dup2(out, 2);
		}
		closefrom(3);
		execvpe(argv[0], (char *const *)argv, (char *const *)envp);
		_exit(127);
	}
	return pid;
}

static void bg_stop(pid_t pid)
{
	if (pid <= 0)
		return;
	kill(-pid, SIGTERM);
	kill(pid, SIGTERM);
	int st;
	long long deadline = h_now_ms() + 5000;
	while (h_now_ms() < deadline) {
		pid_t w = waitpid(pid, &st, WNOHANG);
		if (w == pid || (w < 0 && errno != EINTR))
			return;
		h_sleep_ms(10);
	}
	kill(-pid, SIGKILL);
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
}

/* Waits for PID to exit by itself (at most timeout_ms, then it is killed): exit status, or
 * -1 if it had to be killed. */
static int bg_wait(pid_t pid, int timeout_ms)
{
	int st;
	long long deadline = h_now_ms() + timeout_ms;
	while (h_now_ms() < deadline) {
		pid_t w = waitpid(pid, &st, WNOHANG);
		if (w == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		if (w < 0 && errno != EINTR)
			return -1;
		h_sleep_ms(10);
	}
	bg_stop(pid);
	return -1;
}

/* Waits until PORT on 127.0.0.1 accepts (at most timeout_ms). 0 or -1. */
static int wait_port(int port, int timeout_ms)
{
	long long deadline = h_now_ms() + timeout_ms;
	while (h_now_ms() < deadline) {
		int fd = h_connect("127.0.0.1", port, 200);
		if (fd >= 0) {
			close(fd);
			return 0;
		}
		h_sleep_ms(20);
	}
	return -1;
}

/* --------------------------------------------------------------- server side */

/* Runs sockprog ARGV (under the shim, ENV) in the background, reads the server's accepted
 * count while it runs (the pool warm, the app's connect not yet made), waits for it to exit.
 * WANT >= 0: the count is awaited until it is WANT (at most 5 s; a loaded machine may take
 * longer than any fixed pause to warm the pool); WANT < 0: read AT_MS after the start.
 * Returns the count; *out gets its output (malloc'd). */
static long accepted_mid_run(const char *const *argv, const char *const *env, int at_ms, long want, char **out)
{
	char exe[600], log[400];
	snprintf(exe, sizeof(exe), "%s/progs/sockprog", h_build());
	snprintf(log, sizeof(log), "%s/sockprog.out", h_dir);
	const char *args[64];
	int n = 0;
	args[n++] = exe;
	for (int i = 1; argv[i] && n < 63; i++)
		args[n++] = argv[i];
	args[n] = NULL;
	pid_t pid = bg_start(args, env, 1, log);
	cr_assert_gt(pid, 0);
	long mid;
	if (want >= 0) {
		mid = h_wait_stat(&h_up, "accepted", want, 5000);
	} else {
		h_sleep_ms(at_ms);
		mid = h_stat(&h_up, "accepted");
	}
	int st = bg_wait(pid, 20000);
	*out = h_read_file(log);
	cr_expect_eq(st, 0, "sockprog: %s", *out ? *out : "");
	return mid;
}

/* After the pool is warm, an app connect() causes no new accept: the server has accepted the 2
 * warm connections before the app connects, and the app's request arrives on one of them
 * (conn 1 or 2); the only accept after is the refill. The kick connect starts the refill
 * thread (see the top of the file). */
Test(warm_server, app_connect_uses_an_already_accepted_connection, .init = h_start_plain, .fini = h_stop)
{
	const char *env[] = {config(warm_conf(h_up.port, 2, NULL)), NULL};
	const char *argv[] = {"sockprog", "tcp=kick", kick(), "sleep=600", "tcp=a", at("a", h_up.port),
			      "get=a:/conn", "sleep=300", NULL};
	char *out = NULL;
	long mid = accepted_mid_run(argv, env, 0, 2, &out);
	cr_assert_not_null(out);
	cr_expect_eq(mid, 2, "after the warm-up, before the app's connect: the 2 warm connections");
	cr_expect(strstr(out, "connect a ok errno=0") != NULL, "%s", out);
	long id = conn_of(out, "a");
	cr_expect(id >= 1 && id <= 2, "the app's request came on a prewarmed connection (1 or 2), not %ld: %s",
		  id, out);
	cr_expect_eq(h_stat(&h_up, "accepted"), 3, "2 prewarmed + 1 refill, no accept for the app's connect");
	cr_expect_eq(h_stat(&h_up, "requests"), 1);
	free(out);
}

/* Cold start. docs/INTERNALS.md ("State machine") forbids a thread in the constructor, so the refill thread
 * starts at the process's first routed connect: nothing is accepted before it (no
 * background connection a process never asked for), that first connect is cold, and the
 * pool is full right after it (1 + 2 accepted), so the second connect is served warm. */
Test(warm_server, pool_fills_at_the_first_routed_connect, .init = h_start_plain, .fini = h_stop)
{
	const char *env[] = {config(warm_conf(h_up.port, 2, NULL)), NULL};
	/* looked at after 400 ms; the first connect comes after 1.5 s (a loaded machine may
	 * oversleep the 400 ms) */
	const char *argv[] = {"sockprog", "sleep=1500", "tcp=a", at("a", h_up.port), "get=a:/conn", "sleep=300",
			      "tcp=b", at("b", h_up.port), "get=b:/conn", NULL};
	char *out = NULL;
	long mid = accepted_mid_run(argv, env, 400, -1, &out);
	cr_assert_not_null(out);
	cr_expect_eq(mid, 0, "no connection before the process's first connect");
	/* a is cold (the thread starts with it, so its id may be 1, 2 or 3); b is
	 * one of the three connections made before it, i.e. warm. */
	long id = conn_of(out, "b");
	cr_expect(id >= 1 && id <= 3 && id != conn_of(out, "a"),
		  "the second is served from the pool filled after the first (conn %ld): %s", id, out);
	free(out);
}

/* The pool refills to its target after each hand-out: five connects in a row, 50 ms apart,
 * are all served warm (each conn id was accepted before the connect). */
Test(warm_server, pool_refills_between_connects, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r;
	const char *env[] = {config(warm_conf(h_up.port, 2, NULL)), NULL};
	const char *argv[] = {"sockprog", "tcp=kick", kick(), "sleep=300",
			      "tcp=a", at("a", h_up.port), "get=a:/conn", "close=a", "sleep=50",
			      "tcp=b", at("b", h_up.port), "get=b:/conn", "close=b", "sleep=50",
			      "tcp=c", at("c", h_up.port), "get=c:/conn", "close=c", "sleep=50",
			      "tcp=d", at("d", h_up.port), "get=d:/conn", "close=d", "sleep=50",
			      "tcp=e", at("e", h_up.port), "get=e:/conn", "close=e", "sleep=200", NULL};
	h_run_ok(&r, argv, env, 1, 30000);
	cr_expect_eq(r.status, 0, "%s", r.err);
	/* Served warm: the request's connection is older than the previous request's newest
	 * possible cold id. Before a: 2 accepted; every later take leaves a refill. */
	const char *names[] = {"a", "b", "c", "d", "e"};
	for (int i = 0; i < 5; i++) {
		long id = conn_of(r.out, names[i]);
		cr_expect(id >= 1 && id <= 2 + i, "connect %s: conn %ld was not accepted before it: %s", names[i],
			  id, r.out);
	}
	cr_expect_eq(h_stat(&h_up, "accepted"), 7, "2 + one refill per connect");
	h_run_free(&r);
}

/* Dead warm sockets are never handed out: the server closes idle connections after 200 ms,
 * the pool sits longer than that (and re-checks only every 250 ms), yet every request over a
 * connect at varying moments succeeds. */
Test(warm_server, dead_warm_sockets_are_never_handed_out)
{
	const char *args[] = {"--idle-timeout-ms", "200", NULL};
	cr_assert_eq(h_upstream_start(&h_up, args), 0);
	snprintf(h_dir, sizeof(h_dir), "%s", h_up.dir);
	struct h_run r;
	const char *env[] = {config(warm_conf(h_up.port, 2, NULL)), NULL};
	const char *argv[] = {"sockprog", "tcp=kick", kick(), "sleep=450",
			      "tcp=a", at("a", h_up.port), "get=a:/conn", "close=a", "sleep=230",
			      "tcp=b", at("b", h_up.port), "get=b:/conn", "close=b", "sleep=170",
			      "tcp=c", at("c", h_up.port), "get=c:/conn", "close=c", "sleep=310",
			      "tcp=d", at("d", h_up.port), "get=d:/conn", "close=d", "sleep=90",
			      "tcp=e", at("e", h_up.port), "get=e:/conn", "close=e", "sleep=260",
			      "tcp=f", at("f", h_up.port), "get=f:/conn", "close=f", NULL};
	h_run_ok(&r, argv, env, 1, 30000);
	cr_expect_eq(r.status, 0, "%s", r.err);
	const char *names[] = {"a", "b", "c", "d", "e", "f"};
	for (int i = 0; i < 6; i++)
		cr_expect(conn_of(r.out, names[i]) > 0, "request %s failed: %s", names[i], r.out);
	cr_expect_not(strstr(r.out, " err "), "%s", r.out);
	cr_expect_eq(h_stat(&h_up, "requests"), 6);
	/* The pool really did die and get replaced meanwhile. */
	cr_expect_geq(h_stat(&h_up, "accepted"), 8, "warm sockets were idle-closed and replaced");
	h_run_free(&r);
	h_upstream_stop(&h_up);
}

/* warm_max_idle: a warm socket never handed out is replaced after that long. */
Test(warm_server, idle_warm_sockets_are_replaced_after_warm_max_idle, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r;
	const char *env[] = {config(warm_conf(h_up.port, 2, "warm_max_idle = 300ms\n")), NULL};
	const char *argv[] = {"sockprog", "tcp=kick", kick(), "sleep=1300", NULL};
	h_run_ok(&r, argv, env, 1, 30000);
	long acc = h_stat(&h_up, "accepted");
	cr_expect(acc >= 4 && acc <= 14, "2 warm sockets replaced every ~300-600 ms over 1.3 s: %ld", acc);
	cr_expect_eq(h_stat(&h_up, "requests"), 0);
	h_run_free(&r);
}

/* A server that speaks first (SMTP, MySQL, FTP, SSH greetings): a warm connection has unread
 * bytes; it is still alive and is the connection the app would have got. It must not be
 * judged dead, closed and replaced at every liveness check. */
struct greeter {
	int lfd, port;
	atomic_int stop;
	atomic_long accepted;
	int conns[256];
	int nconns;
	pthread_t t;
};

static void *greeter_main(void *arg)
{
	struct greeter *g = arg;
	for (int rounds = 0; rounds < 100000 && !atomic_load(&g->stop); rounds++) {
		struct pollfd p = {.fd = g->lfd, .events = POLLIN};
		if (poll(&p, 1, 50) <= 0)
			continue;
		int c = accept4(g->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue;
		long n = atomic_fetch_add(&g->accepted, 1) + 1;
		char line[64];
		int len = snprintf(line, sizeof(line), "220 hello %ld\r\n", n);
		ssize_t w = write(c, line, (size_t)len);
		(void)w;
		if (g->nconns < 256)
			g->conns[g->nconns++] = c;
		else
			close(c);
	}
	return NULL;
}

static void greeter_start(struct greeter *g)
{
	memset(g, 0, sizeof(*g));
	g->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof(a);
	cr_assert_eq(bind(g->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(g->lfd, 64), 0);
	cr_assert_eq(getsockname(g->lfd, (struct sockaddr *)&a, &l), 0);
	g->port = ntohs(a.sin_port);
	cr_assert_eq(pthread_create(&g->t, NULL, greeter_main, g), 0);
}

static void greeter_stop(struct greeter *g)
{
	atomic_store(&g->stop, 1);
	pthread_join(g->t, NULL);
	for (int i = 0; i < g->nconns; i++)
		close(g->conns[i]);
	close(g->lfd);
}

Test(warm_server, a_server_that_speaks_first_keeps_its_warm_sockets)
{
	struct greeter g;
	char tmpl[] = "/tmp/cr-warm-XXXXXX";
	cr_assert_not_null(mkdtemp(tmpl));
	snprintf(h_dir, sizeof(h_dir), "%s", tmpl);
	greeter_start(&g);
	struct h_run r;
	const char *env[] = {config(warm_conf(g.port, 2, NULL)), NULL};
	/* The kick connect goes to the greeter itself here: it is conn 1, cold. */
	const char *argv[] = {"sockprog", "tcp=k", at("k", g.port), "read=k", "sleep=1200",
			      "tcp=a", at("a", g.port), "read=a", NULL};
	h_run_ok(&r, argv, env, 1, 30000);
	long acc = atomic_load(&g.accepted);
	greeter_stop(&g);
	cr_expect(strstr(r.out, "read a 220 hello ") != NULL, "%s", r.out);
	const char *h = strstr(r.out, "read a 220 hello ");
	long id = h ? atol(h + strlen("read a 220 hello ")) : -1;
	cr_expect(id >= 1 && id <= 3, "the app got a prewarmed connection (ids 1-3), not %ld", id);
	cr_expect_leq(acc, 4, "k + 2 warm + 1 refill; more means warm sockets were churned: %ld accepts "
			      "in 1.2 s", acc);
	h_run_free(&r);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpl);
	cr_expect_eq(system(cmd), 0);
}

/* -------------------------------------------------- identical results for the app */

Test(warm_identical, blocking_connect_then_connect_again, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r;
	const char *env[] = {config(warm_conf(h_up.port, 2, "nodelay = off\n")), NULL};
	const char *argv[] = {"sockprog", "tcp=kick", kick(), "sleep=300", "tcp=a", at("a", h_up.port),
			      at("a", h_up.port), "flags=a", "opts=a", "peer=a", "get=a:/conn", "get=a:/conn", NULL};
	expect_identical(argv, env, &r);
	cr_expect(strstr(r.out, "connect a ok errno=0") != NULL, "%s", r.out);
	cr_expect(strstr(r.out, "connect a err EISCONN") != NULL, "%s", r.out);
	long id = conn_of(r.out, "a");
	cr_expect(id >= 2 && id <= 3, "served warm: the baseline run had conn 1, the pool 2 and 3 (conn %ld)", id);
	cr_expect(strstr(r.out, "req=2") != NULL, "keep-alive on the warm connection: %s", r.out);
	h_run_free(&r);
}

Test(warm_identical, non_blocking_wait_and_reconnect, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r;
	const char *env[] = {config(warm_conf(h_up.port, 2, "nodelay = off\n")), NULL};
	const char *argv[] = {"sockprog", "tcp=kick", kick(), "sleep=300", "tcp=a", "nonblock=a",
			      at("a", h_up.port), "wait=a", at("a", h_up.port), at("a", h_up.port), "flags=a",
			      "opts=a", "get=a:/conn", NULL};
	expect_identical(argv, env, &r);
	cr_expect(strstr(r.out, "connect a err EINPROGRESS") != NULL, "%s", r.out);
	cr_expect(strstr(r.out, "wait a ready ok\nconnect a ok errno=0") != NULL, "first re-connect: 0: %s",
		  r.out);
	cr_expect(strstr(r.out, "connect a err EISCONN") != NULL, "then EISCONN: %s", r.out);
	cr_expect(strstr(r.out, "flags a nonblock=1 cloexec=0") != NULL, "%s", r.out);
	long id = conn_of(r.out, "a");
	cr_expect(id >= 2 && id <= 3, "served warm: the baseline run had conn 1, the pool 2 and 3 (conn %ld)", id);
	h_run_free(&r);
}

/* Options the app set before connect are on the connection it gets: SO_RCVBUF, SO_KEEPALIVE
 * and TCP_USER_TIMEOUT, none of which the lane sets (nodelay = off keeps TCP_NODELAY as the
 * baseline has it; lane options winning is the next test). */
Test(warm_identical, setsockopt_before_connect_is_carried, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r;
	const char *env[] = {config(warm_conf(h_up.port, 2, "nodelay = off\n")), NULL};
	const char *argv[] = {"sockprog", "tcp=kick", kick(), "sleep=300", "tcp=a",
			      "keepalive1=a", "setopt=a:6:18:4321" /* TCP_USER_TIMEOUT */,
			      at("a", h_up.port), "getopt=a:1:9" /* SO_KEEPALIVE */,
			      "getopt=a:6:18", "opts=a", "get=a:/conn", NULL};
	expect_identical(argv, env, &r);
	cr_expect(strstr(r.out, "getopt a 1:9=1") != NULL, "%s", r.out);
	cr_expect(strstr(r.out, "getopt a 6:18=4321") != NULL, "%s", r.out);
	long id = conn_of(r.out, "a");
	cr_expect(id >= 2 && id <= 3, "served warm: the baseline run had conn 1, the pool 2 and 3 (conn %ld)", id);
	h_run_free(&r);
}

/* An option that acts at SYN time (SO_RCVBUF sets the window scale) cannot be carried by
 * a socket connected earlier: such a socket is connected cold, exactly as the app asked,
 * and the warm sockets stay in the pool. */
Test(warm_identical, syn_time_option_connects_cold, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r;
	const char *env[] = {config(warm_conf(h_up.port, 2, "nodelay = off\n")), NULL};
	const char *argv[] = {"sockprog", "tcp=kick", kick(), "sleep=300", "tcp=a", "rcvbuf=a:65536",
			      at("a", h_up.port), "getopt=a:1:8" /* SO_RCVBUF */, "get=a:/conn", NULL};
	expect_identical(argv, env, &r);
	cr_expect_eq(conn_of(r.out, "a"), 4, "a new connection (conn 4), not a warm one: %s", r.out);
	h_run_free(&r);
}

/* Lane options win over the app's, as on the cold path: app TCP_NODELAY=0, lane nodelay=on. */
Test(warm_identical, lane_options_win_as_on_the_cold_path, .init = h_start_plain, .fini = h_stop)
{
	struct h_run cold, warm;
	const char *cenv[] = {config_named("cold.conf", "[lane default]\nnodelay = on\nkeepalive = 30s\n"), NULL};
	const char *wenv[] = {config(warm_conf(h_up.port, 2, "nodelay = on\nkeepalive = 30s\n")), NULL};
	const char *argv[] = {"sockprog", "tcp=kick", kick(), "sleep=300", "tcp=a", "nodelay0=a",
			      at("a", h_up.port), "opts=a", "get=a:/conn", NULL};
	h_run_ok(&cold, argv, cenv, 1, 30000);
	h_run_ok(&warm, argv, wenv, 1, 30000);
	cr_expect(strstr(cold.out, "opts a nodelay=1 keepalive=1 keepidle=30") != NULL, "%s", cold.out);
	cr_expect(strstr(warm.out, "opts a nodelay=1 keepalive=1 keepidle=30") != NULL, "%s", warm.out);
	long id = conn_of(warm.out, "a");
	cr_expect(id >= 2 && id <= 3, "served warm: the cold run's conn 1, then 2 warm (conn %ld)", id);
	h_run_free(&cold);
	h_run_free(&warm);
}

/* A socket the app bound is never substituted: the server sees a new connection. */
Test(warm_identical, bound_socket_is_not_substituted, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r;
	const char *env[] = {config(warm_conf(h_up.port, 2, "nodelay = off\n")), NULL};
	const char *argv[] = {"sockprog", "tcp=kick", kick(), "sleep=300", "tcp=a", "bind=a@127.0.0.1",
			      at("a", h_up.port), "opts=a", "get=a:/conn", NULL};
	expect_identical(argv, env, &r);
	/* Baseline run: conn 1. Shim run: 2 warm (2, 3), then a new one for a. */
	cr_expect_eq(conn_of(r.out, "a"), 4, "a new connection: %s", r.out);
	h_run_free(&r);
}

/* A socket registered with epoll before connect (nginx does this) is never substituted (the
 * registration would stay on the replaced file): its epoll registration keeps working. */
Test(warm_identical, epoll_registered_socket_is_not_substituted, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r;
	const char *env[] = {config(warm_conf(h_up.port, 2, "nodelay = off\n")), NULL};
	const char *argv[] = {"sockprog", "tcp=kick", kick(), "sleep=300", "tcp=a", "nonblock=a", "epoll=a",
			      at("a", h_up.port), "epwait=a", "get=a:/conn", NULL};
	expect_identical(argv, env, &r);
	cr_expect(strstr(r.out, "epwait a out") != NULL, "%s", r.out);
	cr_expect_eq(conn_of(r.out, "a"), 4, "a new connection: %s", r.out);
	h_run_free(&r);
}

/* A socket registered with epoll AFTER connect is substituted, and epoll then watches the
 * substituted connection (it is the fd's file at registration time). */
Test(warm_identical, epoll_after_connect_watches_the_warm_connection, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r;
	const char *env[] = {config(warm_conf(h_up.port, 2, "nodelay = off\n")), NULL};
	const char *argv[] = {"sockprog", "tcp=kick", kick(), "sleep=300", "tcp=a", "nonblock=a",
			      at("a", h_up.port), "epoll=a", "epwait=a", "get=a:/conn", NULL};
	expect_identical(argv, env, &r);
	long id = conn_of(r.out, "a");
	cr_expect(id >= 2 && id <= 3, "served warm (conn %ld)", id);
	h_run_free(&r);
}

/* dup() before connect: both descriptors name one socket, so after connect both are
 * connected. Substituting the connect's fd alone leaves the other on the old, never
 * connected socket. */
Test(warm_identical, dup_before_connect_both_fds_connected, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r;
	const char *env[] = {config(warm_conf(h_up.port, 2, "nodelay = off\n")), NULL};
	const char *argv[] = {"sockprog", "tcp=kick", kick(), "sleep=300", "tcp=a", "dup=a:b",
			      at("a", h_up.port), "peer=a", "peer=b", NULL};
	expect_identical(argv, env, &r);
	cr_expect(strstr(r.out, "peer b ok") != NULL, "the dup'ed fd is connected too: %s", r.out);
	h_run_free(&r);
}

/* An option the kernel refuses on a connected socket (TCP_FASTOPEN_CONNECT) means no
 * substitution: the app gets a cold connect, as it should, but the warm socket taken for the
 * attempt must not be thrown away (each such connect would cost the server an extra
 * accept/close and the pool a refill). */
Test(warm_identical, unreplayable_option_does_not_burn_a_warm_socket, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r;
	const char *env[] = {config(warm_conf(h_up.port, 2, "nodelay = off\n")), NULL};
	const char *argv[] = {"sockprog", "tcp=kick", kick(), "sleep=300", "tcp=a", "setopt=a:6:30:1",
			      at("a", h_up.port), "get=a:/conn", "sleep=200", NULL};
	expect_identical(argv, env, &r);
	if (strstr(r.out, "setopt a ok") == NULL)
		cr_skip_test("TCP_FASTOPEN_CONNECT not available here: %s", r.out);
	/* Baseline: 1 accept. Shim: 2 warm + 1 cold for a = 3 more. */
	cr_expect_eq(h_stat(&h_up, "accepted"), 4, "a warm socket was closed unused and refilled");
	h_run_free(&r);
}

/* ---------------------------------------------------------------------- fork */

static int count_after(const char *out, const char *what)
{
	const char *p = strstr(out, what);
	return p ? atoi(p + strlen(what)) : -1;
}

/* The child of a fork does not hold the parent's ready warm sockets: its fd count is what it
 * is without warm pools. */
Test(warm_fork, child_drops_the_parents_ready_warm_sockets, .init = h_start_plain, .fini = h_stop)
{
	struct h_run w, c;
	const char *wenv[] = {config(warm_conf(h_up.port, 3, "nodelay = off\n")), NULL};
	const char *cenv[] = {config_named("cold.conf", "[lane default]\nnodelay = off\n"), NULL};
	const char *argv[] = {"sockprog", "tcp=kick", kick(), "sleep=300", "fdcount", "fork_fdcount", NULL};
	h_run_ok(&c, argv, cenv, 1, 30000);
	h_run_ok(&w, argv, wenv, 1, 30000);
	int pc = count_after(w.out, "fdcount "), cc = count_after(w.out, "fork_fdcount ");
	int base = count_after(c.out, "fork_fdcount ");
	cr_expect_eq(pc, base + 3, "the parent holds its 3 warm sockets: %s / %s", w.out, c.out);
	cr_expect_eq(cc, base, "the child holds none of them: %s / %s", w.out, c.out);
	h_run_free(&w);
	h_run_free(&c);
}

/* Also warm connects still in progress (the refill thread's, SYN sent, not yet in the pool)
 * must not leak into the child. A destination whose accept queue is full keeps them in
 * progress for the whole connect timeout. */
Test(warm_fork, child_does_not_inherit_in_progress_warm_connects)
{
	const char *args[] = {"--no-accept", "--backlog", "0", NULL};
	cr_assert_eq(h_upstream_start(&h_up, args), 0);
	snprintf(h_dir, sizeof(h_dir), "%s", h_up.dir);
	int fds[8];
	int nq = h_fill_backlog(&h_up, fds, 8);
	if (nq < 0)
		cr_skip_test("could not make connects hang on this kernel");
	struct h_run w, c;
	const char *wenv[] = {config(warm_conf(h_up.port, 2, "connect_timeout = 5s\n")), NULL};
	const char *cenv[] = {config_named("cold.conf", "[lane default]\nconnect_timeout = 5s\n"), NULL};
	const char *argv[] = {"sockprog", "tcp=kick", kick(), "sleep=200", "fdcount", "fork_fdcount", NULL};
	h_run_ok(&c, argv, cenv, 1, 30000);
	h_run_ok(&w, argv, wenv, 1, 30000);
	int cc = count_after(w.out, "fork_fdcount "), base = count_after(c.out, "fork_fdcount ");
	cr_expect_eq(count_after(w.out, "fdcount "), base + 2, "the parent has 2 connects in progress: %s",
		     w.out);
	cr_expect_eq(cc, base, "the child inherited the refill thread's in-progress sockets: %s", w.out);
	for (int i = 0; i < nq; i++)
		close(fds[i]);
	h_run_free(&w);
	h_run_free(&c);
	h_upstream_stop(&h_up);
}

/* -------------------------------------------------------------------- limits */

/* max_conns_per_host = 2 with prewarm *5: the server never sees more than 2 open from the
 * process, and the app sees what it sees without warm pools. */
Test(warm_limits, warm_sockets_count_against_max_conns_per_host, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r, c;
	const char *limits = "max_conns_per_host = 2\nqueue_timeout = 300ms\nnodelay = off\n";
	char cold_text[256];
	snprintf(cold_text, sizeof(cold_text), "[lane default]\n%s", limits);
	const char *wenv[] = {config(warm_conf(h_up.port, 5, limits)), NULL};
	const char *cenv[] = {config_named("cold.conf", cold_text), NULL};
	const char *argv[] = {"sockprog", "tcp=kick", kick(), "sleep=300", "tcp=a", at("a", h_up.port),
			      "get=a:/conn", "tcp=b", at("b", h_up.port), "get=b:/conn", "tcp=c",
			      at("c", h_up.port), "close=a", "tcp=d", at("d", h_up.port), "get=d:/conn",
			      "sleep=300", NULL};
	h_run_ok(&c, argv, cenv, 1, 30000);
	/* Server-side view, so one close in flight may still count (see below). */
	cr_expect_leq(h_stat(&h_up, "max_open"), 3);
	h_wait_stat(&h_up, "open", 0, 10000); /* max_open := open at the reset */
	h_reset(&h_up);
	h_run_ok(&r, argv, wenv, 1, 30000);
	char *a = normalize(c.out), *b = normalize(r.out);
	cr_expect_str_eq(b, a, "warm:\n%s\ncold:\n%s", r.out, c.out);
	free(a);
	free(b);
	cr_expect(strstr(r.out, "connect c err ETIMEDOUT") != NULL, "%s", r.out);
	cr_expect(strstr(r.out, "connect d ok") != NULL, "%s", r.out);
	/* The server learns of a client close a moment after it happens, so a
	 * refill right after a close can overlap it by one there: the limit
	 * itself is checked by the app's view above (c times out, d gets in). */
	cr_expect_leq(h_stat(&h_up, "max_open"), 3, "never more than the limit open, warm ones included");
	h_run_free(&r);
	h_run_free(&c);
}

/* Warm sockets hold the destination's units. A connect that cannot be served warm (bound,
 * epoll-registered, options that do not carry) must not wait for units that only idle warm
 * sockets hold: with the pool at the limit and no connection in use, it must still connect. */
Test(warm_limits, unservable_connect_is_not_starved_by_idle_warm_sockets, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r;
	const char *env[] = {config(warm_conf(h_up.port, 2, "max_conns_per_host = 2\nqueue_timeout = 300ms\n")),
			     NULL};
	const char *argv[] = {"sockprog", "tcp=kick", kick(), "sleep=300", "tcp=a", "bind=a@127.0.0.1",
			      at("a", h_up.port), "tcp=b", "nonblock=b", "epoll=b", at("b", h_up.port), NULL};
	h_run_ok(&r, argv, env, 1, 30000);
	cr_expect(strstr(r.out, "connect a ok") != NULL, "bound socket, 0 connections in use: %s", r.out);
	cr_expect(strstr(r.out, "connect b err EINPROGRESS") != NULL, "epoll-registered socket: %s", r.out);
	h_run_free(&r);
}

/* At the limit, a close followed by a connect: the connect misses the (empty) pool, which
 * wakes the refill thread, which may take the unit the close just freed; the connect then
 * waits for a unit while a warm socket holding it sits ready, and fails with ETIMEDOUT. The
 * connect must get that socket (or the unit). 40 rounds; without warm pools none fails. */
Test(warm_limits, close_then_connect_at_the_limit_never_times_out, .init = h_start_plain, .fini = h_stop)
{
	static char steps[128][64];
	const char *argv[140];
	int n = 0, k = 0;
	argv[n++] = "sockprog";
	argv[n++] = "tcp=kick";
	argv[n++] = kick();
	argv[n++] = "sleep=300";
	argv[n++] = "tcp=b";
	argv[n++] = at("b", h_up.port);
	argv[n++] = "tcp=a0";
	argv[n++] = at("a0", h_up.port);
	for (int i = 1; i <= 40; i++) {
		snprintf(steps[k], 64, "close=a%d", i - 1);
		argv[n++] = steps[k++];
		snprintf(steps[k], 64, "tcp=a%d", i);
		argv[n++] = steps[k++];
		snprintf(steps[k], 64, "connect=a%d@127.0.0.1:%d", i, h_up.port);
		argv[n++] = steps[k++];
	}
	argv[n] = NULL;
	const char *limits = "max_conns_per_host = 2\nqueue_timeout = 100ms\n";
	char cold_text[128];
	snprintf(cold_text, sizeof(cold_text), "[lane default]\n%s", limits);
	const char *wenv[] = {config(warm_conf(h_up.port, 2, limits)), NULL};
	const char *cenv[] = {config_named("cold.conf", cold_text), NULL};
	struct h_run c, r;
	h_run_ok(&c, argv, cenv, 1, 30000);
	cr_expect_not(strstr(c.out, "ETIMEDOUT"), "baseline: %s", c.out);
	h_run_ok(&r, argv, wenv, 1, 30000);
	cr_expect_not(strstr(r.out, "ETIMEDOUT"), "a connect lost its unit to the refill: %s", r.out);
	h_run_free(&c);
	h_run_free(&r);
}

/* A close the shim does not see (fclose of an fdopen'ed socket) leaves a stale fd-table entry;
 * when the refill thread's next socket gets that fd number, the stale entry's unit must be
 * given back, not overwritten (lost for good). Limit 3: after k's unseen close, three
 * connections must fit. */
Test(warm_limits, unseen_close_then_refill_on_the_same_fd_does_not_leak_a_unit, .init = h_start_plain,
     .fini = h_stop)
{
	struct h_run r, c;
	const char *extra = "max_conns_per_host = 3\nqueue_timeout = 200ms\nwarm_max_idle = 400ms\n";
	const char *wenv[] = {config(warm_conf(h_up.port, 1, extra)), NULL};
	const char *cenv[] = {config_named("cold.conf", "[lane default]\nmax_conns_per_host = 3\n"
							"queue_timeout = 200ms\n"),
			      NULL};
	/* No kick here: k is the first routed connect (cold), then closed unseen. The warm socket
	 * made meanwhile expires (400 ms) and its replacement takes the lowest free fd: k's. */
	const char *argv[] = {"sockprog", "tcp=k", at("k", h_up.port), "fclose=k", "sleep=1100", "tcp=a",
			      "tcp=b", "tcp=c", at("a", h_up.port), at("b", h_up.port), at("c", h_up.port), NULL};
	h_run_ok(&c, argv, cenv, 1, 30000);
	cr_expect_not(strstr(c.out, "ETIMEDOUT"), "baseline: %s", c.out);
	h_run_ok(&r, argv, wenv, 1, 30000);
	cr_expect_not(strstr(r.out, "ETIMEDOUT"), "a unit was lost: %s", r.out);
	h_run_free(&r);
	h_run_free(&c);
}

/* ------------------------------------------------------------------ app fds */

/* Warm sockets live in the app's fd table. When the app closes fds behind the shim's back
 * (a raw close_range syscall) and reuses the numbers, the engine must never touch the app's
 * new fds (no liveness probe, no close). */
/* (450 ms: the pool re-checks every ~300 ms from its start; the close_range must not fall
 * just before a check, which would find the numbers still free.) */
Test(warm_fds, pool_never_closes_an_app_fd_that_reused_a_warm_fd_number, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r;
	const char *env[] = {config(warm_conf(h_up.port, 2, "nodelay = off\n")), NULL};
	const char *argv[] = {"sockprog", "tcp=kick", kick(), "sleep=450", "sys_closeabove=kick", "tcp=x",
			      "sleep=600", "flags=x", at("x", h_up.port), "get=x:/conn", NULL};
	expect_identical(argv, env, &r);
	cr_expect(strstr(r.out, "flags x nonblock=0 cloexec=0") != NULL, "x is still the app's socket: %s",
		  r.out);
	cr_expect(strstr(r.out, "connect x ok") != NULL, "%s", r.out);
	h_run_free(&r);
}

/* ---------------------------------------------------------------- real tools */

Test(warm_tools, curl_cli_two_urls, .init = h_start_plain, .fini = h_stop)
{
	if (!tool_exists("curl"))
		cr_skip_test("curl is not installed");
	char u[128];
	snprintf(u, sizeof(u), "http://127.0.0.1:%d/conn", h_up.port);
	const char *env[] = {config(warm_conf(h_up.port, 2, NULL)), NULL};
	/* Keep-alive: the second URL reuses the first connection (libcurl's own reuse). */
	struct h_run a, b;
	const char *argva[] = {"curl", "-s", "-S", "--max-time", "10", u, u, NULL};
	h_run_ok(&a, argva, env, 1, 30000);
	cr_expect_eq(a.status, 0, "%s", a.err);
	cr_expect(strstr(a.out, "req=1") && strstr(a.out, "req=2"), "%s", a.out);
	cr_expect_str_empty(a.err, "%s", a.err);
	long before = h_stat(&h_up, "accepted"); /* ids never restart: run b's start at before + 1 */
	h_reset(&h_up);
	/* Connection: close, 5 per second: the second transfer needs a new connection, and gets
	 * a warm one (the first is cold: the pool starts with the process's first connect). */
	const char *argvb[] = {"curl", "-s", "-S", "--max-time", "10", "--rate", "5/s", "-H",
			       "Connection: close", u, u, NULL};
	h_run_ok(&b, argvb, env, 1, 30000);
	cr_expect_eq(b.status, 0, "%s", b.err);
	cr_expect_str_empty(b.err, "%s", b.err);
	const char *second = strstr(b.out, "conn=");
	second = second ? strstr(second + 1, "conn=") : NULL;
	long id2 = second ? atol(second + 5) : -1;
	/* Run b's first three accepts (ids before+1..before+3) are its cold first transfer and
	 * the 2 warm sockets; a cold second transfer would be before+4. */
	cr_expect(id2 > before && id2 <= before + 3, "second transfer on a prewarmed connection (conn %ld, "
		  "first id of the run %ld): %s", id2, before + 1, b.out);
	cr_expect_eq(h_stat(&h_up, "requests"), 2);
	h_run_free(&a);
	h_run_free(&b);
}

Test(warm_tools, ab_without_keepalive, .init = h_start_plain, .fini = h_stop)
{
	if (!tool_exists("ab"))
		cr_skip_test("ab is not installed (Debian: apache2-utils)");
	char u[128];
	snprintf(u, sizeof(u), "http://127.0.0.1:%d/", h_up.port);
	const char *env[] = {config(warm_conf(h_up.port, 4, NULL)), NULL};
	struct h_run r;
	const char *argv[] = {"ab", "-q", "-n", "200", "-c", "4", u, NULL};
	h_run_ok(&r, argv, env, 1, 30000);
	cr_expect_eq(r.status, 0, "%s\n%s", r.out, r.err);
	cr_expect(strstr(r.out, "Complete requests:      200") != NULL, "%s", r.out);
	cr_expect(strstr(r.out, "Failed requests:        0") != NULL, "%s", r.out);
	cr_expect_not(strstr(r.out, "Non-2xx"), "%s", r.out);
	cr_expect_eq(h_stat(&h_up, "requests"), 200);
	cr_expect_eq(h_stat(&h_up, "bad_requests"), 0);
	long acc = h_stat(&h_up, "accepted");
	/* One connection per request, plus the pool left at exit (4 ready, up to 4 refills in
	 * progress), plus the odd spare connection ab opens by itself (seen without the shim). */
	cr_expect(acc >= 200 && acc <= 210, "%ld connections for 200 requests", acc);
	/* Warm sockets were used: the first pool (among ids 1-8, ab's first connects race the
	 * first fill) all served requests. */
	char *peers = h_peers(&h_up);
	long lowest;
	unused_conns(peers, &lowest);
	cr_expect_gt(lowest, 8, "an early warm connection was never used: %s", peers ? peers : "");
	free(peers);
	h_run_free(&r);
}

Test(warm_tools, redis_benchmark_without_keepalive)
{
	if (!tool_exists("redis-server") || !tool_exists("redis-benchmark"))
		cr_skip_test("redis-server/redis-benchmark not installed (Debian: redis-server redis-tools)");
	char tmpl[] = "/tmp/cr-warm-redis-XXXXXX";
	cr_assert_not_null(mkdtemp(tmpl));
	snprintf(h_dir, sizeof(h_dir), "%s", tmpl);
	int port = free_port();
	cr_assert_gt(port, 0);
	char ps[16], log[300];
	snprintf(ps, sizeof(ps), "%d", port);
	snprintf(log, sizeof(log), "%s/redis.log", tmpl);
	const char *rargv[] = {"redis-server", "--port", ps, "--bind", "127.0.0.1", "--save", "",
			       "--appendonly", "no", "--dir", tmpl, "--daemonize", "no", NULL};
	pid_t rpid = bg_start(rargv, NULL, 0, log);
	cr_assert_gt(rpid, 0);
	if (wait_port(port, 10000) != 0) {
		bg_stop(rpid);
		cr_assert_fail("redis-server did not start: %s", h_read_file(log));
	}
	char conf[128];
	snprintf(conf, sizeof(conf), "[lane default]\nprewarm = 127.0.0.1:%d*4\n", port);
	const char *env[] = {config(conf), NULL};
	struct h_run r;
	const char *argv[] = {"redis-benchmark", "-h", "127.0.0.1", "-p", ps, "-n", "2000", "-c", "4",
			      "-k", "0", "-t", "ping", "--csv", NULL};
	int rc = h_run(&r, argv, env, 1, 60000);
	long cmds = -1;
	if (tool_exists("redis-cli")) {
		struct h_run s;
		const char *sargv[] = {"redis-cli", "-h", "127.0.0.1", "-p", ps, "info", "stats", NULL};
		if (h_run(&s, sargv, NULL, 0, 10000) == 0) {
			const char *p = strstr(s.out, "total_commands_processed:");
			cmds = p ? atol(p + strlen("total_commands_processed:")) : -1;
			h_run_free(&s);
		}
	}
	bg_stop(rpid);
	cr_assert_eq(rc, 0);
	cr_expect_eq(r.timed_out, 0);
	cr_expect_eq(r.status, 0, "%s\n%s", r.out, r.err);
	/* --csv: "PING_INLINE","<rps>",... one line per test, no error lines. */
	cr_expect(strstr(r.out, "\"PING_INLINE\"") && strstr(r.out, "\"PING_MBULK\""), "%s", r.out);
	cr_expect_not(strstr(r.out, "rror"), "%s", r.out);
	cr_expect_not(strstr(r.err, "rror"), "%s", r.err);
	if (cmds >= 0)
		cr_expect_geq(cmds, 4000, "every PING reached the server");
	h_run_free(&r);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpl);
	cr_expect_eq(system(cmd), 0);
}

/* nginx as a client (proxy_pass to the upstream) under the shim with prewarm to the upstream:
 * nginx registers its upstream sockets with epoll before connect, so none is substituted;
 * every request through nginx succeeds. */
Test(warm_tools, nginx_proxy_under_the_shim, .init = h_start_plain, .fini = h_stop)
{
	const char *ngx = access("/usr/sbin/nginx", X_OK) == 0 ? "/usr/sbin/nginx" : "nginx";
	if (strcmp(ngx, "nginx") == 0 && !tool_exists("nginx"))
		cr_skip_test("nginx is not installed (Debian: nginx-light)");
	int port = free_port();
	cr_assert_gt(port, 0);
	char text[4096], path[400], log[300];
	snprintf(text, sizeof(text),
		 "daemon off;\nmaster_process off;\nworker_processes 1;\npid %s/nginx.pid;\n"
		 "error_log %s/error.log info;\nenv CONNROUTE_CONFIG;\nenv LD_PRELOAD;\n"
		 "events { worker_connections 64; }\n"
		 "http {\n access_log off;\n client_body_temp_path %s/cb;\n proxy_temp_path %s/px;\n"
		 " fastcgi_temp_path %s/fc;\n uwsgi_temp_path %s/uw;\n scgi_temp_path %s/sc;\n"
		 " server {\n  listen 127.0.0.1:%d;\n  location / { proxy_pass http://127.0.0.1:%d; }\n }\n}\n",
		 h_dir, h_dir, h_dir, h_dir, h_dir, h_dir, h_dir, port, h_up.port);
	cr_assert_eq(h_write_file(h_dir, "nginx.conf", text, path, sizeof(path)), 0);
	snprintf(log, sizeof(log), "%s/nginx.out", h_dir);
	const char *env[] = {config(warm_conf(h_up.port, 2, NULL)), NULL};
	const char *nargv[] = {ngx, "-p", h_dir, "-c", path, NULL};
	pid_t npid = bg_start(nargv, env, 1, log);
	cr_assert_gt(npid, 0);
	if (wait_port(port, 10000) != 0) {
		bg_stop(npid);
		char elog[400];
		snprintf(elog, sizeof(elog), "%s/error.log", h_dir);
		cr_assert_fail("nginx did not start: %s %s", h_read_file(log), h_read_file(elog));
	}
	int ok = 0;
	for (int i = 0; i < 10; i++) {
		int fd = h_connect("127.0.0.1", port, 5000);
		int st = 0;
		char *body = NULL;
		if (fd >= 0 && h_sock_http(fd, "GET", "/conn", "Connection: close\r\n", NULL, &st, &body) == 0 &&
		    st == 200 && body && strstr(body, "conn="))
			ok++;
		free(body);
		if (fd >= 0)
			close(fd);
		h_sleep_ms(20);
	}
	h_sleep_ms(200);
	char *peers = h_peers(&h_up);
	bg_stop(npid);
	cr_expect_eq(ok, 10, "requests through nginx");
	cr_expect_eq(h_stat(&h_up, "requests"), 10);
	/* nginx's own upstream connects were all new (epoll-registered: not substituted), so
	 * the two warm connections stay unused. */
	long lowest;
	int unused = unused_conns(peers, &lowest);
	cr_expect_eq(unused, 2, "the 2 warm connections were never used by nginx: %s", peers ? peers : "");
	free(peers);
}

/* ------------------------------------------------------------------- libcurl */

/* No libcurl pooling (max_idle_per_host = 0): each transfer opens a connection, and with
 * prewarm it gets a warm one through the opensocket callback. The pool hands out its newest
 * socket (LIFO), so one of the first two warm connections idles to the end; the other unused
 * one must be the newest of all: a refill, which only happens after a hand-out. A pool
 * nobody used would leave its first two (low ids) unused and make no refill. */
Test(warm_curl, fresh_handles_without_pooling_use_warm_sockets, .init = h_start_plain, .fini = h_stop)
{
	char u[128];
	snprintf(u, sizeof(u), "http://127.0.0.1:%d/conn", h_up.port);
	const char *env[] = {config(warm_conf(h_up.port, 2, "max_idle_per_host = 0\n")), NULL};
	struct h_run r;
	const char *argv[] = {"curlprog", "--mode", "fresh", "--requests", "10", "--pause-ms", "30",
			      "--print-conn", u, NULL};
	h_run_ok(&r, argv, env, 1, 30000);
	cr_expect_eq(r.status, 0, "%s\n%s", r.out, r.err);
	cr_expect(strstr(r.out, "summary requests=10 ok=10 errors=0") != NULL, "%s", r.out);
	cr_expect_eq(h_stat(&h_up, "requests"), 10);
	long acc = h_stat(&h_up, "accepted");
	cr_expect_eq(acc, 12, "10 connections (no pooling) + 2 left warm at exit");
	/* Which connections never served a request: must be the two newest (the pool at exit),
	 * not the first two (a pool nobody used). */
	char *peers = h_peers(&h_up);
	cr_assert_not_null(peers);
	long lowest;
	int unused = unused_conns(peers, &lowest);
	cr_expect_eq(unused, 2, "%s", peers);
	char last[32];
	snprintf(last, sizeof(last), "\n%ld ", acc);
	const char *l = strstr(peers, last);
	cr_expect(l && strstr(l, " 0") && (!strchr(l + 1, '\n') || strstr(l, " 0") < strchr(l + 1, '\n')),
		  "the newest connection (%ld) is an unused refill: %s", acc, peers);
	free(peers);
	h_run_free(&r);
}

/* Concurrent transfers (a thread per request) with a warm lane and libcurl pooling on. */
Test(warm_curl, thread_per_request_with_prewarm_runs_clean, .init = h_start_plain, .fini = h_stop)
{
	char u[128];
	snprintf(u, sizeof(u), "http://127.0.0.1:%d/conn", h_up.port);
	const char *env[] = {config(warm_conf(h_up.port, 2, NULL)), NULL};
	struct h_run r;
	const char *argv[] = {"curlprog", "--mode", "thread-per-request", "--threads", "4", "--requests", "40",
			      "--quiet", u, NULL};
	h_run_ok(&r, argv, env, 1, 30000);
	cr_expect_eq(r.status, 0, "%s\n%s", r.out, r.err);
	cr_expect(strstr(r.out, "summary requests=40 ok=40 errors=0") != NULL, "%s", r.out);
	cr_expect_eq(h_stat(&h_up, "requests"), 40);
	h_run_free(&r);
}

/* prewarm_url: the lane's libcurl pool is filled with whole connections by a request
 * of the lane's prewarm_method (HEAD) as soon as the program shows libcurl traffic, and
 * the program's own requests then ride on them. 3 connections prewarmed, 3 threads. */
Test(warm_curl, prewarm_url_fills_the_lane_pool, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r;
	char text[512], url[128];
	snprintf(text, sizeof(text),
		 "[lane default]\nprewarm_url = http://127.0.0.1:%d/warm\nprewarm = 127.0.0.1:%d*3\n", h_up.port,
		 h_up.port);
	const char *env[] = {config(text), NULL};
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/conn", h_up.port);
	const char *argv[] = {"curlprog", "--mode", "fresh", "--threads", "3", "--requests", "4", "--pause-ms",
			      "200", "--quiet", url, NULL};
	h_run_ok(&r, argv, env, 1, 30000);
	cr_expect_eq(r.status, 0, "%s%s", r.out, r.err);
	cr_expect(strstr(r.out, "ok=12 ") != NULL, "%s", r.out);
	cr_expect_eq(h_stat(&h_up, "path_warm"), 3, "three HEAD requests filled the pool");
	cr_expect_eq(h_stat(&h_up, "requests_other") + h_stat(&h_up, "requests_get"), 15, "3 prewarm + 12 app");
	/* Prewarm connections, raw warm sockets for the same destination, and at
	 * most one cold connection per thread racing the prewarm. */
	cr_expect_leq(h_stat(&h_up, "accepted"), 9, "connections were reused, not one per request");
	h_run_free(&r);
}
