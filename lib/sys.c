/* connroute: raw syscalls. glibc's syscall() sets errno; these restore it so
 * the host's errno is only ever changed by the real call it made. */
#include <errno.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base.h"
#include "sys.h"

static long raw(long nr, long a, long b, long c, long d, long e)
{
	long r;
	SAVE_ERRNO(r = syscall(nr, a, b, c, d, e); if (r < 0) r = -errno);
	return r;
}

long cr_sys_close(int fd)
{
	return raw(SYS_close, fd, 0, 0, 0, 0);
}

long cr_sys_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	return raw(SYS_connect, fd, (long)sa, (long)len, 0, 0);
}

long cr_sys_close_range(unsigned first, unsigned last, unsigned flags)
{
#ifdef SYS_close_range
	return raw(SYS_close_range, first, last, flags, 0, 0);
#else
	return -ENOSYS;
#endif
}

long cr_sys_dup(int fd)
{
	return raw(SYS_dup, fd, 0, 0, 0, 0);
}

long cr_sys_dup2(int oldfd, int newfd)
{
#ifdef SYS_dup2
	return raw(SYS_dup2, oldfd, newfd, 0, 0, 0);
#else
	/* As glibc does where the kernel has no dup2 (aarch64): dup3 refuses
	 * oldfd == newfd, dup2 returns it if it is open. */
	if (oldfd == newfd) {
		long r = raw(SYS_fcntl, oldfd, F_GETFD, 0, 0, 0);
		return r < 0 ? r : oldfd;
	}
	return raw(SYS_dup3, oldfd, newfd, 0, 0, 0);
#endif
}

long cr_sys_dup3(int oldfd, int newfd, int flags)
{
	return raw(SYS_dup3, oldfd, newfd, flags, 0, 0);
}

long cr_sys_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	return raw(SYS_setsockopt, fd, level, name, (long)val, (long)len);
}

long cr_sys_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	return raw(SYS_epoll_ctl, epfd, op, fd, (long)ev, 0);
}

void cr_sys_write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	for (int tries = 0; n > 0 && tries < 64; tries++) {
		long w = raw(SYS_write, fd, (long)p, (long)n, 0, 0);
		if (w == -EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}
