/* h2_sigio: a signal-driven socket client (no connroute.h), as old event loops and some
 * daemons are written: the socket is made the process's (F_SETOWN), optionally given a
 * real-time signal (F_SETSIG), switched to O_ASYNC | O_NONBLOCK, then connected; the
 * program learns that the response arrived from the signal.
 *
 *   h2_sigio KICKPORT PORT io|rt
 *     KICKPORT > 0: first a plain blocking connect to 127.0.0.1:KICKPORT (closed at once),
 *     then 300 ms of sleep. Then the signal-driven socket to 127.0.0.1:PORT: connect, wait
 *     for it to be writable (2 s), send "GET /conn", count the signals that arrive within
 *     2 s (it stops waiting at the first), read the response. Prints
 *       connect <ok|EINPROGRESS|err E>
 *       signals N pollin N            (pollin: si_code POLL_IN for this fd; rt only)
 *       body <first line of the response body>
 *     Exit 0 when it got the response; 1 otherwise.
 *   io: the default SIGIO (F_SETSIG 0); rt: F_SETSIG SIGRTMIN (siginfo carries the fd).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sockutil.h"

static volatile sig_atomic_t nsig, npollin, watch_fd = -1;

static void on_sig(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	nsig++;
	if (si->si_code == POLL_IN && si->si_fd == watch_fd)
		npollin++;
}

static struct sockaddr_in addr(int port)
{
	struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	inet_pton(AF_INET, "127.0.0.1", &in.sin_addr);
	return in;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc != 4) {
		fprintf(stderr, "usage: h2_sigio KICKPORT PORT io|rt\n");
		return 2;
	}
	int kick = atoi(argv[1]), port = atoi(argv[2]), rt = !strcmp(argv[3], "rt");
	int sig = rt ? SIGRTMIN : SIGIO;

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sig;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(sig, &sa, NULL);

	if (kick > 0) {
		int k = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in in = addr(kick);
		if (connect(k, (struct sockaddr *)&in, sizeof(in)) != 0)
			printf("kick err %d\n", errno);
		close(k);
		sleep_ms(300);
	}

	int fd = socket(AF_INET, SOCK_STREAM, 0);
	watch_fd = fd;
	if (fcntl(fd, F_SETOWN, getpid()) != 0 || fcntl(fd, F_SETSIG, rt ? sig : 0) != 0 ||
	    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_ASYNC | O_NONBLOCK) != 0) {
		printf("fcntl err %d\n", errno);
		return 1;
	}
	struct sockaddr_in in = addr(port);
	int r = connect(fd, (struct sockaddr *)&in, sizeof(in));
	int e = errno;
	printf("connect %s\n", r == 0 ? "ok" : e == EINPROGRESS ? "EINPROGRESS" : "err");
	if (r != 0 && e != EINPROGRESS)
		return 1;
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	if (poll(&p, 1, 2000) <= 0) {
		printf("not writable\n");
		return 1;
	}
	sleep_ms(50); /* signals of the connect itself are not the response's */

	nsig = 0;
	npollin = 0;
	const char *req = "GET /conn HTTP/1.1\r\nHost: localhost\r\n\r\n";
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
		printf("write err %d\n", errno);
		return 1;
	}
	double t0 = now_ms();
	while (nsig == 0 && now_ms() - t0 < 2000)
		sleep_ms(5);
	sleep_ms(20); /* a second signal for the same data would show here */
	printf("signals %d pollin %d\n", (int)nsig, (int)npollin);

	char buf[4096];
	size_t got = 0;
	p.events = POLLIN;
	t0 = now_ms();
	while (got < sizeof(buf) - 1 && now_ms() - t0 < 2000) {
		if (poll(&p, 1, 100) <= 0)
			continue;
		ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
		buf[got] = '\0';
		if (strstr(buf, "\r\n\r\n") && strchr(strstr(buf, "\r\n\r\n") + 4, '\n'))
			break;
	}
	buf[got] = '\0';
	char *body = strstr(buf, "\r\n\r\n");
	if (!body) {
		printf("no response\n");
		return 1;
	}
	body += 4;
	body[strcspn(body, "\r\n")] = '\0';
	printf("body %s\n", body);
	close(fd);
	return 0;
}
