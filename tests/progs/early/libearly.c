/* libearly: a library whose constructor calls hooked functions before
 * libconnroute's constructor has run. ld.so initialises a program's own
 * NEEDED libraries before the LD_PRELOADed ones (glibc runs dependencies
 * first, and a preload depends on nothing of the program's), so these calls
 * reach the hooks while the real symbols are not resolved yet: the state
 * docs/INTERNALS.md ("State machine") promises passes straight through.
 * earlyprog runs the same probe again from main() and prints both. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* The proof of the order: the shim's constructor reads CONNROUTE_KEY, so
 * before it ran the process key is still the built-in "default". */
extern const char *connroute_get_key(void) __attribute__((weak));

static char ctor_out[4096];

static const char *errname(int e)
{
	switch (e) {
	case EBADF: return "EBADF";
	case EINVAL: return "EINVAL";
	case EPERM: return "EPERM";
	case ENOSYS: return "ENOSYS";
	case ENOTSOCK: return "ENOTSOCK";
	default: return "E?";
	}
}

static void note(char *buf, size_t n, const char *who, const char *what, int r, int e)
{
	size_t u = strlen(buf);
	if (r < 0)
		snprintf(buf + u, n - u, "%s %s err %s\n", who, what, errname(e));
	else
		snprintf(buf + u, n - u, "%s %s ok\n", who, what);
}

/* Every call below fails or succeeds the same way with and without the shim,
 * before and after its constructor. */
void early_probe(char *buf, size_t n, const char *who)
{
	const char *key = connroute_get_key ? connroute_get_key() : NULL;
	size_t u = strlen(buf);
	snprintf(buf + u, n - u, "%s key %s\n", who, key ? key : "(none)");

	int one = 1, r, fd = socket(AF_INET, SOCK_STREAM, 0);
	struct epoll_event ev = {.events = EPOLLIN};
	struct sockaddr sa = {.sa_family = AF_INET};
	errno = 0;
	r = setsockopt(-1, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	note(buf, n, who, "setsockopt_badfd", r, errno);
	r = setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	note(buf, n, who, "setsockopt", r, errno);
	r = epoll_ctl(-1, EPOLL_CTL_ADD, fd, &ev);
	note(buf, n, who, "epoll_ctl_badfd", r, errno);
	r = dup(-1);
	note(buf, n, who, "dup_badfd", r, errno);
	r = dup2(fd, fd);
	note(buf, n, who, r == fd ? "dup2_same_is_fd" : "dup2_same_is_not_fd", r, errno);
	r = dup2(999, 999);
	note(buf, n, who, "dup2_same_badfd", r, errno);
	r = dup3(fd, fd, 0);
	note(buf, n, who, "dup3_same", r, errno);
	r = connect(-1, &sa, sizeof(sa));
	note(buf, n, who, "connect_badfd", r, errno);
	r = close(-1);
	note(buf, n, who, "close_badfd", r, errno);
	r = close_range(5, 3, 0);
	note(buf, n, who, "close_range_backwards", r, errno);
	/* errno is the caller's own after a successful call. */
	errno = EXDEV;
	r = dup(fd);
	note(buf, n, who, errno == EXDEV ? "dup_keeps_errno" : "dup_changed_errno", r, errno);
	if (r >= 0)
		close(r);
	r = close(fd);
	note(buf, n, who, "close", r, errno);
}

__attribute__((constructor)) static void early(void)
{
	early_probe(ctor_out, sizeof(ctor_out), "ctor");
}

const char *early_ctor_output(void)
{
	return ctor_out;
}
