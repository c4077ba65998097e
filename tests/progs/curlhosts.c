/* curlhosts: small libcurl programs written against libcurl's documented behaviour, each a
 * host that the shim must not disturb (issue 11, items 3, 4 and 7). Run unmodified with and
 * without LD_PRELOAD by tests/integration/test_curlhosts.c; everything is judged from what
 * they print and what the server saw.
 *
 *   curlhosts closecb URL N SLEEP_MS [mixed]
 *       N handles, one after the other, each with its own CURLOPT_CLOSESOCKETFUNCTION and
 *       CLOSESOCKETDATA (with "mixed": only handles 1, 3, 5...). The callback prints
 *       "closesocket ctx=<id>" ("... FREED" when the app already released that context:
 *       a use-after-free in a real host) and closes the socket. After each
 *       curl_easy_cleanup the program prints "cleanup done ctx=<id>" and releases the
 *       context. libcurl runs the callback inside curl_easy_cleanup of the handle that made
 *       the connection, so the line comes before "cleanup done".
 *   curlhosts multi SLOW_URL FAST_URL
 *       A transfer of SLOW_URL is started on a multi handle; its easy handle is cleaned up
 *       while still attached (legal: libcurl detaches it first). Then a new handle performs
 *       FAST_URL ("perform2 rc=N", its body as "t2 body: ..."), and the multi is driven on
 *       for 1.5 s: nothing of the abandoned transfer may appear on stdout.
 *   curlhosts multicleanup URL
 *       curl_multi_cleanup with a handle still attached (libcurl leaves the easy handle
 *       alone), then that handle performs URL with curl_easy_perform and is cleaned up;
 *       then a new handle performs URL. Prints "perform1 rc=N", "perform2 rc=N".
 *   curlhosts permulti URL
 *       One handle performs URL with curl_easy_perform ("t1 body: ..."), then is added to a
 *       multi that performs URL again ("t2 body: ...", "multi rc=N"). The multi has its own
 *       connection cache: libcurl opens a new connection for the second transfer (its
 *       body says req=1), as the handle's first connection stays in the easy interface's.
 *   curlhosts ftp BASE_URL N [global] [inflight=URL]
 *       A handle per file: N FTP downloads BASE_URL/file<i>.txt, each handle cleaned up
 *       right after its transfer, as an app that knows nothing of pooling does. "global":
 *       curl_global_cleanup before returning from main. "inflight=URL": another thread
 *       is still performing URL (a slow one) when main returns. */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t sink(char *p, size_t sz, size_t n, void *ud)
{
	long *bytes = ud;
	(void)p;
	if (bytes)
		*bytes += (long)(sz * n);
	return sz * n;
}

static size_t print_body(char *p, size_t sz, size_t n, void *ud)
{
	printf("%s body: %.*s\n", (const char *)ud, (int)(sz * n), p);
	fflush(stdout);
	return sz * n;
}

/* ------------------------------------------------------------------ closecb */

struct ctx {
	int id;
	int alive;
};

static int close_cb(void *clientp, curl_socket_t fd)
{
	struct ctx *c = clientp;
	printf("closesocket ctx=%d%s\n", c->id, c->alive ? "" : " FREED");
	fflush(stdout);
	return close(fd);
}

static int run_closecb(int argc, char **argv)
{
	if (argc < 5)
		return 2;
	const char *url = argv[2];
	int n = atoi(argv[3]);
	long pause = atol(argv[4]);
	int mixed = argc > 5 && !strcmp(argv[5], "mixed");
	static struct ctx ctxs[64];
	if (n < 1 || n > 64)
		return 2;
	for (int i = 0; i < n; i++) {
		int with_cb = !mixed || i % 2 == 0;
		ctxs[i].id = i + 1;
		ctxs[i].alive = 1;
		CURL *h = curl_easy_init();
		if (!h)
			return 3;
		curl_easy_setopt(h, CURLOPT_URL, url);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, NULL);
		if (with_cb) {
			curl_easy_setopt(h, CURLOPT_CLOSESOCKETFUNCTION, close_cb);
			curl_easy_setopt(h, CURLOPT_CLOSESOCKETDATA, &ctxs[i]);
		}
		CURLcode rc = curl_easy_perform(h);
		printf("perform ctx=%d rc=%d\n", i + 1, (int)rc);
		fflush(stdout);
		curl_easy_cleanup(h);
		printf("cleanup done ctx=%d\n", i + 1);
		fflush(stdout);
		ctxs[i].alive = 0; /* the app frees its context here */
		if (pause > 0)
			sleep_ms(pause);
	}
	printf("exit\n");
	return 0;
}

/* -------------------------------------------------------------------- multi */

/* Drives M for MS milliseconds (or until nothing runs); returns the transfers still running. */
static int drive(CURLM *m, long ms)
{
	int running = 1;
	long long end = now_ms() + ms;
	while (now_ms() < end) {
		curl_multi_perform(m, &running);
		if (!running)
			break;
		curl_multi_poll(m, NULL, 0, 50, NULL);
	}
	return running;
}

