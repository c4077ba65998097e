/* multifork: an adversarial libcurl multi-interface program (plain libcurl, no connroute
 * API), for the tests of multi transfers in lanes under fork, vfork, siglongjmp, a closed
 * fd table and cleanups in the wrong order (tests/integration/test_multi_fork.c,
 * docs/INTERNALS.md "Multi transfers").
 *
 *   multifork MODE BASEURL [-n N]
 *
 * BASEURL is the test upstream's ("http://127.0.0.1:PORT", no trailing slash). Every
 * transfer line is "<tag> <i> rc <CURLcode> http <status> bytes <n>"; every wait is bounded
 * (a transfer never finished prints rc -1). Modes:
 *   fork-abandon|fork-mcleanup|fork-ecleanup
 *          N (default 4) POSTs to /delay/400 (body "p<i>") in one multi; once one has
 *          started (the others queued behind a lane limit, or all in flight without one)
 *          the process forks. The child leaves the parent's multi alone (abandon), or calls
 *          curl_multi_cleanup on its copy then curl_easy_cleanup of each handle (mcleanup),
 *          or the easy cleanups first (ecleanup); then runs 3 GETs of /delay/50 ("c") in a
 *          multi of its own and exits 0 when they succeeded. The parent finishes its
 *          transfers ("p"), waits for the child ("child status S").
 *   vfork-exec|vfork-exit
 *          N (default 4) GETs of /delay/200 ("a"); the first write callback vforks a child
 *          that execs /bin/true (or _exits at once) and waits for it; then N more in a new
 *          multi ("b").
 *   jmp-write-clean|jmp-write-abandon|jmp-progress-clean|jmp-progress-abandon
 *          one GET of /size/2000000 ("j") whose first write (or progress) callback
 *          siglongjmps out of curl_multi_perform; then the handle and multi are cleaned up
 *          (remove, easy cleanup, multi cleanup: their return codes printed) or left as they
 *          are; then N (default 3) GETs of /delay/100 ("b") in a new multi, run from a deeper
 *          stack frame than the first.
 *   closefds|closefds-loop
 *          3 GETs ("a"), then every fd >= 3 closed (close_range, or a loop over
 *          /proc/self/fd); the app opens a pipe and /dev/null; 3 more GETs ("b") twice
 *          ("c"); then its fds must be what it opened, untouched ("fds ok" or "fds BAD ...").
 *   mc-live|ec-live
 *          N (default 4) GETs of /delay/300; after 150 ms (one in flight, the others queued
 *          behind a limit) curl_multi_cleanup with nothing removed, then curl_easy_cleanup
 *          of each (mc-live), or each curl_easy_cleanup (still in the multi) then the
 *          multi's cleanup (ec-live); codes printed; then N GETs of /delay/50 ("b").
 * Exit status 0 when every transfer that must succeed did, 1 otherwise, 2 on bad usage. */
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sockutil.h"

#define MAXX 16

static const char *base;
static int nx = -1;

struct xf {
	CURL *h;
	int done;
	CURLcode rc;
	long http;
	long bytes;
	char post[16];
	char url[256];
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	(void)p;
	((struct xf *)ud)->bytes += (long)(size * n);
	return size * n;
}

static void setup(struct xf *x, const char *path, const char *post)
{
	snprintf(x->url, sizeof(x->url), "%s%s", base, path);
	x->h = curl_easy_init();
	x->done = 0;
	x->rc = (CURLcode)-1;
	x->http = 0;
	x->bytes = 0;
	curl_easy_setopt(x->h, CURLOPT_URL, x->url);
	curl_easy_setopt(x->h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(x->h, CURLOPT_TIMEOUT_MS, 15000L);
	curl_easy_setopt(x->h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(x->h, CURLOPT_WRITEDATA, x);
	if (post) {
		snprintf(x->post, sizeof(x->post), "%s", post);
		curl_easy_setopt(x->h, CURLOPT_POSTFIELDS, x->post);
	}
}

/* Finished transfers read and removed, the way many programs do it: the message is read
 * again after curl_multi_remove_handle (libcurl 7.x keeps it in the easy handle, so this
 * works without the shim). Returns how many finished now. */
static int read_msgs(CURLM *m, struct xf *xs, int n)
{
	CURLMsg *msg;
	int left, k = 0;
	while ((msg = curl_multi_info_read(m, &left))) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		for (int i = 0; i < n; i++) {
			struct xf *x = &xs[i];
			if (x->h != msg->easy_handle || x->done)
				continue;
			curl_multi_remove_handle(m, msg->easy_handle);
			x->done = 1;
			x->rc = msg->data.result;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &x->http);
			k++;
		}
	}
	return k;
}

