/* hostprog: ordinary programs doing the things real hosts do around connect(): signal
 * handlers that siglongjmp, SO_SNDTIMEO, SA_RESTART, vfork, fork, chdir. It never includes
 * connroute.h; run it with and without the shim and compare (tests/integration/test_hosts.c).
 *
 *   hostprog MODE ARGS...     (addresses are 127.0.0.1; PORT is a number)
 *
 *   jumpconn HANG OK     SIGALRM handler that siglongjmps; alarm(1) around a blocking connect
 *                        to HANG (never answers): "connect1 jumped ms=N" (or "connect1 err E");
 *                        "flags1 nonblock=B" of that socket, then it is closed; a blocking
 *                        connect to OK: "connect_ok ok|err E", and while that is open a
 *                        non-blocking one: "connect_ok2 ok|err E"; then the same jump again
 *                        at HANG: "connect2 jumped ms=N" | "connect2 err E ms=N", and while
 *                        that socket is open a non-blocking connect there: "connect3 ...".
 *   jumpqueue OK         blocking connect A to OK ("connectA ok"); blocking connect B to OK,
 *                        left by siglongjmp from alarm(1) ("connectB jumped ms=N" or
 *                        "connectB err E ms=N"); close(A) guarded by alarm(3) ("closeA ok ms=N",
 *                        or "closeA deadlocked" and exit 3); close(B); a non-blocking connect N
 *                        ("connectN ok|err E ms=N", then closed); a blocking connect C
 *                        from a deeper stack frame: "connectC ok ms=N" | "connectC err E ms=N"; while
 *                        C is open, a non-blocking connect D: "connectD ok|err E ms=N".
 *   jumpcurl OK PATH     connectA and a jumped connectB as in jumpqueue, both closed; then a
 *                        libcurl GET of http://127.0.0.1:OK/PATH: "curl code=C ms=N".
 *   nested OK            blocking connect A to OK; a SIGALRM handler (no SA_RESTART) makes a
 *                        non-blocking connect to OK; alarm(1) during a blocking connect B to
 *                        OK: "connectA ...", "connectB ok|err E ms=N", "handler connect ok|err E".
 *   sndtimeo HANG MS     SO_SNDTIMEO = MS on a blocking socket, connect to HANG:
 *                        "connect err E ms=N".
 *   sarestart HANG STOP  SIGUSR1 handler with SA_RESTART, SIGUSR2 handler without (never
 *                        raised); a thread sends SIGUSR1 to the connecting thread after 300 ms,
 *                        and after STOP ms shuts the socket down if connect() still has not
 *                        returned (a bound without a timeout of ours); blocking connect to HANG:
 *                        "connect err E ms=N usr1=K stopped=S".
 *   vfork PORT HOW       blocking connect A to PORT; vfork, the child closes every fd >= 3
 *                        (HOW = closefrom | loop | close_range) and _exit(0)s: "child exit=0";
 *                        then a non-blocking connect B to PORT: "connectB ok|err E".
 *   fork PORT            blocking connects A, B to PORT; fork; the child makes a non-blocking
 *                        connect C: "child connectC ok|err E" and exits; then the parent a
 *                        non-blocking connect D: "parent connectD ok|err E".
 *   hold PORT STOPFILE MS  a blocking connect to PORT (kept open), then waits until STOPFILE
 *                        exists (at most MS): "hold done ms=N".
 *   chdir PORT MARK MS   a blocking connect to PORT (kept open), chdir("/"), creates MARK
 *                        (absolute), then every 100 ms two non-blocking connects to PORT,
 *                        closed again, until the second one fails with EAGAIN:
 *                        "refused after ms=N" | "never refused ms=N". */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *errname(int e)
{
	switch (e) {
	case 0: return "0";
	case EAGAIN: return "EAGAIN";
	case ETIMEDOUT: return "ETIMEDOUT";
	case EINPROGRESS: return "EINPROGRESS";
	case ECONNREFUSED: return "ECONNREFUSED";
	case ECONNABORTED: return "ECONNABORTED";
	case ECONNRESET: return "ECONNRESET";
	case EALREADY: return "EALREADY";
	case EISCONN: return "EISCONN";
	case EINTR: return "EINTR";
	case EPIPE: return "EPIPE";
	case EBADF: return "EBADF";
	case EINVAL: return "EINVAL";
	default: return "E?";
	}
}

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static struct sockaddr_in addr_of(const char *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	return a;
}

