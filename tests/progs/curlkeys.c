/* curlkeys: a libcurl program that picks lanes through the header API.
 *
 *   curlkeys [-n N] [-s] [--cacert FILE] URL KEY1 KEY2 ...
 *
 * One thread per key. Each thread calls connroute_set_key(KEY), then does N (default 5)
 * fresh curl_easy_init/perform/cleanup requests to URL + "/conn" and prints, per request,
 *   key <KEY> conn <X-Conn-Id>          (or "key <KEY> error <CURLcode> status <http>")
 * -s runs the threads one after another (thread k starts when thread k-1 has finished), so
 * an idle connection a lane left behind is there for the next thread to take if lanes were
 * not kept apart; without -s the threads run at the same time.
 * Without the shim connroute_set_key fails with ENOSYS: the thread says
 * "setkey <KEY> err <errno>" and goes on (the requests still work).
 * Exit status 0 when every request succeeded, 1 otherwise, 2 on bad usage. */
#include <connroute.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conn_id.h"

static const char *url;
static const char *cacert;
static int nreq = 5;
static int failures;
static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

struct xfer {
	char conn[32];
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
	struct xfer *x = ud;
	conn_id_header(p, size * n, x->conn, sizeof x->conn);
	return size * n;
}

static void *run_key(void *arg)
{
	const char *key = arg;
	char target[2048];
	snprintf(target, sizeof target, "%s/conn", url);
	if (connroute_set_key(key) != 0) {
		pthread_mutex_lock(&out_mu);
		printf("setkey %s err %d\n", key, errno);
		pthread_mutex_unlock(&out_mu);
	}
	for (int i = 0; i < nreq; i++) {
		struct xfer x = {{0}};
		CURL *h = curl_easy_init();
		if (!h) {
			fprintf(stderr, "curlkeys: curl_easy_init failed\n");
			exit(2);
		}
		curl_easy_setopt(h, CURLOPT_URL, target);
		curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
		curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
		curl_easy_setopt(h, CURLOPT_HEADERDATA, &x);
		curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
		if (cacert)
			curl_easy_setopt(h, CURLOPT_CAINFO, cacert);
		CURLcode rc = curl_easy_perform(h);
		long status = 0;
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
		curl_easy_cleanup(h);
		pthread_mutex_lock(&out_mu);
		if (rc == CURLE_OK && status == 200 && x.conn[0]) {
			printf("key %s conn %s\n", key, x.conn);
		} else {
			printf("key %s error %d status %ld\n", key, (int)rc, status);
			failures++;
		}
		pthread_mutex_unlock(&out_mu);
	}
	return NULL;
}

static void usage(void)
{
	fputs("usage: curlkeys [-n N] [-s] [--cacert FILE] URL KEY...\n", stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	int serial = 0, a = 1;
	for (; a < argc && argv[a][0] == '-'; a++) {
		if (!strcmp(argv[a], "-n") && a + 1 < argc) {
			nreq = atoi(argv[++a]);
			if (nreq < 1 || nreq > 100000)
				usage();
		} else if (!strcmp(argv[a], "-s")) {
			serial = 1;
		} else if (!strcmp(argv[a], "--cacert") && a + 1 < argc) {
			cacert = argv[++a];
		} else {
			usage();
		}
	}
	if (argc - a < 2)
		usage();
	url = argv[a++];
	int nkeys = argc - a;
	pthread_t *t = calloc((size_t)nkeys, sizeof *t);
	if (!t || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return 2;
	for (int k = 0; k < nkeys; k++) {
		if (pthread_create(&t[k], NULL, run_key, argv[a + k]) != 0)
			return 2;
		if (serial)
			pthread_join(t[k], NULL);
	}
	if (!serial)
		for (int k = 0; k < nkeys; k++)
			pthread_join(t[k], NULL);
	free(t);
	curl_global_cleanup();
	fflush(stdout);
	return failures ? 1 : 0;
}