/* Drives M until every transfer of XS finished or UNTIL (ms, monotonic) passed; STOP_AT > 0:
 * returns once that many milliseconds passed (transfers still running). */
static void drive(CURLM *m, struct xf *xs, int n, long long until, long long stop_at)
{
	int ndone = 0;
	for (int i = 0; i < n; i++)
		ndone += xs[i].done;
	while (ndone < n && now_ms() < until) {
		if (stop_at > 0 && now_ms() >= stop_at)
			return;
		int running = 0;
		if (curl_multi_perform(m, &running) != CURLM_OK)
			break;
		ndone += read_msgs(m, xs, n);
		if (ndone >= n)
			break;
		curl_multi_poll(m, NULL, 0, 50, NULL);
	}
}

static int report(const char *tag, struct xf *xs, int n)
{
	int bad = 0;
	for (int i = 0; i < n; i++) {
		printf("%s %d rc %d http %ld bytes %ld\n", tag, i, (int)xs[i].rc, xs[i].http,
		       xs[i].bytes);
		bad |= xs[i].rc != CURLE_OK || xs[i].http != 200;
	}
	fflush(stdout);
	return bad;
}

static void cleanup_all(CURLM *m, struct xf *xs, int n)
{
	for (int i = 0; i < n; i++) {
		if (!xs[i].done)
			curl_multi_remove_handle(m, xs[i].h);
		curl_easy_cleanup(xs[i].h);
	}
	curl_multi_cleanup(m);
}

/* A multi of its own: N transfers of PATH, all at once, within 12 s. */
static int round_of(const char *tag, const char *path, int n)
{
	struct xf xs[MAXX];
	CURLM *m = curl_multi_init();
	for (int i = 0; i < n; i++) {
		setup(&xs[i], path, NULL);
		curl_multi_add_handle(m, xs[i].h);
	}
	drive(m, xs, n, now_ms() + 12000, 0);
	int bad = report(tag, xs, n);
	cleanup_all(m, xs, n);
	return bad;
}

/* -------------------------------------------------------------------- fork */

static int do_fork(const char *how)
{
	int n = nx > 0 ? nx : 4;
	struct xf xs[MAXX];
	CURLM *m = curl_multi_init();
	for (int i = 0; i < n; i++) {
		char body[16];
		snprintf(body, sizeof(body), "p%d", i);
		setup(&xs[i], "/delay/400", body);
		curl_multi_add_handle(m, xs[i].h);
	}
	/* Running: the first is at the server, the rest queued or in flight. */
	drive(m, xs, n, now_ms() + 5000, now_ms() + 150);
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		return 1;
	}
	if (pid == 0) {
		if (!strcmp(how, "mcleanup")) {
			printf("child multi_cleanup %d\n", (int)curl_multi_cleanup(m));
			for (int i = 0; i < n; i++)
				curl_easy_cleanup(xs[i].h);
		} else if (!strcmp(how, "ecleanup")) {
			for (int i = 0; i < n; i++)
				curl_easy_cleanup(xs[i].h);
			printf("child multi_cleanup %d\n", (int)curl_multi_cleanup(m));
		}
		fflush(stdout);
		int bad = round_of("c", "/delay/50", 3);
		exit(bad);
	}
	drive(m, xs, n, now_ms() + 15000, 0);
	int bad = report("p", xs, n);
	cleanup_all(m, xs, n);
	int st = -1;
	for (int i = 0; i < 1500; i++) { /* 15 s */
		if (waitpid(pid, &st, WNOHANG) == pid)
			break;
		st = -1;
		usleep(10000);
	}
	if (st == -1)
		kill(pid, SIGKILL);
	printf("child status %d\n", st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	return bad || st != 0;
}

