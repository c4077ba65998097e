/* bench/conncost: N blocking TCP connect() + close() pairs to 127.0.0.1:PORT in one
 * function (timed_connects), for callgrind's --toggle-collect: the instructions the shim
 * adds to a connect it routes or passes through (bench/resilience.sh). An ordinary program:
 * it never includes connroute.h.
 *
 *   conncost PORT N */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

__attribute__((noinline)) int timed_connects(const struct sockaddr_in *a, int n)
{
	int ok = 0;
	for (int i = 0; i < n; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0)
			return -1;
		ok += connect(fd, (const struct sockaddr *)a, sizeof(*a)) == 0;
		close(fd);
	}
	return ok;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: conncost PORT N\n");
		return 2;
	}
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	int n = atoi(argv[2]);
	timed_connects(&a, 1); /* first use: lazy init, the background thread */
	int ok = timed_connects(&a, n);
	printf("connects=%d ok=%d\n", n, ok);
	return ok == n ? 0 : 1;
}
