/* connroute: the background thread; see bg.h.
 *
 * One thread per process, started by the first routed call (never by the
 * constructor), detached, with every signal blocked. Each turn of its loop
 * (poll, at most 1 s):
 *   - serves the metrics endpoint when `[global] metrics` is set: a tiny
 *     HTTP/1.0 responder, one client at a time, inline, with 1 s socket
 *     timeouts and a bounded parser, so a slow scraper delays nothing but
 *     the next scrape;
 *   - rebinds when the configured address changed (a reload);
 *   - once a second, asks the engine to reload the config file if it
 *     changed (the check itself is the engine's);
 *   - runs the periodic job registered at init (thread.h: the libcurl idle
 *     sweep), which also makes the thread start without a config file.
 *
 * Its sockets are made with raw calls (socket/bind/listen/accept4 are not
 * hooked; connect and close go to the kernel directly), so they are never
 * routed, and with SOCK_CLOEXEC. The listener lives in the host's fd table:
 * the host may close it behind our back (closefrom in a daemon), so before
 * closing it we check that the fd still is our socket (inode), and a
 * listener that vanished is forgotten, never closed, and bound anew. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "alog_writer.h"
#include "base.h"
#include "bg.h"
#include "cfgref.h"
#include "endpoint.h"
#include "engine.h"
#include "log.h"
#include "metrics.h"
#include "ownfd.h"
#include "sys.h"
#include "thread.h"

#define METRICS_MAX      sizeof(((struct cr_config *)0)->metrics)
#define REQ_MAX          2048 /* request line + headers we read */
#define CLIENTS_PER_TURN 8
#define BIND_RETRY_MS    10000

/* The listener, as the running thread left it: for the exit-time unlink and
 * for a fork child to drop its parent's. Written by the thread only. */
static struct {
	atomic_int fd; /* -1 none */
	dev_t dev;     /* the socket's identity (fstat) */
	ino_t ino;
	atomic_int pid;                                         /* process that made it */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* file to unlink, "" none */
	dev_t fdev;                                             /* the file's identity (stat) */
	ino_t fino;
} lst = {.fd = -1};

static void raw_close(int fd)
{
	if (fd >= 0)
		cr_sys_close(fd);
}

static int fd_is(int fd, dev_t dev, ino_t ino)
{
	struct stat st;
	return fd >= 0 && fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == dev &&
	       st.st_ino == ino;
}

/* Removes our socket file, if the path still names the socket we bound
 * (never a newer process's). */
static void unlink_ours(void)
{
	struct stat st;
	if (lst.path[0] && stat(lst.path, &st) == 0 && S_ISSOCK(st.st_mode) &&
	    st.st_dev == lst.fdev && st.st_ino == lst.fino)
		unlink(lst.path);
	lst.path[0] = '\0';
}

static void close_listener(void)
{
	int fd = atomic_load(&lst.fd);
	if (fd < 0)
		return;
	if (fd_is(fd, lst.dev, lst.ino))
		raw_close(fd);
	unlink_ours();
	atomic_store(&lst.fd, -1);
}

/* In a fork child: the parent's listener (inherited, still open) is not
 * ours to serve nor to unlink; close our copy of it. */
static void drop_inherited(void)
{
	int fd = atomic_load(&lst.fd);
	if (fd >= 0 && atomic_load(&lst.pid) != (int)getpid() && fd_is(fd, lst.dev, lst.ino))
		raw_close(fd);
	atomic_store(&lst.fd, -1);
	lst.path[0] = '\0';
}

__attribute__((destructor)) static void bg_fini(void)
{
	if (atomic_load(&lst.fd) >= 0 && atomic_load(&lst.pid) == (int)getpid())
		unlink_ours();
}

/* A socket file at PATH: left by a dead process (nobody accepts: remove it),
 * or live (leave it). Anything else at PATH is never removed. 0 when PATH is
 * free now, -1 with errno otherwise. */
static int clear_stale(const char *path, const struct sockaddr_storage *ss, socklen_t len)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISSOCK(st.st_mode)) {
		errno = EEXIST;
		return -1;
	}
	int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (probe < 0)
		return -1;
	long r = cr_sys_connect(probe, (const struct sockaddr *)ss, len);
	raw_close(probe);
	if (r == 0 || r == -EAGAIN || r == -EINPROGRESS) {
		errno = EADDRINUSE; /* a live process serves it */
		return -1;
	}
	if (r != -ECONNREFUSED) {
		errno = (int)-r;
		return -1;
	}
	return unlink(path) == 0 || errno == ENOENT ? 0 : -1;
}

