/* A plain libcurl FTP client (tests/integration/test_pool_schemes.c): what an app sees of
 * its FTP sessions, against a server that serves one session at a time and logs
 * "connect N", "login N", "quit N", "close N" to LOG.
 *
 *   ftpsess lib575 URL LOG           curl's lib575 shape: a handle performs twice, is
 *                                    duplicated, cleaned up, and the duplicate runs in a
 *                                    multi (10 s bound: "multi timeout", exit 3)
 *   ftpsess handles URL LOG N WAIT   N handles, one transfer each, cleaned up; WAIT 1: after
 *                                    each cleanup, wait up to 3 s for the server's "quit"
 *
 * After each cleanup it prints whether the server saw the session end ("quit-seen=1"). */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static size_t sink(char *p, size_t sz, size_t n, void *ud)
{
	(void)p;
	*(long *)ud += (long)(sz * n);
	return sz * n;
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* Lines of LOG starting with WHAT. */
static int log_count(const char *log, const char *what)
{
	FILE *f = fopen(log, "r");
	char line[128];
	int n = 0;
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		n += strncmp(line, what, strlen(what)) == 0;
	fclose(f);
	return n;
}

/* Waits up to MS for the server's WANT-th "quit": 1 if seen. */
static int quit_seen(const char *log, int want, long ms)
{
	long long end = now_ms() + ms;
	do {
		if (log_count(log, "quit") >= want)
			return 1;
		usleep(20000);
	} while (now_ms() < end);
	return 0;
}

static CURL *handle(const char *url, long *bytes)
{
	CURL *h = curl_easy_init();
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, bytes);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	return h;
}

static int lib575(const char *url, const char *log)
{
	long bytes = 0;
	CURL *h = handle(url, &bytes);
	for (int i = 0; i < 2; i++) {
		CURLcode rc = curl_easy_perform(h);
		printf("easy rc=%d bytes=%ld\n", rc, bytes);
		bytes = 0;
	}
	long dbytes = 0;
	CURL *d = curl_easy_duphandle(h);
	curl_easy_setopt(d, CURLOPT_WRITEDATA, &dbytes);
	curl_easy_cleanup(h);
	printf("cleanup quit-seen=%d\n", quit_seen(log, 1, 3000));
	fflush(stdout);

	CURLM *m = curl_multi_init();
	curl_multi_add_handle(m, d);
	int running = 1;
	long long end = now_ms() + 10000;
	while (running) {
		curl_multi_perform(m, &running);
		if (!running)
			break;
		if (now_ms() > end) {
			printf("multi timeout\n");
			fflush(stdout);
			_exit(3);
		}
		curl_multi_wait(m, NULL, 0, 100, NULL);
	}
	int left;
	CURLMsg *msg;
	while ((msg = curl_multi_info_read(m, &left)))
		if (msg->msg == CURLMSG_DONE)
			printf("multi rc=%d bytes=%ld\n", msg->data.result, dbytes);
	curl_multi_remove_handle(m, d);
	curl_easy_cleanup(d);
	curl_multi_cleanup(m);
	printf("multi cleanup quit-seen=%d\n", quit_seen(log, 2, 3000));
	return 0;
}

static int handles(const char *url, const char *log, int n, int wait)
{
	for (int i = 0; i < n; i++) {
		long bytes = 0;
		CURL *h = handle(url, &bytes);
		CURLcode rc = curl_easy_perform(h);
		curl_easy_cleanup(h);
		printf("rc=%d bytes=%ld", rc, bytes);
		if (wait)
			printf(" quit-seen=%d", quit_seen(log, i + 1, 3000));
		printf("\n");
		fflush(stdout);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: ftpsess lib575|handles URL LOG [N WAIT]\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	int rc = 2;
	if (!strcmp(argv[1], "lib575"))
		rc = lib575(argv[2], argv[3]);
	else if (!strcmp(argv[1], "handles") && argc >= 6)
		rc = handles(argv[2], argv[3], atoi(argv[4]), atoi(argv[5]));
	curl_global_cleanup();
	printf("exit\n");
	return rc;
}
