/* multiprog: an ordinary libcurl multi-interface program, for the tests of multi transfers
 * in lanes (docs/INTERNALS.md, "libcurl lanes", multi transfers).
 *
 *   multiprog MODE URL [-n N] [-t THREADS] [-k KEY,KEY...] [-c] [-e] [-T MS] [-s] [-r R]
 *             [-p MS] [-a] [-R HOST:PORT:ADDR[,ADDR]] [-F]
 *
 * MODE: perform  curl_multi_perform + curl_multi_poll, looping while running_handles > 0
 *       socket   curl_multi_socket_action with CURLMOPT_SOCKETFUNCTION (epoll) and a
 *                single-shot CURLMOPT_TIMERFUNCTION, looping until every transfer's
 *                CURLMSG_DONE was read
 *       wait     curl_multi_perform + curl_multi_wait + curl_multi_timeout
 * Each of THREADS (default 1) threads drives its own multi handle with N (default 1)
 * transfers of URL added at once; thread i first calls connroute_set_key(KEY i) if -k gives
 * keys (without the shim it fails and the thread goes on). Transfers are read with
 * curl_multi_info_read and removed with curl_multi_remove_handle. Then, per transfer in
 * order:  "x <thread> <i> rc <CURLcode> http <status> bytes <body bytes>"
 * -c adds " conn <X-Conn-Id>", -e adds " err <error buffer>" for a failed one.
 * -T sets CURLOPT_TIMEOUT_MS (default 10000). -s: each handle's TIMEOUT is not set.
 * -r R: R rounds (default 1): the same handles are added again to the same multi after
 * each round (persistent handles and multi; the output is the last round's). For
 * bench/percost-style measurements of the cost per multi transfer.
 * -p MS: pause between rounds. -a: after each round, its lines too, as
 * "r <round> <thread> <i> rc <CURLcode> http <status>" (+ " err <error buffer>" with -e).
 * -R: CURLOPT_RESOLVE with that entry. -F: CURLOPT_FORBID_REUSE (a connection per transfer).
 * A transfer that never got a CURLMSG_DONE prints rc -1. Exit status 0 when every
 * transfer succeeded, 1 otherwise, 2 on bad usage. */
#include <connroute.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <time.h>

#include "conn_id.h"

static const char *mode, *url;
static int nx = 1, nthreads = 1, show_conn, show_err, no_timeout, rounds = 1;
static int pause_ms, all_rounds, forbid_reuse;
static const char *resolve;
static long timeout_ms = 10000;
static char *keys[64];
static int nkeys;

struct xfer {
	CURL *h;
	int done;
	CURLcode rc;
	long http;
	long bytes;
	char conn[32];
	char err[CURL_ERROR_SIZE];
};

struct thr {
	int id;
	pthread_t t;
	struct xfer *x;
	CURLM *m;
	int ndone;
	/* socket mode */
	int ep;
	long timer_ms; /* -1: no timer */
	struct timespec timer_set;
	struct curl_slist *resolve;
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	(void)p;
	((struct xfer *)ud)->bytes += (long)(size * n);
	return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
	struct xfer *x = ud;
	conn_id_header(p, size * n, x->conn, sizeof x->conn);
	return size * n;
}

static void read_msgs(struct thr *t)
{
	CURLMsg *msg;
	int left;
	while ((msg = curl_multi_info_read(t->m, &left))) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		CURL *h = msg->easy_handle;
		CURLcode rc = msg->data.result;
		for (int i = 0; i < nx; i++) {
			struct xfer *x = &t->x[i];
			if (x->h != h || x->done)
				continue;
			x->done = 1;
			x->rc = rc;
			curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &x->http);
			t->ndone++;
			curl_multi_remove_handle(t->m, h);
		}
	}
}

static long ms_since(const struct timespec *a)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - a->tv_sec) * 1000 + (now.tv_nsec - a->tv_nsec) / 1000000;
}

