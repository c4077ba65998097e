/* fdprog: an unmodified program that counts on fd numbers, the way daemons
 * and servers do, so the integration tests (tests/integration/test_ownfd.c)
 * can check from outside that nothing connroute keeps open in it takes or
 * closes a number of its. It never includes connroute.h.
 *
 * The kick: one connect to 127.0.0.1:KICK, closed at once (under the shim,
 * the process's first routed connect: it starts the warm refill thread and
 * the background thread).
 *
 *   fdprog lowfds KICK PORT LOG SYNC
 *       Kick, wait for a warm pool to fill, make socket a, close(0) and
 *       close(1), connect a to 127.0.0.1:PORT (a routed connect: the pool
 *       refills behind it), wait, then open("/dev/null") expecting 0 and
 *       open(LOG) expecting 1, and write a log line to fd 1 (as a program
 *       that redirects its stdout does, whatever number it got). GET /conn
 *       on a. Prints "stdin=N log=N a=N get=STATUS" on stderr, writes
 *       "PID A" to SYNC/ready and waits for SYNC/go (the test reads
 *       /proc/PID/fd meanwhile). Exit 0 when the numbers were 0 and 1 and
 *       the GET answered 200.
 *   fdprog emfile KICK PORT
 *       Kick, wait, then open /dev/null until it fails: prints "opened N
 *       err=ERRNO"; closes them, connects to PORT and prints "get STATUS".
 *   fdprog pending KICK closefrom|close_range|sys_close_range
 *       Kick, wait a little (the warm connects are under way), close every
 *       fd from 3 up (libc closefrom, libc close_range, or the raw syscall
 *       behind everyone's back), open a file and dup2 it onto every number
 *       from 3 to 700, wait 2.5 s, and check that every one of them is
 *       still open and still the file. Prints "closed: N N ..." for those
 *       that are not (exit 1), or "intact 3..700" (exit 0).
 *   fdprog metrics KICK OUT SYNC
 *       Kick, write "PID" to SYNC/ready, wait for SYNC/go, closefrom(3), open OUT
 *       and dup2 it onto every number from 3 to 700, wait 3 s, write
 *       "fd N\n" through each number N in order, check each is still OUT.
 *       Writes SYNC/done and waits for SYNC/exit. Exit 1 (with what went
 *       wrong on stdout) if a number was closed or replaced, or a write
 *       failed. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define FIRST 3
#define LAST 700

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

static int tcp_connect_fd(int fd, int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return connect(fd, (struct sockaddr *)&a, sizeof(a));
}

static void kick(int port)
{
	int k = socket(AF_INET, SOCK_STREAM, 0);
	if (k < 0 || tcp_connect_fd(k, port) != 0) {
		fprintf(stderr, "kick connect: %s\n", strerror(errno));
		exit(2);
	}
	close(k);
}

/* GET PATH on FD (HTTP/1.1, Connection: close); the status, or -1. */
static int http_get(int fd, const char *path)
{
	char req[256], buf[4096];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
	if (write(fd, req, (size_t)n) != n)
		return -1;
	size_t got = 0;
	ssize_t k;
	while (got < sizeof(buf) - 1 && (k = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0) {
		got += (size_t)k;
		buf[got] = '\0';
		if (strstr(buf, "\r\n"))
			break;
	}
	buf[got] = '\0';
	int status = -1;
	return sscanf(buf, "HTTP/1.%*d %d", &status) == 1 ? status : -1;
}

/* Writes SYNC/NAME atomically (a temp file renamed). */
static void put_file(const char *sync, const char *name, const char *text)
{
	char tmp[512], path[512];
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", sync, name);
	snprintf(path, sizeof(path), "%s/%s", sync, name);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text) || close(fd) != 0 ||
	    rename(tmp, path) != 0) {
		fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
		exit(2);
	}
}

/* Waits (without an fd) for SYNC/NAME to exist; exits 2 after 20 s. */
static void wait_file(const char *sync, const char *name)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", sync, name);
	for (int i = 0; i < 2000; i++) {
		if (access(path, F_OK) == 0)
			return;
		sleep_ms(10);
	}
	fprintf(stderr, "%s never appeared\n", path);
	exit(2);
}

