/* h2_fork: a pre-forking program (no connroute.h): the parent makes a request, then forks
 * children that each make one request of their own and end.
 *
 *   h2_fork PORT NCHILD exit|_exit HOLDMS [SYNCDIR]
 *     parent: connect to 127.0.0.1:PORT, GET /, close, sleep 300 ms; fork NCHILD children;
 *     each child: connect, GET /, close, sleep HOLDMS, then exit(0) (atexit handlers and
 *     destructors run) or _exit(0) (they do not). The parent waits for them all and prints
 *     "children N ok M" (M exited with status 0). With SYNCDIR: the parent then writes its
 *     pid to SYNCDIR/children-done and waits (10 s at most) for SYNCDIR/go before it exits.
 *     Exit 0 when every request and child succeeded.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

/* One GET / on a new connection; 0 when a response came. */
static int request(int port)
{
	struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	inet_pton(AF_INET, "127.0.0.1", &in.sin_addr);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&in, sizeof(in)) != 0)
		return -1;
	const char *req = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
		close(fd);
		return -1;
	}
	char buf[1024];
	struct pollfd p = {.fd = fd, .events = POLLIN};
	ssize_t n = poll(&p, 1, 5000) > 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
	close(fd);
	return n > 12 && !strncmp(buf, "HTTP/1.1 200", 12) ? 0 : -1;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 5) {
		fprintf(stderr, "usage: h2_fork PORT NCHILD exit|_exit HOLDMS [SYNCDIR]\n");
		return 2;
	}
	int port = atoi(argv[1]), n = atoi(argv[2]), use_exit = !strcmp(argv[3], "exit");
	long hold = atol(argv[4]);
	const char *sync = argc > 5 ? argv[5] : NULL;
	if (n < 1 || n > 64)
		return 2;

	int ok = request(port) == 0;
	printf("parent request %s\n", ok ? "ok" : "failed");
	sleep_ms(300);
	pid_t kids[64];
	for (int i = 0; i < n; i++) {
		fflush(stdout);
		kids[i] = fork();
		if (kids[i] == 0) {
			int r = request(port);
			sleep_ms(hold);
			if (use_exit)
				exit(r == 0 ? 0 : 1);
			_exit(r == 0 ? 0 : 1);
		}
	}
	int good = 0;
	for (int i = 0; i < n; i++) {
		int st = 0;
		if (kids[i] > 0 && waitpid(kids[i], &st, 0) == kids[i] && WIFEXITED(st) && WEXITSTATUS(st) == 0)
			good++;
	}
	printf("children %d ok %d\n", n, good);
	if (sync) {
		char path[512], tmp[520];
		snprintf(path, sizeof(path), "%s/children-done", sync);
		snprintf(tmp, sizeof(tmp), "%s.tmp", path);
		FILE *f = fopen(tmp, "w");
		if (f) {
			fprintf(f, "%ld\n", (long)getpid());
			fclose(f);
			rename(tmp, path);
		}
		snprintf(path, sizeof(path), "%s/go", sync);
		for (int i = 0; i < 1000 && access(path, F_OK) != 0; i++)
			sleep_ms(10);
	}
	return ok && good == n ? 0 : 1;
}