static int run_multi(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	CURLM *m = curl_multi_init();
	CURL *h1 = curl_easy_init();
	if (!m || !h1)
		return 3;
	curl_easy_setopt(h1, CURLOPT_URL, argv[2]);
	curl_easy_setopt(h1, CURLOPT_WRITEFUNCTION, print_body);
	curl_easy_setopt(h1, CURLOPT_WRITEDATA, (void *)"t1");
	if (curl_multi_add_handle(m, h1) != CURLM_OK)
		return 4;
	drive(m, 200); /* connected, request sent; the server answers late */
	curl_easy_cleanup(h1); /* still attached: libcurl detaches it first */
	printf("cleanup1 done\n");
	fflush(stdout);

	CURL *h2 = curl_easy_init();
	if (!h2)
		return 3;
	curl_easy_setopt(h2, CURLOPT_URL, argv[3]);
	curl_easy_setopt(h2, CURLOPT_WRITEFUNCTION, print_body);
	curl_easy_setopt(h2, CURLOPT_WRITEDATA, (void *)"t2");
	CURLcode rc = curl_easy_perform(h2);
	printf("perform2 rc=%d\n", (int)rc);
	fflush(stdout);
	int running = drive(m, 1500);
	printf("multi running=%d\n", running);
	fflush(stdout);
	curl_easy_cleanup(h2);
	curl_multi_cleanup(m);
	printf("exit\n");
	return 0;
}

static int run_multicleanup(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	CURLM *m = curl_multi_init();
	CURL *h1 = curl_easy_init();
	if (!m || !h1)
		return 3;
	curl_easy_setopt(h1, CURLOPT_URL, argv[2]);
	curl_easy_setopt(h1, CURLOPT_WRITEFUNCTION, print_body);
	curl_easy_setopt(h1, CURLOPT_WRITEDATA, (void *)"t0");
	curl_multi_add_handle(m, h1);
	curl_multi_cleanup(m); /* h1 stays, detached */
	curl_easy_setopt(h1, CURLOPT_WRITEDATA, (void *)"t1");
	CURLcode rc = curl_easy_perform(h1);
	printf("perform1 rc=%d\n", (int)rc);
	curl_easy_cleanup(h1);
	CURL *h2 = curl_easy_init();
	curl_easy_setopt(h2, CURLOPT_URL, argv[2]);
	curl_easy_setopt(h2, CURLOPT_WRITEFUNCTION, print_body);
	curl_easy_setopt(h2, CURLOPT_WRITEDATA, (void *)"t2");
	rc = curl_easy_perform(h2);
	printf("perform2 rc=%d\n", (int)rc);
	curl_easy_cleanup(h2);
	printf("exit\n");
	return 0;
}

static int run_permulti(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	CURL *h = curl_easy_init();
	CURLM *m = curl_multi_init();
	if (!m || !h)
		return 3;
	curl_easy_setopt(h, CURLOPT_URL, argv[2]);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, print_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, (void *)"t1");
	CURLcode rc = curl_easy_perform(h);
	printf("perform1 rc=%d\n", (int)rc);
	fflush(stdout);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, (void *)"t2");
	if (curl_multi_add_handle(m, h) != CURLM_OK)
		return 4;
	int running = drive(m, 5000);
	int left = 0;
	CURLMsg *msg = curl_multi_info_read(m, &left);
	printf("multi running=%d rc=%d\n", running, msg && msg->msg == CURLMSG_DONE ? (int)msg->data.result : -1);
	curl_multi_remove_handle(m, h);
	curl_easy_cleanup(h);
	curl_multi_cleanup(m);
	printf("exit\n");
	return 0;
}

/* ---------------------------------------------------------------------- ftp */

static void *inflight_main(void *arg)
{
	CURL *h = curl_easy_init();
	curl_easy_setopt(h, CURLOPT_URL, (const char *)arg);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, NULL);
	curl_easy_perform(h); /* still running when main returns */
	curl_easy_cleanup(h);
	return NULL;
}

static int run_ftp(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	int n = atoi(argv[3]), global = 0;
	const char *inflight = NULL;
	for (int i = 4; i < argc; i++) {
		if (!strcmp(argv[i], "global"))
			global = 1;
		else if (!strncmp(argv[i], "inflight=", 9))
			inflight = argv[i] + 9;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	for (int i = 1; i <= n; i++) {
		char url[512];
		long bytes = 0;
		snprintf(url, sizeof(url), "%s/file%d.txt", argv[2], i);
		CURL *h = curl_easy_init();
		curl_easy_setopt(h, CURLOPT_URL, url);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, &bytes);
		CURLcode rc = curl_easy_perform(h);
		printf("ftp %d rc=%d bytes=%ld\n", i, (int)rc, bytes);
		fflush(stdout);
		curl_easy_cleanup(h);
	}
	if (inflight) {
		pthread_t t;
		pthread_create(&t, NULL, inflight_main, (void *)inflight);
		sleep_ms(300); /* its transfer is under way */
	}
	if (global)
		curl_global_cleanup();
	printf("exit\n");
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: curlhosts closecb|multi|multicleanup|permulti|ftp ...\n");
		return 2;
	}
	if (!strcmp(argv[1], "closecb"))
		return run_closecb(argc, argv);
	if (!strcmp(argv[1], "multi"))
		return run_multi(argc, argv);
	if (!strcmp(argv[1], "multicleanup"))
		return run_multicleanup(argc, argv);
	if (!strcmp(argv[1], "permulti"))
		return run_permulti(argc, argv);
	if (!strcmp(argv[1], "ftp"))
		return run_ftp(argc, argv);
	fprintf(stderr, "curlhosts: unknown mode %s\n", argv[1]);
	return 2;
}
