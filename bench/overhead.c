/* bench/overhead: the cost of close() and connect() on fds the shim does not route, timed in
 * tight bounded loops. The same binary runs with and without LD_PRELOAD (bench/overhead.sh);
 * the difference is what the shim adds to calls it has nothing to do with.
 *
 *   overhead [--case NAME|all] [--batch K] [--batches R] [--hooked-only]
 *
 * Cases (each: R batches; a batch creates K fds untimed, then times K calls in a row):
 *   close_ebadf      close() of an fd number that is not open (EBADF): the cheapest close
 *                    the kernel has, so what a hook adds stands out most
 *   close_eventfd    close() of a fresh eventfd
 *   close_pipe       close() of both ends of fresh pipes
 *   close_udp        close() of a fresh UDP socket (never connected)
 *   close_tcp        close() of a fresh TCP socket (never connected)
 *   close_unixpair   close() of both ends of fresh AF_UNIX socketpairs
 *   connect_udp      connect() of a fresh UDP socket to 127.0.0.1:9 (sends nothing);
 *                    the sockets are closed untimed
 *   sendto_udp       sendto() of one byte from a fresh UDP socket to 127.0.0.1:9, flags 0
 *                    (the sendto hook's fast path: no MSG_FASTOPEN); closed untimed
 * Each batch is timed twice, alternately: through the name the program links against ("close",
 * "connect": the shim's hook when it is preloaded) and through libc's own function, looked up
 * in libc.so.6 itself (never hooked). The in-process difference between the two cancels what
 * changes from one process to the next on a noisy machine (placement, frequency, neighbours).
 * Output per case, medians over the R batches of (batch time / K):
 *   case=NAME ns_per_call=X libc_ns_per_call=Y diff_ns=X-Y calls=N failed=N
 * Defaults: K = 256, R = 200. --hooked-only skips the libc loops (for callgrind).
 * For callgrind (noise-free instruction counts), the timed loops are the functions
 * timed_close, timed_connect and timed_sendto: valgrind --tool=callgrind --toggle-collect=timed_close. */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define KMAX 480

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

typedef int (*close_fn)(int);
typedef int (*connect_fn)(int, const struct sockaddr *, socklen_t);
typedef ssize_t (*sendto_fn)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);

/* Both loops call through a pointer, so the hooked and the libc runs differ only in the
 * function called. volatile: the compiler must not see through to a direct call. */
static close_fn volatile hooked_close = close, libc_close;
static connect_fn volatile hooked_connect = connect, libc_connect;
static sendto_fn volatile hooked_sendto = sendto, libc_sendto;

/* The timed loops: not inlined, so callgrind can collect exactly these. */
__attribute__((noinline)) long timed_close(const int *fds, int n, close_fn fn)
{
	long bad = 0;
	for (int i = 0; i < n; i++)
		bad += fn(fds[i]) != 0 && errno != EBADF;
	return bad;
}

__attribute__((noinline)) long timed_connect(const int *fds, int n, const struct sockaddr_in *sa,
					     connect_fn fn)
{
	long bad = 0;
	for (int i = 0; i < n; i++)
		bad += fn(fds[i], (const struct sockaddr *)sa, sizeof *sa) != 0;
	return bad;
}

__attribute__((noinline)) long timed_sendto(const int *fds, int n, const struct sockaddr_in *sa,
					    sendto_fn fn)
{
	long bad = 0;
	for (int i = 0; i < n; i++)
		bad += fn(fds[i], "x", 1, 0, (const struct sockaddr *)sa, sizeof *sa) != 1;
	return bad;
}

