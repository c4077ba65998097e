/* A plugin that makes its own connections with plain libc calls (socket, connect, write,
 * read, close), built twice by the Makefile: libcrplug.so (-z now, full RELRO: its GOT is
 * read-only once loaded) and libcrplug_lazy.so (-z lazy: PLT slots bound at first call).
 * tests/progs/deephost.c loads it with RTLD_DEEPBIND, as PHP loads its extensions: its
 * connect() and close() then bind to libc directly, past any preloaded library. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef PLUG_NAME
#define PLUG_NAME "crplug"
#endif

struct job {
	struct sockaddr_in sa;
	const char *path;
	char out[256];
};

static void *fetch(void *arg)
{
	struct job *j = arg;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&j->sa, sizeof(j->sa)) != 0) {
		snprintf(j->out, sizeof(j->out), "error %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	char req[300], buf[2048];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", j->path);
	size_t got = 0;
	ssize_t r;
	if (write(fd, req, (size_t)n) == n)
		while (got < sizeof(buf) - 1 && (r = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0)
			got += (size_t)r;
	buf[got] = '\0';
	close(fd);
	const char *body = strstr(buf, "\r\n\r\n");
	snprintf(j->out, sizeof(j->out), "%s", body ? body + 4 : "no response\n");
	char *nl = strchr(j->out, '\n');
	if (nl)
		*nl = '\0';
	return NULL;
}

/* THREADS connections at once to HOST:PORT, GET PATH on each; one line per connection. */
__attribute__((visibility("default"))) int plug_fetch(const char *host, int port, const char *path,
						      int threads)
{
	struct job jobs[32];
	pthread_t t[32];
	int started[32];
	if (threads < 1 || threads > 32)
		return -1;
	for (int i = 0; i < threads; i++) {
		memset(&jobs[i], 0, sizeof(jobs[i]));
		jobs[i].sa.sin_family = AF_INET;
		jobs[i].sa.sin_port = htons((uint16_t)port);
		inet_pton(AF_INET, host, &jobs[i].sa.sin_addr);
		jobs[i].path = path;
		/* A thread each; inline where none can be made (a sandbox that denies
		 * mprotect(PROT_WRITE) also denies thread stacks). */
		started[i] = pthread_create(&t[i], NULL, fetch, &jobs[i]) == 0;
		if (!started[i])
			fetch(&jobs[i]);
	}
	int ok = 0;
	for (int i = 0; i < threads; i++) {
		if (started[i])
			pthread_join(t[i], NULL);
		printf("%s %d %s\n", PLUG_NAME, i, jobs[i].out);
		ok += strncmp(jobs[i].out, "error", 5) != 0;
	}
	fflush(stdout);
	return ok;
}
