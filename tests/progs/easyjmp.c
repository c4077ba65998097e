/* easyjmp: a plain libcurl easy-interface program (no connroute API) that leaves
 * curl_easy_perform by a jump out of one of its callbacks, then carries on, for
 * tests/integration/test_easy_jmp.c (docs/INTERNALS.md, "libcurl lanes", left by a jump).
 *
 *   easyjmp KIND-CB-AFTER BASEURL
 *
 * KIND: sig (sigsetjmp/siglongjmp) or jmp (setjmp/longjmp). CB: write (the first write
 * callback jumps) or progress (the xferinfo callback jumps once a byte arrived). AFTER: clean
 * (curl_easy_cleanup of the handle left) or abandon (left as it is; curl_easy_perform and
 * curl_multi_add_handle of it are tried again, their codes printed: libcurl refuses both).
 *
 * First handle A GETs /delay/20 ("a 0"); then handle J GETs /size/60000 and is left by the
 * jump ("jumped 1"). Then, from a stack frame deeper than the call that was left: a worker
 * thread with a new handle GETs /delay/100 4 times ("w", printed after the join); on the main
 * thread meanwhile a new handle 3 times ("n"), handle A 3 times ("a 1..3"), a new handle per
 * request twice ("f"), two transfers in a multi ("m"). Every transfer line is
 * "<tag> <i> rc <CURLcode> http <status>"; then "after in time" (or "TOO LATE": over 8 s),
 * "exit <0|1>". Exit status 0 when every transfer succeeded, 1 otherwise, 2 on bad usage.
 *
 *   easyjmp many BASEURL
 *
 * 20 threads each GET /size/60000 on a handle of their own; once all 20 are in their first
 * write callback, each siglongjmps out of it; no easy call until all 20 jumped ("many jumped
 * 20"). Then the main thread cleans the 20 handles up and GETs /delay/20 5 times on a new
 * handle ("k"), and calls curl_global_cleanup. */
#include <curl/curl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sockutil.h"

static const char *base;
static int use_sig, use_progress;
static sigjmp_buf sjb;
static jmp_buf jb;
static volatile int jumped;

static size_t sink(char *p, size_t size, size_t n, void *ud)
{
	(void)p;
	(void)ud;
	return size * n;
}

static void jump_out(void)
{
	jumped = 1;
	if (use_sig)
		siglongjmp(sjb, 1);
	longjmp(jb, 1);
}

static size_t on_body_jmp(char *p, size_t size, size_t n, void *ud)
{
	(void)p;
	(void)ud;
	jump_out();
	return size * n;
}

static int on_progress_jmp(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	(void)ud;
	(void)dt;
	(void)ut;
	(void)un;
	if (dn > 0)
		jump_out();
	return 0;
}

static CURL *mk(const char *path)
{
	char url[256];
	snprintf(url, sizeof(url), "%s%s", base, path);
	CURL *h = curl_easy_init();
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 15000L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
	return h;
}

/* One perform of H, one line into BUF; 1 if it failed. */
static int get(CURL *h, const char *tag, int i, char *buf, size_t n)
{
	long http = 0;
	CURLcode rc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &http);
	size_t k = strlen(buf);
	snprintf(buf + k, n - k, "%s %d rc %d http %ld\n", tag, i, (int)rc, http);
	return rc != CURLE_OK || http != 200;
}

static char wbuf[1024];
static int wbad;

static void *worker(void *arg)
{
	(void)arg;
	CURL *h = mk("/delay/100");
	for (int i = 0; i < 4; i++)
		wbad |= get(h, "w", i, wbuf, sizeof(wbuf));
	curl_easy_cleanup(h);
	return NULL;
}

static int multi_round(void)
{
	CURLM *m = curl_multi_init();
	CURL *hs[2];
	int done[2] = {0, 0}, bad = 0, left = 2;
	for (int i = 0; i < 2; i++) {
		hs[i] = mk("/delay/50");
		curl_multi_add_handle(m, hs[i]);
	}
	long long until = now_ms() + 12000;
	while (left > 0 && now_ms() < until) {
		int running = 0, q;
		if (curl_multi_perform(m, &running) != CURLM_OK)
			break;
		CURLMsg *msg;
		while ((msg = curl_multi_info_read(m, &q))) {
			for (int i = 0; i < 2; i++) {
				if (msg->msg != CURLMSG_DONE || msg->easy_handle != hs[i] || done[i])
					continue;
				long http = 0;
				curl_easy_getinfo(hs[i], CURLINFO_RESPONSE_CODE, &http);
				printf("m %d rc %d http %ld\n", i, (int)msg->data.result, http);
				bad |= msg->data.result != CURLE_OK || http != 200;
				done[i] = 1;
				left--;
			}
		}
		if (left > 0)
			curl_multi_poll(m, NULL, 0, 50, NULL);
	}
	for (int i = 0; i < 2; i++) {
		if (!done[i])
			printf("m %d rc -1 http 0\n", i);
		curl_multi_remove_handle(m, hs[i]);
		curl_easy_cleanup(hs[i]);
	}
	curl_multi_cleanup(m);
	return bad || left > 0;
}