/* ------------------------------------------------------------------- vfork */

static int vfork_exec, vforked;

static size_t on_body_vfork(char *p, size_t size, size_t n, void *ud)
{
	if (!vforked) {
		vforked = 1;
		pid_t pid = vfork();
		if (pid == 0) {
			if (vfork_exec)
				execl("/bin/true", "true", (char *)NULL);
			_exit(0);
		}
		int st = -1;
		if (pid > 0)
			waitpid(pid, &st, 0);
		printf("vfork child status %d\n", pid > 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	}
	return on_body(p, size, n, ud);
}

static int do_vfork(void)
{
	int n = nx > 0 ? nx : 4;
	struct xf xs[MAXX];
	CURLM *m = curl_multi_init();
	for (int i = 0; i < n; i++) {
		setup(&xs[i], "/delay/200", NULL);
		curl_easy_setopt(xs[i].h, CURLOPT_WRITEFUNCTION, on_body_vfork);
		curl_multi_add_handle(m, xs[i].h);
	}
	drive(m, xs, n, now_ms() + 12000, 0);
	int bad = report("a", xs, n);
	cleanup_all(m, xs, n);
	bad |= round_of("b", "/delay/200", n);
	return bad;
}

/* ---------------------------------------------------------------- longjmp */

static sigjmp_buf jb;
static int jumped;

static size_t on_body_jmp(char *p, size_t size, size_t n, void *ud)
{
	(void)p;
	(void)ud;
	jumped = 1;
	siglongjmp(jb, 1);
	return size * n;
}

static int on_progress_jmp(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	(void)ud;
	(void)dt;
	(void)ut;
	(void)un;
	if (dn > 0) {
		jumped = 1;
		siglongjmp(jb, 1);
	}
	return 0;
}

/* The rest runs deeper on the stack than the call that was left. */
static int __attribute__((noinline)) deep(int d, const char *path, int n)
{
	volatile char pad[2048];
	pad[0] = (char)d;
	if (d > 0)
		return deep(d - 1, path, n) + pad[0] - (char)d;
	return round_of("b", path, n);
}

static int do_jmp(int progress, int clean)
{
	int n = nx > 0 ? nx : 3;
	static struct xf x;
	static CURLM *m;
	m = curl_multi_init();
	setup(&x, "/size/2000000", NULL);
	if (progress) {
		curl_easy_setopt(x.h, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(x.h, CURLOPT_XFERINFOFUNCTION, on_progress_jmp);
	} else {
		curl_easy_setopt(x.h, CURLOPT_WRITEFUNCTION, on_body_jmp);
	}
	curl_multi_add_handle(m, x.h);
	if (sigsetjmp(jb, 1) == 0)
		drive(m, &x, 1, now_ms() + 5000, 0);
	printf("jumped %d\n", jumped);
	if (clean) {
		printf("remove %d\n", (int)curl_multi_remove_handle(m, x.h));
		curl_easy_cleanup(x.h);
		printf("multi_cleanup %d\n", (int)curl_multi_cleanup(m));
	}
	fflush(stdout);
	long long t0 = now_ms();
	int bad = deep(8, "/delay/100", n);
	printf("after %s\n", now_ms() - t0 < 8000 ? "in time" : "TOO LATE");
	return bad || !jumped;
}

/* ----------------------------------------------------------------- fds */

static void close_all(int loop)
{
	if (!loop) {
		syscall(SYS_close_range, 3u, ~0u, 0);
		return;
	}
	int fds[1024], k = 0;
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	while (d && (de = readdir(d)) && k < 1024) {
		int fd = atoi(de->d_name);
		if (fd >= 3 && fd != dirfd(d))
			fds[k++] = fd;
	}
	if (d)
		closedir(d);
	for (int i = 0; i < k; i++)
		close(fds[i]);
}

static int do_closefds(int loop)
{
	int bad = round_of("a", "/", 3);
	close_all(loop);
	int p[2];
	if (pipe(p) != 0)
		return 1;
	int nul = open("/dev/null", O_RDONLY);
	struct stat st[3];
	int fds[3] = {p[0], p[1], nul};
	for (int i = 0; i < 3; i++)
		fstat(fds[i], &st[i]);
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	bad |= round_of("b", "/", 3);
	bad |= round_of("c", "/delay/20", 3);
	int ok = 1;
	char why[128] = "";
	for (int i = 0; i < 3; i++) {
		struct stat s;
		if (fstat(fds[i], &s) != 0 || s.st_ino != st[i].st_ino || s.st_dev != st[i].st_dev) {
			ok = 0;
			snprintf(why, sizeof(why), "fd %d changed", fds[i]);
		}
	}
	char c;
	if (ok && read(p[0], &c, 1) != -1) {
		ok = 0;
		snprintf(why, sizeof(why), "something was written to the app's pipe");
	}
	if (ok && (write(p[1], "z", 1) != 1 || read(p[0], &c, 1) != 1 || c != 'z')) {
		ok = 0;
		snprintf(why, sizeof(why), "the app's pipe does not work");
	}
	printf("fds %s%s%s\n", ok ? "ok" : "BAD", *why ? " " : "", why);
	return bad || !ok;
}

/* ------------------------------------------------------------- live cleanup */

static int do_live(int multi_first)
{
	int n = nx > 0 ? nx : 4;
	struct xf xs[MAXX];
	CURLM *m = curl_multi_init();
	for (int i = 0; i < n; i++) {
		setup(&xs[i], "/delay/300", NULL);
		curl_multi_add_handle(m, xs[i].h);
	}
	drive(m, xs, n, now_ms() + 5000, now_ms() + 150);
	if (multi_first) {
		printf("multi_cleanup %d\n", (int)curl_multi_cleanup(m));
		for (int i = 0; i < n; i++)
			curl_easy_cleanup(xs[i].h);
	} else {
		for (int i = 0; i < n; i++)
			curl_easy_cleanup(xs[i].h);
		printf("multi_cleanup %d\n", (int)curl_multi_cleanup(m));
	}
	fflush(stdout);
	return round_of("b", "/delay/50", n);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: multifork MODE BASEURL [-n N]\n");
		return 2;
	}
	const char *mode = argv[1];
	base = argv[2];
	for (int i = 3; i < argc; i++) {
		if (!strcmp(argv[i], "-n") && i + 1 < argc)
			nx = atoi(argv[++i]);
		else
			return 2;
	}
	if (nx > MAXX)
		return 2;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	int bad;
	if (!strncmp(mode, "fork-", 5))
		bad = do_fork(mode + 5);
	else if (!strcmp(mode, "vfork-exec") || !strcmp(mode, "vfork-exit")) {
		vfork_exec = !strcmp(mode, "vfork-exec");
		bad = do_vfork();
	} else if (!strncmp(mode, "jmp-", 4)) {
		int progress = !strncmp(mode + 4, "progress", 8);
		bad = do_jmp(progress, strstr(mode, "-clean") != NULL);
	} else if (!strcmp(mode, "closefds") || !strcmp(mode, "closefds-loop"))
		bad = do_closefds(!strcmp(mode, "closefds-loop"));
	else if (!strcmp(mode, "mc-live") || !strcmp(mode, "ec-live"))
		bad = do_live(!strcmp(mode, "mc-live"));
	else
		return 2;
	curl_global_cleanup();
	printf("exit %d\n", bad);
	return bad;
}