static int make_fds(const char *name, int *fds, int k)
{
	int n = 0;
	while (n < k) {
		int p[2];
		if (!strcmp(name, "close_ebadf")) {
			fds[n] = 900000 + n; /* above any fd limit: never open */
			n++;
		} else if (!strcmp(name, "close_eventfd")) {
			if ((fds[n] = eventfd(0, EFD_CLOEXEC)) < 0)
				return -1;
			n++;
		} else if (!strcmp(name, "close_pipe")) {
			if (n + 2 > k || pipe2(p, O_CLOEXEC) != 0)
				break;
			fds[n++] = p[0];
			fds[n++] = p[1];
		} else if (!strcmp(name, "close_udp") || !strcmp(name, "connect_udp") ||
			   !strcmp(name, "sendto_udp")) {
			if ((fds[n] = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
				return -1;
			n++;
		} else if (!strcmp(name, "close_tcp")) {
			if ((fds[n] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
				return -1;
			n++;
		} else if (!strcmp(name, "close_unixpair")) {
			if (n + 2 > k || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) != 0)
				break;
			fds[n++] = p[0];
			fds[n++] = p[1];
		} else {
			return -1;
		}
	}
	return n;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* One timed batch: fresh fds, K calls through the given function. Returns ns per call. */
static double batch(const char *name, int k, int use_libc, long *calls, long *bad)
{
	int fds[KMAX];
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(9)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int is_connect = !strcmp(name, "connect_udp"), is_sendto = !strcmp(name, "sendto_udp");
	int n = make_fds(name, fds, k);
	if (n <= 0) {
		fprintf(stderr, "overhead: cannot make fds for %s: %s\n", name, strerror(errno));
		exit(1);
	}
	long long t0 = now_ns();
	if (is_connect)
		*bad += timed_connect(fds, n, &sa, use_libc ? libc_connect : hooked_connect);
	else if (is_sendto)
		*bad += timed_sendto(fds, n, &sa, use_libc ? libc_sendto : hooked_sendto);
	else
		*bad += timed_close(fds, n, use_libc ? libc_close : hooked_close);
	long long t1 = now_ns();
	if (is_connect || is_sendto)
		for (int i = 0; i < n; i++)
			libc_close(fds[i]);
	*calls += n;
	return (double)(t1 - t0) / n;
}

static int run_case(const char *name, int k, int batches, int hooked_only)
{
	double *per = malloc((size_t)batches * sizeof *per);
	double *lper = malloc((size_t)batches * sizeof *lper);
	if (!per || !lper)
		return -1;
	long calls = 0, bad = 0, lcalls = 0, lbad = 0;
	for (int b = 0; b < batches; b++) {
		/* alternate which goes first, so neither always follows the fd creation */
		if (!hooked_only && (b & 1))
			lper[b] = batch(name, k, 1, &lcalls, &lbad);
		per[b] = batch(name, k, 0, &calls, &bad);
		if (!hooked_only && !(b & 1))
			lper[b] = batch(name, k, 1, &lcalls, &lbad);
	}
	qsort(per, (size_t)batches, sizeof *per, cmp_double);
	if (hooked_only) {
		printf("case=%s ns_per_call=%.1f calls=%ld failed=%ld\n", name, per[batches / 2], calls, bad);
	} else {
		qsort(lper, (size_t)batches, sizeof *lper, cmp_double);
		printf("case=%s ns_per_call=%.1f libc_ns_per_call=%.1f diff_ns=%.1f calls=%ld failed=%ld\n",
		       name, per[batches / 2], lper[batches / 2], per[batches / 2] - lper[batches / 2], calls,
		       bad + lbad);
	}
	free(per);
	free(lper);
	return 0;
}

int main(int argc, char **argv)
{
	static const char *const cases[] = {"close_ebadf", "close_eventfd", "close_pipe", "close_udp", "close_tcp",
					    "close_unixpair", "connect_udp", "sendto_udp", NULL};
	const char *which = "all";
	int k = 256, batches = 200, hooked_only = 0;
	for (int a = 1; a < argc; a++) {
		if (!strcmp(argv[a], "--case") && a + 1 < argc)
			which = argv[++a];
		else if (!strcmp(argv[a], "--batch") && a + 1 < argc)
			k = atoi(argv[++a]);
		else if (!strcmp(argv[a], "--batches") && a + 1 < argc)
			batches = atoi(argv[++a]);
		else if (!strcmp(argv[a], "--hooked-only"))
			hooked_only = 1;
		else {
			fputs("usage: overhead [--case NAME|all] [--batch K (2..480)] [--batches R (1..100000)]\n"
			      "  [--hooked-only]\n",
			      stderr);
			return 2;
		}
	}
	if (k < 2 || k > KMAX || batches < 1 || batches > 100000) {
		fputs("overhead: --batch 2..480, --batches 1..100000\n", stderr);
		return 2;
	}
	void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
	if (!libc || !(libc_close = (close_fn)dlsym(libc, "close")) ||
	    !(libc_connect = (connect_fn)dlsym(libc, "connect")) ||
	    !(libc_sendto = (sendto_fn)dlsym(libc, "sendto"))) {
		fprintf(stderr, "overhead: cannot find libc's own close/connect: %s\n", dlerror());
		return 1;
	}
	int found = 0;
	for (int i = 0; cases[i]; i++) {
		if (strcmp(which, "all") && strcmp(which, cases[i]))
			continue;
		found = 1;
		if (run_case(cases[i], k, batches, hooked_only) != 0)
			return 1;
	}
	if (!found) {
		fprintf(stderr, "overhead: unknown case '%s'\n", which);
		return 2;
	}
	return 0;
}
