/* A plugin that runs libcurl multi transfers (tests/integration/test_multi_fork.c loads it
 * twice with tests/progs/plughost, dlclose'ing it in between). plug_run(URL, CAFILE): 4
 * transfers of URL in one multi with a timer callback of the plugin's own (the shim wraps
 * it), curl_multi_perform + curl_multi_poll within 15 s, then everything cleaned up.
 * Prints "mplug ok N" (N transfers answered 200); returns 0 when all 4 were. */
#include <curl/curl.h>
#include <stdio.h>
#include <time.h>

static long timer_ms = -1;

static int on_timer(CURLM *m, long ms, void *ud)
{
	(void)m;
	(void)ud;
	timer_ms = ms;
	return 0;
}

static size_t body(char *p, size_t sz, size_t n, void *ud)
{
	(void)p;
	(void)ud;
	return sz * n;
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

__attribute__((visibility("default"))) int plug_run(const char *url, const char *cafile)
{
	(void)cafile;
	CURLM *m = curl_multi_init();
	CURL *h[4];
	curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, on_timer);
	for (int i = 0; i < 4; i++) {
		h[i] = curl_easy_init();
		curl_easy_setopt(h[i], CURLOPT_URL, url);
		curl_easy_setopt(h[i], CURLOPT_WRITEFUNCTION, body);
		curl_easy_setopt(h[i], CURLOPT_TIMEOUT_MS, 10000L);
		curl_multi_add_handle(m, h[i]);
	}
	int running = 1, ok = 0;
	long long until = now_ms() + 15000;
	while (running && now_ms() < until) {
		if (curl_multi_perform(m, &running) != CURLM_OK)
			break;
		CURLMsg *msg;
		int left;
		while ((msg = curl_multi_info_read(m, &left))) {
			long code = 0;
			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
			ok += msg->data.result == CURLE_OK && code == 200;
		}
		if (running)
			curl_multi_poll(m, NULL, 0, 50, NULL);
	}
	for (int i = 0; i < 4; i++) {
		curl_multi_remove_handle(m, h[i]);
		curl_easy_cleanup(h[i]);
	}
	curl_multi_cleanup(m);
	printf("mplug ok %d\n", ok);
	fflush(stdout);
	return ok == 4 ? 0 : 1;
}