static int tcp(int nonblock)
{
	int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0) {
		printf("socket err %s\n", errname(errno));
		exit(1);
	}
	return fd;
}

/* connect() with errno kept: 0 or the errno. */
static int conn(int fd, const struct sockaddr_in *a)
{
	errno = 0;
	return connect(fd, (const struct sockaddr *)a, sizeof(*a)) == 0 ? 0 : errno;
}

static void say(const char *what, int e, long ms)
{
	if (e == 0)
		printf("%s ok ms=%ld\n", what, ms);
	else
		printf("%s err %s ms=%ld\n", what, errname(e), ms);
}

/* A connect timed from here: "WHAT ok ms=N" | "WHAT err E ms=N". */
static void timed(const char *what, int fd, const struct sockaddr_in *a)
{
	long t0 = now_ms();
	int e = conn(fd, a);
	say(what, e, now_ms() - t0);
}

/* ------------------------------------------------------------- siglongjmp */

static sigjmp_buf jb;
static volatile sig_atomic_t phase; /* 1 while closing: the alarm means a deadlock */

static void on_alarm(int sig)
{
	(void)sig;
	if (phase == 1) {
		static const char m[] = "closeA deadlocked\n";
		(void)!write(1, m, sizeof(m) - 1);
		_exit(3);
	}
	siglongjmp(jb, 1);
}

static void install_alarm(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
}

/* A blocking connect left by siglongjmp when alarm(1) fires. */
static void jump_connect(const char *what, int fd, const struct sockaddr_in *a)
{
	static long t0; /* static: survives the jump */
	t0 = now_ms();
	if (sigsetjmp(jb, 1) == 0) {
		alarm(1);
		int e = conn(fd, a);
		alarm(0);
		say(what, e, now_ms() - t0);
	} else {
		printf("%s jumped ms=%ld\n", what, now_ms() - t0);
	}
}

static int jumpconn(char **av)
{
	struct sockaddr_in hang = addr_of(av[0]), ok = addr_of(av[1]);
	install_alarm();
	int a = tcp(0);
	jump_connect("connect1", a, &hang);
	printf("flags1 nonblock=%d\n", (fcntl(a, F_GETFL) & O_NONBLOCK) != 0);
	close(a);
	int b = tcp(0);
	timed("connect_ok", b, &ok);
	timed("connect_ok2", tcp(1), &ok);
	close(b);
	int c = tcp(0);
	jump_connect("connect2", c, &hang);
	timed("connect3", tcp(1), &hang);
	close(c);
	return 0;
}

/* The third connect of jumpqueue, from a frame deeper than the second's: a waiter record
 * left on the stack by the jump must not happen to be at the same address. */
static __attribute__((noinline)) int deeper_connect(const struct sockaddr_in *a, int depth)
{
	volatile char pad[2048];
	pad[0] = (char)depth;
	if (depth > 0)
		return deeper_connect(a, depth - 1) + pad[0] - (char)depth;
	timed("connectC", tcp(0), a);
	timed("connectD", tcp(1), a);
	return 0;
}

static int jumpqueue(char **av)
{
	struct sockaddr_in ok = addr_of(av[0]);
	install_alarm();
	int a = tcp(0);
	timed("connectA", a, &ok);
	int b = tcp(0);
	jump_connect("connectB", b, &ok);
	phase = 1;
	alarm(3);
	long t0 = now_ms();
	int r = close(a);
	alarm(0);
	phase = 0;
	printf("closeA %s ms=%ld\n", r == 0 ? "ok" : errname(errno), now_ms() - t0);
	close(b);
	int n = tcp(1);
	timed("connectN", n, &ok);
	close(n);
	struct timespec settle = {0, 300000000L}; /* the server sees N closed before C */
	nanosleep(&settle, NULL);
	return deeper_connect(&ok, 4);
}