/* Binds SPEC; 0 (lst filled) or -1 with errno. */
static int open_listener(const char *spec)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char path[sizeof(lst.path)];
	int fd, one = 1, err;
	struct stat st;

	if (cr_endpoint_parse(spec, (long)getpid(), &ss, &len, path, sizeof(path)) != 0) {
		errno = EINVAL;
		return -1;
	}
	if (path[0] && clear_stale(path, &ss, len) != 0)
		return -1;
	/* Above the floor: never a number the host counts on (docs/INTERNALS.md,
	 * "Metrics and reload"). */
	fd = cr_ownfd_raise(socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), 1);
	if (fd < 0)
		return -1;
	if (ss.ss_family != AF_UNIX)
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&ss, len) != 0)
		goto fail;
	/* Owner only, before listen(): until then a connect is refused, so no
	 * client ever reaches it with looser permissions. */
	if (path[0] && (chmod(path, 0600) != 0 || stat(path, &st) != 0)) {
		err = errno;
		unlink(path);
		errno = err;
		goto fail;
	}
	if (listen(fd, 16) != 0) {
		err = errno;
		if (path[0])
			unlink(path);
		errno = err;
		goto fail;
	}
	struct stat fs;
	if (fstat(fd, &fs) != 0)
		goto fail;
	lst.dev = fs.st_dev;
	lst.ino = fs.st_ino;
	memcpy(lst.path, path, sizeof(path));
	if (path[0]) {
		lst.fdev = st.st_dev;
		lst.fino = st.st_ino;
	}
	atomic_store(&lst.pid, (int)getpid());
	atomic_store(&lst.fd, fd);
	return 0;
fail:
	err = errno;
	raw_close(fd);
	errno = err;
	return -1;
}

/* ------------------------------------------------------------------ HTTP */

/* The client being served (one at a time, on this thread only). Every use
 * checks that its number still holds our socket: the host may close it
 * (closefrom) and reuse the number for a file of its own while a slow
 * client sends its request. */
static uint64_t client_ino;

static int client_ours(int fd)
{
	return client_ino && cr_fd_inode(fd) == client_ino;
}