static int lowfds(int kport, int port, const char *log, const char *sync)
{
	kick(kport);
	sleep_ms(400); /* the pool fills */
	int a = socket(AF_INET, SOCK_STREAM, 0);
	close(0);
	close(1);
	if (a < 0 || tcp_connect_fd(a, port) != 0) {
		fprintf(stderr, "connect a: %s\n", strerror(errno));
		return 2;
	}
	sleep_ms(300); /* the pool refills */
	int in = open("/dev/null", O_RDONLY);
	int lg = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
	static const char line[] = "fdprog: a log line\n";
	ssize_t w = write(1, line, sizeof(line) - 1);
	int st = http_get(a, "/conn");
	fprintf(stderr, "stdin=%d log=%d a=%d get=%d%s\n", in, lg, a, st,
		w == (ssize_t)sizeof(line) - 1 ? "" : " log-write-failed");
	char text[64];
	snprintf(text, sizeof(text), "%d %d\n", (int)getpid(), a);
	put_file(sync, "ready", text);
	wait_file(sync, "go");
	return in == 0 && lg == 1 && st == 200 ? 0 : 1;
}

static int emfile(int kport, int port)
{
	static int fds[1 << 16];
	int n = 0, err = 0;
	kick(kport);
	sleep_ms(400); /* a pool, if any, fills */
	for (; n < (int)(sizeof(fds) / sizeof(fds[0])); n++) {
		fds[n] = open("/dev/null", O_RDONLY);
		if (fds[n] < 0) {
			err = errno;
			break;
		}
	}
	printf("opened %d err=%s\n", n, err == EMFILE ? "EMFILE" : strerror(err));
	for (int i = 0; i < n; i++)
		close(fds[i]);
	int a = socket(AF_INET, SOCK_STREAM, 0);
	if (a < 0 || tcp_connect_fd(a, port) != 0) {
		printf("connect err %s\n", strerror(errno));
		return 1;
	}
	printf("get %d\n", http_get(a, "/"));
	close(a);
	return 0;
}

/* dup2s FD onto every number FIRST..LAST; -1 (said) if one fails. */
static int fill(int fd)
{
	for (int n = FIRST; n <= LAST; n++)
		if (n != fd && dup2(fd, n) != n) {
			int e = errno;
			struct stat st;
			printf("dup2(%d, %d): %s%s\n", fd, n, strerror(e),
			       fstat(fd, &st) != 0 ? " (the file's fd was closed under the program)" : "");
			return -1;
		}
	return 0;
}

/* Prints and counts the numbers FIRST..LAST that are no longer ST's file. */
static int check(const struct stat *st)
{
	int bad = 0;
	for (int n = FIRST; n <= LAST; n++) {
		struct stat s;
		if (fstat(n, &s) != 0 || s.st_ino != st->st_ino || s.st_dev != st->st_dev) {
			if (!bad++)
				printf("closed:");
			printf(" %d", n);
		}
	}
	if (bad)
		printf("\n");
	return bad;
}

static int pending(int kport, const char *how)
{
	kick(kport);
	sleep_ms(200); /* the warm connects are under way (they never complete) */
	if (!strcmp(how, "closefrom"))
		closefrom(FIRST);
	else if (!strcmp(how, "close_range"))
		close_range(FIRST, ~0u, 0);
	else
		syscall(SYS_close_range, FIRST, ~0u, 0);
	char path[64];
	snprintf(path, sizeof(path), "/tmp/fdprog-%d", (int)getpid());
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	unlink(path);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0 || fill(fd) != 0)
		return 2;
	sleep_ms(2500); /* past the warm connects' timeout */
	if (check(&st))
		return 1;
	printf("intact %d..%d\n", FIRST, LAST);
	return 0;
}

static int metrics(int kport, const char *out, const char *sync)
{
	char text[32];
	kick(kport);
	snprintf(text, sizeof(text), "%d\n", (int)getpid());
	put_file(sync, "ready", text);
	wait_file(sync, "go");
	closefrom(FIRST);
	int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0 || fill(fd) != 0)
		return 2;
	sleep_ms(3000);
	int bad = 0;
	for (int n = FIRST; n <= LAST; n++) {
		char line[32];
		int k = snprintf(line, sizeof(line), "fd %d\n", n);
		if (write(n, line, (size_t)k) != k) {
			printf("write fd %d: %s\n", n, strerror(errno));
			bad++;
		}
	}
	bad += check(&st);
	put_file(sync, "done", bad ? "bad\n" : "ok\n");
	wait_file(sync, "exit");
	if (!bad)
		printf("intact %d..%d\n", FIRST, LAST);
	return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc == 6 && !strcmp(argv[1], "lowfds"))
		return lowfds(atoi(argv[2]), atoi(argv[3]), argv[4], argv[5]);
	if (argc == 4 && !strcmp(argv[1], "emfile"))
		return emfile(atoi(argv[2]), atoi(argv[3]));
	if (argc == 4 && !strcmp(argv[1], "pending"))
		return pending(atoi(argv[2]), argv[3]);
	if (argc == 5 && !strcmp(argv[1], "metrics"))
		return metrics(atoi(argv[2]), argv[3], argv[4]);
	fprintf(stderr, "usage: see tests/progs/fdprog.c\n");
	return 2;
}