/* After a jump out of a routed connect's queue wait, the thread's libcurl transfers are
 * still the shim's (the lane's request_timeout applies). */
static size_t curl_sink(char *p, size_t sz, size_t n, void *u)
{
	(void)p;
	(void)u;
	return sz * n;
}

static int jumpcurl(char **av)
{
	struct sockaddr_in ok = addr_of(av[0]);
	install_alarm();
	int a = tcp(0);
	timed("connectA", a, &ok);
	int b = tcp(0);
	jump_connect("connectB", b, &ok);
	close(a);
	close(b);
	char url[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%s%s", av[0], av[1]);
	CURL *h = curl_easy_init();
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, curl_sink);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
	long t0 = now_ms();
	CURLcode c = curl_easy_perform(h);
	printf("curl code=%d ms=%ld\n", (int)c, now_ms() - t0);
	curl_easy_cleanup(h);
	return 0;
}

/* A handler that connects (connect() is async-signal-safe) while the thread waits in a
 * routed connect: its own connect is the kernel's, and the outer connect goes on. */
static atomic_int nested_errno = -1;
static struct sockaddr_in nested_dst;

static void on_alarm_connect(int sig)
{
	(void)sig;
	int saved = errno;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	atomic_store(&nested_errno, conn(fd, &nested_dst));
	errno = saved;
}

static int nested(char **av)
{
	nested_dst = addr_of(av[0]);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm_connect;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	int a = tcp(0);
	timed("connectA", a, &nested_dst);
	alarm(1);
	timed("connectB", tcp(0), &nested_dst);
	int e = atomic_load(&nested_errno);
	if (e < 0)
		printf("handler none\n");
	else
		say("handler connect", e, 0);
	return 0;
}

/* ------------------------------------------------------------ SO_SNDTIMEO */

static int sndtimeo(char **av)
{
	struct sockaddr_in hang = addr_of(av[0]);
	long ms = atol(av[1]);
	int fd = tcp(0);
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0)
		printf("setsockopt err %s\n", errname(errno));
	timed("connect", fd, &hang);
	return 0;
}

/* -------------------------------------------------------------- SA_RESTART */

static atomic_int usr1;
static atomic_int stopped;
static atomic_int connecting;
static pthread_t main_thread;
static int sa_fd;
static long stop_ms;

static void on_usr1(int sig)
{
	(void)sig;
	atomic_fetch_add(&usr1, 1);
}

