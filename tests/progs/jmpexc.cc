/* A C++ libcurl program whose write callback throws through curl_easy_perform or
 * curl_multi_perform (libcurl has unwind tables on x86_64, so it passes through); it
 * catches it, performs again from the same function and from a deeper frame, then the
 * thread ends with pthread_exit (which runs glibc's old-style cleanup buffers).
 *
 * usage: jmpexc easy|multi URL
 * Prints "<tag> <i> rc <curlcode> http <status>" for each transfer, "caught 42" once,
 * "joined" after the worker thread ended, "exit 0" last. */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static const char *base;
static int use_multi;

static size_t thrower(char *, size_t, size_t, void *)
{
	throw 42;
}

static size_t sink(char *, size_t s, size_t n, void *)
{
	return s * n;
}

static CURL *mk(const char *path, int do_throw)
{
	static char url[512];
	snprintf(url, sizeof(url), "%s%s", base, path);
	CURL *h = curl_easy_init();
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, do_throw ? thrower : sink);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
	return h;
}

static void show(const char *tag, int i, int rc, CURL *h)
{
	long code = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	printf("%s %d rc %d http %ld\n", tag, i, rc, code);
	fflush(stdout);
}

/* Throws out of the write callback; the handle is abandoned (libcurl's is broken). */
static __attribute__((noinline)) void throw_one(void)
{
	CURL *h = mk("/bytes/100", 1);
	try {
		if (use_multi) {
			CURLM *m = curl_multi_init();
			curl_multi_add_handle(m, h);
			int running = 1;
			while (running) {
				curl_multi_perform(m, &running);
				if (running)
					curl_multi_poll(m, NULL, 0, 1000, NULL);
			}
			printf("multi returned\n");
		} else {
			printf("perform returned %d\n", (int)curl_easy_perform(h));
		}
	} catch (int v) {
		printf("caught %d\n", v);
	}
	fflush(stdout);
}

static __attribute__((noinline)) void get(const char *tag, int i)
{
	CURL *h = mk("/bytes/100", 0);
	int rc = curl_easy_perform(h);
	show(tag, i, rc, h);
	curl_easy_cleanup(h);
}

static __attribute__((noinline)) void deeper(int n, const char *tag, int i)
{
	volatile char pad[512];
	pad[0] = 0;
	if (n)
		deeper(n - 1, tag, i);
	else
		get(tag, i);
	(void)pad[0];
}

static void *worker(void *)
{
	throw_one();
	get("a", 0);
	deeper(4, "a", 1);
	pthread_exit(NULL);
}

int main(int argc, char **argv)
{
	if (argc != 3 || (strcmp(argv[1], "easy") && strcmp(argv[1], "multi"))) {
		fprintf(stderr, "usage: jmpexc easy|multi URL\n");
		return 2;
	}
	use_multi = !strcmp(argv[1], "multi");
	base = argv[2];
	curl_global_init(CURL_GLOBAL_ALL);
	pthread_t t;
	if (pthread_create(&t, NULL, worker, NULL))
		return 1;
	pthread_join(t, NULL);
	printf("joined\n");
	deeper(4, "b", 0);
	printf("exit 0\n");
	return 0;
}