static int on_socket(CURL *e, curl_socket_t s, int what, void *up, void *sp)
{
	(void)e;
	(void)sp;
	struct thr *t = up;
	struct epoll_event ev = {.data.fd = s};
	if (what == CURL_POLL_REMOVE) {
		epoll_ctl(t->ep, EPOLL_CTL_DEL, s, NULL);
		return 0;
	}
	ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
	if (epoll_ctl(t->ep, EPOLL_CTL_MOD, s, &ev) != 0 && errno == ENOENT)
		epoll_ctl(t->ep, EPOLL_CTL_ADD, s, &ev);
	return 0;
}

/* A single-shot timer, as event libraries have. */
static int on_timer(CURLM *m, long ms, void *up)
{
	(void)m;
	struct thr *t = up;
	t->timer_ms = ms;
	clock_gettime(CLOCK_MONOTONIC, &t->timer_set);
	return 0;
}

static void run_socket(struct thr *t)
{
	int running;
	t->ep = epoll_create1(0);
	while (t->ndone < nx) {
		int wait = -1;
		if (t->timer_ms >= 0) {
			wait = (int)(t->timer_ms - ms_since(&t->timer_set));
			if (wait < 0)
				wait = 0;
		}
		if (wait < 0 || wait > 30000)
			wait = 30000; /* a lost timer shows as a stall, then a failure */
		struct epoll_event evs[16];
		int n = epoll_wait(t->ep, evs, 16, wait);
		if (n == 0) {
			if (t->timer_ms < 0)
				break; /* nothing will ever happen again */
			t->timer_ms = -1; /* fired */
			curl_multi_socket_action(t->m, CURL_SOCKET_TIMEOUT, 0, &running);
		}
		for (int i = 0; i < n; i++) {
			int f = (evs[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
				(evs[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
				(evs[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
			curl_multi_socket_action(t->m, evs[i].data.fd, f, &running);
		}
		read_msgs(t);
	}
}

static void run_perform(struct thr *t, int use_wait)
{
	int running = 0;
	do {
		if (curl_multi_perform(t->m, &running) != CURLM_OK)
			break;
		read_msgs(t);
		if (!running)
			break;
		if (use_wait) {
			long tmo = -1;
			curl_multi_timeout(t->m, &tmo);
			if (tmo < 0 || tmo > 1000)
				tmo = 1000;
			curl_multi_wait(t->m, NULL, 0, (int)tmo, NULL);
		} else {
			curl_multi_poll(t->m, NULL, 0, 1000, NULL);
		}
	} while (running);
	read_msgs(t);
}

static void *run(void *arg)
{
	struct thr *t = arg;
	if (nkeys > 0 && connroute_set_key(keys[t->id % nkeys]) != 0)
		fprintf(stderr, "multiprog: setkey err %d\n", errno);
	t->m = curl_multi_init();
	t->timer_ms = -1;
	if (resolve)
		t->resolve = curl_slist_append(NULL, resolve);
	if (!strcmp(mode, "socket")) {
		curl_multi_setopt(t->m, CURLMOPT_SOCKETFUNCTION, on_socket);
		curl_multi_setopt(t->m, CURLMOPT_SOCKETDATA, t);
		curl_multi_setopt(t->m, CURLMOPT_TIMERFUNCTION, on_timer);
		curl_multi_setopt(t->m, CURLMOPT_TIMERDATA, t);
	}
	for (int i = 0; i < nx; i++) {
		struct xfer *x = &t->x[i];
		x->h = curl_easy_init();
		curl_easy_setopt(x->h, CURLOPT_URL, url);
		curl_easy_setopt(x->h, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(x->h, CURLOPT_WRITEFUNCTION, on_body);
		curl_easy_setopt(x->h, CURLOPT_WRITEDATA, x);
		curl_easy_setopt(x->h, CURLOPT_HEADERFUNCTION, on_header);
		curl_easy_setopt(x->h, CURLOPT_HEADERDATA, x);
		curl_easy_setopt(x->h, CURLOPT_ERRORBUFFER, x->err);
		if (!no_timeout)
			curl_easy_setopt(x->h, CURLOPT_TIMEOUT_MS, timeout_ms);
		if (forbid_reuse)
			curl_easy_setopt(x->h, CURLOPT_FORBID_REUSE, 1L);
		if (resolve)
			curl_easy_setopt(x->h, CURLOPT_RESOLVE, t->resolve);
	}
	for (int r = 0; r < rounds; r++) {
		t->ndone = 0;
		for (int i = 0; i < nx; i++) {
			struct xfer *x = &t->x[i];
			x->rc = (CURLcode)-1;
			x->done = 0;
			x->bytes = 0;
			x->http = 0;
			x->conn[0] = '\0';
			curl_multi_add_handle(t->m, x->h);
		}
		if (!strcmp(mode, "socket"))
			run_socket(t);
		else
			run_perform(t, !strcmp(mode, "wait"));
		if (all_rounds) {
			flockfile(stdout);
			for (int i = 0; i < nx; i++) {
				struct xfer *x = &t->x[i];
				printf("r %d %d %d rc %d http %ld", r, t->id, i, (int)x->rc,
				       x->http);
				if (show_err && x->rc != CURLE_OK)
					printf(" err %s", x->err);
				printf("\n");
			}
			funlockfile(stdout);
		}
		if (pause_ms > 0 && r + 1 < rounds) {
			struct timespec ts = {pause_ms / 1000, (pause_ms % 1000) * 1000000L};
			nanosleep(&ts, NULL);
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: multiprog perform|socket|wait URL [-n N] [-t T] [-k K,..] "
				"[-c] [-e] [-T MS] [-s]\n");
		return 2;
	}
	mode = argv[1];
	url = argv[2];
	for (int i = 3; i < argc; i++) {
		if (!strcmp(argv[i], "-n") && i + 1 < argc)
			nx = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-t") && i + 1 < argc)
			nthreads = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-T") && i + 1 < argc)
			timeout_ms = atol(argv[++i]);
		else if (!strcmp(argv[i], "-k") && i + 1 < argc) {
			char *s = argv[++i], *tok;
			while ((tok = strsep(&s, ",")) && nkeys < 64)
				keys[nkeys++] = tok;
		} else if (!strcmp(argv[i], "-c"))
			show_conn = 1;
		else if (!strcmp(argv[i], "-e"))
			show_err = 1;
		else if (!strcmp(argv[i], "-s"))
			no_timeout = 1;
		else if (!strcmp(argv[i], "-r") && i + 1 < argc)
			rounds = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-p") && i + 1 < argc)
			pause_ms = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-a"))
			all_rounds = 1;
		else if (!strcmp(argv[i], "-R") && i + 1 < argc)
			resolve = argv[++i];
		else if (!strcmp(argv[i], "-F"))
			forbid_reuse = 1;
		else
			return 2;
	}
	if (nx < 1 || nthreads < 1 || nthreads > 64)
		return 2;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	struct thr *th = calloc((size_t)nthreads, sizeof(*th));
	for (int i = 0; i < nthreads; i++) {
		th[i].id = i;
		th[i].x = calloc((size_t)nx, sizeof(struct xfer));
		pthread_create(&th[i].t, NULL, run, &th[i]);
	}
	int bad = 0;
	for (int i = 0; i < nthreads; i++) {
		pthread_join(th[i].t, NULL);
		for (int j = 0; j < nx; j++) {
			struct xfer *x = &th[i].x[j];
			printf("x %d %d rc %d http %ld bytes %ld", i, j, (int)x->rc, x->http, x->bytes);
			if (show_conn)
				printf(" conn %s", x->conn[0] ? x->conn : "-");
			if (show_err && x->rc != CURLE_OK)
				printf(" err %s", x->err);
			printf("\n");
			bad |= x->rc != CURLE_OK;
			curl_easy_cleanup(x->h);
		}
		curl_multi_cleanup(th[i].m);
		curl_slist_free_all(th[i].resolve);
		free(th[i].x);
	}
	free(th);
	curl_global_cleanup();
	return bad ? 1 : 0;
}