static void on_usr2(int sig)
{
	(void)sig;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

static void *poker(void *arg)
{
	(void)arg;
	sleep_ms(300);
	pthread_kill(main_thread, SIGUSR1);
	long t0 = now_ms();
	while (atomic_load(&connecting) && now_ms() - t0 < stop_ms - 300)
		sleep_ms(10);
	if (atomic_load(&connecting)) {
		atomic_store(&stopped, 1);
		shutdown(sa_fd, SHUT_RDWR);
	}
	return NULL;
}

static int sarestart(char **av)
{
	struct sockaddr_in hang = addr_of(av[0]);
	stop_ms = atol(av[1]);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_usr2;
	sa.sa_flags = 0;
	sigaction(SIGUSR2, &sa, NULL);
	sa_fd = tcp(0);
	main_thread = pthread_self();
	atomic_store(&connecting, 1);
	pthread_t t;
	pthread_create(&t, NULL, poker, NULL);
	long t0 = now_ms();
	int e = conn(sa_fd, &hang);
	long ms = now_ms() - t0;
	atomic_store(&connecting, 0);
	pthread_join(t, NULL);
	printf("connect %s%s ms=%ld usr1=%d stopped=%d\n", e ? "err " : "ok", e ? errname(e) : "", ms,
	       atomic_load(&usr1), atomic_load(&stopped));
	return 0;
}

/* -------------------------------------------------------------- vfork, fork */

static int vforker(char **av)
{
	struct sockaddr_in a = addr_of(av[0]);
	const char *how = av[1];
	int fa = tcp(0);
	timed("connectA", fa, &a);
	fflush(stdout);
	pid_t pid = vfork();
	if (pid == 0) {
		if (!strcmp(how, "closefrom"))
			closefrom(3);
		else if (!strcmp(how, "close_range"))
			close_range(3, ~0u, 0);
		else
			for (int fd = 3; fd < 1024; fd++)
				close(fd);
		_exit(0);
	}
	int st = -1;
	waitpid(pid, &st, 0);
	printf("child exit=%d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	timed("connectB", tcp(1), &a);
	return 0;
}

static int forker(char **av)
{
	struct sockaddr_in a = addr_of(av[0]);
	int fa = tcp(0), fb = tcp(0);
	say("connectA", conn(fa, &a), 0);
	say("connectB", conn(fb, &a), 0);
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		int fc = tcp(1);
		say("child connectC", conn(fc, &a), 0);
		fflush(stdout);
		_exit(0);
	}
	int st = -1;
	waitpid(pid, &st, 0);
	printf("child exit=%d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	int fd = tcp(1);
	say("parent connectD", conn(fd, &a), 0);
	return 0;
}

/* ------------------------------------------------------- long-running hosts */

static int hold(char **av)
{
	struct sockaddr_in a = addr_of(av[0]);
	long max = atol(av[2]), t0 = now_ms();
	int fd = tcp(0);
	say("connect", conn(fd, &a), 0);
	fflush(stdout);
	while (access(av[1], F_OK) != 0 && now_ms() - t0 < max)
		sleep_ms(20);
	printf("hold done ms=%ld\n", now_ms() - t0);
	return 0;
}

static int chdirer(char **av)
{
	struct sockaddr_in a = addr_of(av[0]);
	long max = atol(av[2]);
	int fd = tcp(0);
	say("connect", conn(fd, &a), 0);
	if (chdir("/") != 0) {
		printf("chdir err\n");
		return 1;
	}
	int m = open(av[1], O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (m >= 0)
		close(m);
	fflush(stdout);
	long t0 = now_ms();
	while (now_ms() - t0 < max) {
		int p = tcp(1), q = tcp(1);
		int ep = conn(p, &a), eq = conn(q, &a);
		close(p);
		close(q);
		if (ep == EINPROGRESS && eq == EAGAIN) {
			printf("refused after ms=%ld\n", now_ms() - t0);
			return 0;
		}
		sleep_ms(100);
	}
	printf("never refused ms=%ld\n", now_ms() - t0);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	static const struct {
		const char *name;
		int nargs;
		int (*fn)(char **);
	} modes[] = {{"jumpconn", 2, jumpconn}, {"jumpqueue", 1, jumpqueue}, {"sndtimeo", 2, sndtimeo},
		     {"sarestart", 2, sarestart}, {"vfork", 2, vforker},      {"fork", 1, forker},
		     {"hold", 3, hold},           {"chdir", 3, chdirer},       {"nested", 1, nested},
		     {"jumpcurl", 2, jumpcurl}};
	for (size_t i = 0; argc >= 2 && i < sizeof(modes) / sizeof(modes[0]); i++)
		if (!strcmp(argv[1], modes[i].name)) {
			if (argc - 2 != modes[i].nargs) {
				fprintf(stderr, "hostprog %s: needs %d arguments\n", argv[1], modes[i].nargs);
				return 2;
			}
			return modes[i].fn(argv + 2);
		}
	fprintf(stderr, "usage: hostprog MODE ARGS... (see the source)\n");
	return 2;
}
