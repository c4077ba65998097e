/* apiprog: a program written against include/connroute.h. It must build and
 * run the same with and without the shim; with it, each thread's key picks
 * the lane of its connections.
 *   apiprog                       API behaviour only
 *   apiprog PORT KEY [KEY...]     one thread per key connects to 127.0.0.1:PORT
 *                                 and prints the socket options it got */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <connroute.h>

static const char *show(const char *s)
{
	return s ? s : "(null)";
}

static int port;

static void *worker(void *arg)
{
	const char *key = arg;
	int v = -1, tos = -1;
	socklen_t l = sizeof(v);
	char out[256];
	int rc = connroute_set_key(key);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	int c = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &l);
	l = sizeof(tos);
	getsockopt(fd, IPPROTO_IP, IP_TOS, &tos, &l);
	snprintf(out, sizeof(out), "thread key=%s set=%d effective=%s connect=%d nodelay=%d tos=%d\n", key,
		 rc, show(connroute_get_key()), c, v, tos);
	fputs(out, stdout);
	close(fd);
	return NULL;
}

static int scoped_return(void)
{
	CONNROUTE_WITH_KEY("inner/return") {
		return 7;
	}
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 3) {
		pthread_t t[16];
		int n = argc - 2 > 16 ? 16 : argc - 2;
		port = atoi(argv[1]);
		for (int i = 0; i < n; i++)
			pthread_create(&t[i], NULL, worker, argv[2 + i]);
		for (int i = 0; i < n; i++)
			pthread_join(t[i], NULL);
		return 0;
	}

	printf("initial=%s\n", show(connroute_get_key()));
	errno = 0;
	int rc = connroute_set_key("payments/critical");
	printf("set=%d errno=%s now=%s\n", rc, errno == ENOSYS ? "ENOSYS" : errno ? "other" : "0",
	       show(connroute_get_key()));
	errno = 0;
	rc = connroute_set_key("bad key!");
	printf("bad=%d errno=%s now=%s\n", rc,
	       errno == EINVAL ? "EINVAL" : errno == ENOSYS ? "ENOSYS" : "other", show(connroute_get_key()));
	CONNROUTE_WITH_KEY("batch") {
		printf("scope1=%s\n", show(connroute_get_key()));
		CONNROUTE_WITH_KEY("reports/batch+idempotent") {
			printf("scope2=%s\n", show(connroute_get_key()));
		}
		printf("after2=%s\n", show(connroute_get_key()));
	}
	printf("after1=%s\n", show(connroute_get_key()));
	for (int i = 0; i < 3; i++) {
		CONNROUTE_WITH_KEY("loop/break") {
			if (i == 1)
				break;
		}
	}
	printf("afterbreak=%s\n", show(connroute_get_key()));
	printf("return=%d afterreturn=%s\n", scoped_return(), show(connroute_get_key()));
	rc = connroute_set_key(NULL);
	printf("reset=%d now=%s\n", rc, show(connroute_get_key()));
	return 0;
}
