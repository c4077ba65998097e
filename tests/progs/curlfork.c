/* curlfork: a threaded libcurl program that forks while transfers are in flight, the way a
 * server forks a worker or runs a helper. It never includes connroute.h.
 *
 *   curlfork SLOW_URL FAST_URL THREADS
 *
 * THREADS threads each perform one GET of SLOW_URL (a new handle each). 700 ms later, while
 * those are in flight, the program forks; the child performs one GET of FAST_URL (3 s
 * timeout) and prints "child code=C status=S ms=N", then _exits. The parent waits for the
 * child, then (slow transfers still in flight) one GET of FAST_URL with a 3 s timeout:
 * "parent_busy code=C ms=N"; then joins the threads ("slow code=C" each) and one more GET of
 * FAST_URL: "parent_after code=C ms=N". Exit 0. */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static size_t sink(char *p, size_t s, size_t n, void *u)
{
	(void)p;
	(void)u;
	return s * n;
}

static int get(const char *url, long timeout_ms, long *status)
{
	CURL *h = curl_easy_init();
	if (!h)
		return -1;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
	CURLcode c = curl_easy_perform(h);
	*status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
	curl_easy_cleanup(h);
	return (int)c;
}

static const char *slow_url;

static void *slow(void *arg)
{
	long st;
	int *code = arg;
	*code = get(slow_url, 10000, &st);
	return NULL;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc != 4) {
		fprintf(stderr, "usage: curlfork SLOW_URL FAST_URL THREADS\n");
		return 2;
	}
	slow_url = argv[1];
	int n = atoi(argv[3]);
	if (n < 1 || n > 64)
		return 2;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	pthread_t t[64];
	int codes[64];
	for (int i = 0; i < n; i++)
		pthread_create(&t[i], NULL, slow, &codes[i]);
	struct timespec ts = {0, 700000000L};
	nanosleep(&ts, NULL);

	long st, t0 = now_ms();
	pid_t pid = fork();
	if (pid == 0) {
		int c = get(argv[2], 3000, &st);
		printf("child code=%d status=%ld ms=%ld\n", c, st, now_ms() - t0);
		fflush(stdout);
		_exit(0);
	}
	int ws = -1;
	waitpid(pid, &ws, 0);
	t0 = now_ms();
	int c = get(argv[2], 3000, &st);
	printf("parent_busy code=%d ms=%ld\n", c, now_ms() - t0);
	for (int i = 0; i < n; i++) {
		pthread_join(t[i], NULL);
		printf("slow code=%d\n", codes[i]);
	}
	t0 = now_ms();
	c = get(argv[2], 3000, &st);
	printf("parent_after code=%d ms=%ld\n", c, now_ms() - t0);
	return 0;
}