/* The rest runs deeper on the stack than the perform that was left. */
static int __attribute__((noinline)) deep(int d, CURL *a)
{
	volatile char pad[2048];
	pad[0] = (char)d;
	if (d > 0)
		return deep(d - 1, a) + pad[0] - (char)d;
	pthread_t t;
	if (pthread_create(&t, NULL, worker, NULL) != 0)
		return 1;
	char buf[1024] = "";
	int bad = 0;
	CURL *n = mk("/delay/100");
	for (int i = 0; i < 3; i++)
		bad |= get(n, "n", i, buf, sizeof(buf));
	curl_easy_cleanup(n);
	for (int i = 1; i <= 3; i++)
		bad |= get(a, "a", i, buf, sizeof(buf));
	for (int i = 0; i < 2; i++) {
		CURL *f = mk("/delay/20");
		bad |= get(f, "f", i, buf, sizeof(buf));
		curl_easy_cleanup(f);
	}
	fputs(buf, stdout);
	bad |= multi_round();
	pthread_join(t, NULL);
	fputs(wbuf, stdout);
	return bad | wbad;
}

/* ------------------------------------------------------------------ many */

#define NMANY 20
static pthread_barrier_t in_cb, all_jumped;
static CURL *many_h[NMANY];
static __thread sigjmp_buf many_jb;
static atomic_int many_jumps;

static size_t on_body_many(char *p, size_t size, size_t n, void *ud)
{
	(void)p;
	(void)ud;
	pthread_barrier_wait(&in_cb); /* all 20 hold what their performs took */
	siglongjmp(many_jb, 1);
	return size * n;
}

static void *many_thread(void *arg)
{
	CURL *h = many_h[(long)arg];
	if (sigsetjmp(many_jb, 1) == 0)
		curl_easy_perform(h);
	else
		atomic_fetch_add(&many_jumps, 1);
	pthread_barrier_wait(&all_jumped);
	return NULL;
}

static int many_main(void)
{
	pthread_t t[NMANY];
	pthread_barrier_init(&in_cb, NULL, NMANY);
	pthread_barrier_init(&all_jumped, NULL, NMANY);
	for (int i = 0; i < NMANY; i++) {
		many_h[i] = mk("/size/60000");
		curl_easy_setopt(many_h[i], CURLOPT_WRITEFUNCTION, on_body_many);
	}
	for (long i = 0; i < NMANY; i++)
		if (pthread_create(&t[i], NULL, many_thread, (void *)i) != 0)
			return 1;
	for (int i = 0; i < NMANY; i++)
		pthread_join(t[i], NULL);
	printf("many jumped %d\n", atomic_load(&many_jumps));
	for (int i = 0; i < NMANY; i++)
		curl_easy_cleanup(many_h[i]);
	char buf[512] = "";
	int bad = atomic_load(&many_jumps) != NMANY;
	CURL *k = mk("/delay/20");
	for (int i = 0; i < 5; i++)
		bad |= get(k, "k", i, buf, sizeof(buf));
	curl_easy_cleanup(k);
	fputs(buf, stdout);
	curl_global_cleanup();
	printf("exit %d\n", bad);
	return bad;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: easyjmp sig|jmp-write|progress-clean|abandon BASEURL\n");
		return 2;
	}
	const char *mode = argv[1];
	base = argv[2];
	if (!strcmp(mode, "many")) {
		curl_global_init(CURL_GLOBAL_DEFAULT);
		return many_main();
	}
	use_sig = !strncmp(mode, "sig-", 4);
	if (!use_sig && strncmp(mode, "jmp-", 4))
		return 2;
	use_progress = strstr(mode, "-progress-") != NULL;
	int clean = strstr(mode, "-clean") != NULL;
	if (!use_progress && !strstr(mode, "-write-"))
		return 2;
	if (!clean && !strstr(mode, "-abandon"))
		return 2;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	char buf[256] = "";
	CURL *a = mk("/delay/20");
	int bad = get(a, "a", 0, buf, sizeof(buf));
	fputs(buf, stdout);

	static CURL *j;
	j = mk("/size/60000");
	if (use_progress) {
		curl_easy_setopt(j, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(j, CURLOPT_XFERINFOFUNCTION, on_progress_jmp);
	} else {
		curl_easy_setopt(j, CURLOPT_WRITEFUNCTION, on_body_jmp);
	}
	if (use_sig ? sigsetjmp(sjb, 1) == 0 : setjmp(jb) == 0)
		printf("perform returned %d\n", (int)curl_easy_perform(j));
	printf("jumped %d\n", jumped);
	if (clean) {
		curl_easy_cleanup(j);
	} else {
		/* libcurl refuses both: the handle is still in its private multi. */
		printf("again rc %d\n", (int)curl_easy_perform(j));
		CURLM *m = curl_multi_init();
		printf("add rc %d\n", (int)curl_multi_add_handle(m, j));
		curl_multi_cleanup(m);
	}
	fflush(stdout);

	long long t0 = now_ms();
	bad |= deep(8, a);
	printf("after %s\n", now_ms() - t0 < 8000 ? "in time" : "TOO LATE");
	curl_easy_cleanup(a);
	curl_global_cleanup();
	printf("exit %d\n", bad || !jumped);
	return bad || !jumped;
}