static void send_all(int fd, const char *p, size_t n)
{
	int64_t deadline = cr_now_ms() + 5000;
	for (int i = 0; n > 0 && i < 4096 && cr_now_ms() < deadline && client_ours(fd); i++) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

static void respond(int fd, int code, const char *reason, const char *ctype, const char *body,
		    size_t blen, int head_only)
{
	char hdr[256];
	int n = snprintf(hdr, sizeof(hdr),
			 "HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n",
			 code, reason, ctype, blen);
	send_all(fd, hdr, (size_t)n);
	if (!head_only && blen)
		send_all(fd, body, blen);
}

struct rbuf {
	char *p;
	size_t cap;
};

static void serve_metrics(int fd, struct rbuf *rb, int head_only)
{
	size_t n = 0;
	for (int i = 0; i < 4; i++) {
		n = cr_metrics_render(rb->p, rb->cap);
		if (rb->p && n < rb->cap)
			break;
		size_t want = n + n / 4 + 4096;
		char *q = realloc(rb->p, want);
		if (!q) {
			respond(fd, 500, "Internal Server Error", "text/plain", "out of memory\n",
				14, 0);
			return;
		}
		rb->p = q;
		rb->cap = want;
	}
	if (!rb->p || n >= rb->cap) {
		respond(fd, 500, "Internal Server Error", "text/plain",
			"metrics grew while rendering\n", 29, 0);
		return;
	}
	respond(fd, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", rb->p, n, head_only);
}

/* QUERY: the text after '?' or NULL. `pid=N` (connroute reload PID) is a
 * precondition: another process's endpoint at the same address (the second
 * could not bind) must not reload instead. The answer names our pid. */
static void serve_reload(int fd, const char *query)
{
	char body[64];
	long me = (long)getpid();
	const char *p = query ? strstr(query, "pid=") : NULL;
	if (p && (p == query || p[-1] == '&') && strtol(p + 4, NULL, 10) != me) {
		int n = snprintf(body, sizeof(body), "not-this-process pid=%ld\n", me);
		respond(fd, 412, "Precondition Failed", "text/plain", body, (size_t)n, 0);
		return;
	}
	int r = cr_engine_reload(1);
	const char *word = r > 0 ? "applied" : r == 0 ? "unchanged" : "rejected";
	int n = snprintf(body, sizeof(body), "%s pid=%ld\n", word, me);
	/* 409: the file was not taken (its problem is in the process's log). */
	respond(fd, r < 0 ? 409 : 200, r < 0 ? "Conflict" : "OK", "text/plain", body, (size_t)n, 0);
}

/* Reads the request head: stops at the blank line, a full buffer, EOF, or
 * after 2 s in all (each read is bounded by SO_RCVTIMEO). Returns the bytes
 * read; BUF is NUL-terminated. */
static size_t read_head(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	int64_t deadline = cr_now_ms() + 2000;
	buf[0] = '\0';
	for (int i = 0; i < 32 && n + 1 < cap && cr_now_ms() < deadline && client_ours(fd); i++) {
		ssize_t k = recv(fd, buf + n, cap - 1 - n, 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		n += (size_t)k;
		buf[n] = '\0';
		if (strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n"))
			break;
	}
	return n;
}

static void serve_client(int fd, struct rbuf *rb)
{
	char req[REQ_MAX], method[8], target[128];
	struct timeval tv = {.tv_sec = 1};
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));

	read_head(fd, req, sizeof(req));
	char *eol = strchr(req, '\n');
	if (!eol || sscanf(req, "%7s %127s", method, target) != 2) {
		respond(fd, 400, "Bad Request", "text/plain", "bad request\n", 12, 0);
		return;
	}
	char *q = strchr(target, '?');
	if (q)
		*q++ = '\0';
	int get = !strcmp(method, "GET"), head = !strcmp(method, "HEAD"),
	    post = !strcmp(method, "POST");
	if ((get || head) && !strcmp(target, "/metrics"))
		serve_metrics(fd, rb, head);
	else if ((get || post) && !strcmp(target, "/reload"))
		serve_reload(fd, q);
	else
		respond(fd, 404, "Not Found", "text/plain", "not found; try /metrics or /reload\n",
			35, head);
}

/* Serves the clients waiting. -1 when accept fails for want of resources
 * (EMFILE: the host used up its fds...): the listener stays readable, so the
 * caller must look away for a while rather than spin. */
static int serve_clients(int lfd, struct rbuf *rb)
{
	/* Still ours? (The host may have closed it and reused the number since
	 * the check at the top of the loop: never accept on its socket.) */
	if (!fd_is(lfd, lst.dev, lst.ino))
		return 0;
	int64_t t0 = cr_now_ms();
	/* A few clients per turn, and not for long: the watcher's turn comes. */
	for (int i = 0; i < CLIENTS_PER_TURN && cr_now_ms() - t0 < 2000; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
		}
		fd = cr_ownfd_raise(fd, 1);
		client_ino = cr_fd_inode(fd);
		serve_client(fd, rb);
		/* Unread bytes (a request body) would turn our close into a
		 * reset the client might see before the answer: drain a little. */
		if (client_ours(fd)) {
			shutdown(fd, SHUT_WR);
			char sink[512];
			for (int k = 0; k < 8 && client_ours(fd) &&
					recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0;
			     k++) {
			}
		}
		/* The host may have closed the number meanwhile (closefrom) and
		 * reused it: then the client is simply dropped. */
		cr_ownfd_close(fd, client_ino);
	}
	return 0;
}

/* ----------------------------------------------------------------- thread */

/* This process is a fork child of the one that loaded the config. */
static int forked;

/* The configured address now ("" = off). */
static void configured(char *out)
{
	const struct cr_config *cfg = cr_cfgref_acquire();
	out[0] = '\0';
	if (cfg) {
		/* A fork child serves its own endpoint only at a per-process
		 * address (unix:...%p): at the parent's address it could only
		 * fail ("address in use") or, for a file, litter. */
		if (!forked || strstr(cfg->metrics, "%p"))
			snprintf(out, METRICS_MAX, "%s", cfg->metrics);
		cr_cfgref_release(cfg);
	}
}

static void announce(const char *spec)
{
	if (lst.path[0])
		cr_logmsg(CR_LL_INFO, "metrics on unix:%s", lst.path);
	else
		cr_logmsg(CR_LL_INFO, "metrics on %s", spec);
}

static void *bg_main(void *arg)
{
	char want[METRICS_MAX], bound[METRICS_MAX] = "", tried[METRICS_MAX] = "";
	struct rbuf rb = {NULL, 0};
	int64_t next_reload = cr_now_ms() + 1000, retry_at = 0, quiet_until = 0;
	(void)arg;

	drop_inherited();
	for (;;) {
		int64_t now = cr_now_ms();
		int fd = atomic_load(&lst.fd);

		/* The host closed our listener (closefrom...): forget it. */
		if (fd >= 0 && !fd_is(fd, lst.dev, lst.ino)) {
			cr_logmsg(
				CR_LL_WARN,
				"metrics listener fd %d was closed by the program; listening again",
				fd);
			atomic_store(&lst.fd, -1);
			unlink_ours();
			bound[0] = '\0';
			retry_at = 0;
			fd = -1;
		}
		/* The access log's writer: its own thread, started as soon as
		 * a lane logs (the first records are being made now). */
		cr_alog_writer_kick();
		configured(want);
		if (strcmp(want, bound) != 0) {
			if (fd >= 0) {
				close_listener();
				fd = -1;
				bound[0] = '\0';
			}
			if (strcmp(want, tried) != 0) {
				memcpy(tried, want, sizeof(tried));
				retry_at =
					0; /* a new address: try it now, and say so if it fails */
				if (want[0] && open_listener(want) == 0) {
					memcpy(bound, want, sizeof(bound));
					fd = atomic_load(&lst.fd);
					announce(want);
				} else if (want[0]) {
					cr_logmsg(CR_LL_WARN,
						  "cannot serve metrics on %s: %s; retrying every "
						  "%d s, routing "
						  "goes on",
						  want, strerror(errno), BIND_RETRY_MS / 1000);
					retry_at = now + BIND_RETRY_MS;
				}
			} else if (want[0] && now >= retry_at) {
				if (open_listener(want) == 0) {
					memcpy(bound, want, sizeof(bound));
					fd = atomic_load(&lst.fd);
					announce(want);
				} else {
					retry_at = now + BIND_RETRY_MS;
				}
			}
		}

		int wait = (int)(next_reload - now);
		if (wait < 0)
			wait = 0;
		if (wait > 1000)
			wait = 1000;
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int n = poll(&p, fd >= 0 && now >= quiet_until ? 1 : 0, wait);
		/* A listener that is readable but yields nobody (EMFILE), or in
		 * error: looked at again in a while, never spun on. */
		if (n > 0 && (!(p.revents & POLLIN) || serve_clients(fd, &rb) < 0))
			quiet_until = cr_now_ms() + 500;

		if (cr_now_ms() >= next_reload) {
			cr_engine_reload(0);
			next_reload = cr_now_ms() + 1000;
		}
		cr_periodic_run();
	}
	return NULL;
}

/* The built-in config (no CONNROUTE_CONFIG) has no file to watch and no
 * endpoint, now or ever: no thread, unless the periodic job has work (the
 * process pools libcurl connections, which must be closed when idle). */
static int bg_wanted(void)
{
	const struct cr_config *cfg = cr_cfgref_acquire();
	int idle = cfg && !cfg->path[0] && !cfg->metrics[0];
	if (cfg)
		cr_cfgref_release(cfg);
	return !idle || cr_periodic_wanted();
}

static struct cr_thread bg_thread = {.name = "connroute-bg", .main = bg_main, .wanted = bg_wanted};

void cr_bg_kick(void)
{
	(void)cr_thread_kick(&bg_thread);
}

void cr_bg_atfork_child(void)
{
	/* The thread did not survive the fork; the next kick starts ours. The
	 * parent's listener is closed now rather than at that kick: a child that
	 * never routes must not keep the parent's endpoint open after the parent
	 * is gone (clients would hang in its backlog). fstat and close only:
	 * async-signal-safe, as an atfork child handler must be. */
	drop_inherited();
	cr_thread_atfork_child(&bg_thread);
	cr_alog_writer_atfork_child();
	forked = 1;
}
