/* connroute: raw syscalls. glibc's syscall() sets errno; these restore it so
 * the host's errno is only ever changed by the real call it made. */
#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sys.h"

static long raw(long nr, long a, long b, long c)
{
	int saved = errno;
	long r = syscall(nr, a, b, c);
	if (r < 0)
		r = -errno;
	errno = saved;
	return r;
}

long cr_sys_close(int fd)
{
	return raw(SYS_close, fd, 0, 0);
}

long cr_sys_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	return raw(SYS_connect, fd, (long)sa, (long)len);
}

long cr_sys_close_range(unsigned first, unsigned last, unsigned flags)
{
#ifdef SYS_close_range
	return raw(SYS_close_range, first, last, flags);
#else
	return -ENOSYS;
#endif
}

long cr_sys_dup3(int oldfd, int newfd, int flags)
{
	return raw(SYS_dup3, oldfd, newfd, flags);
}

void cr_sys_write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	for (int tries = 0; n > 0 && tries < 64; tries++) {
		long w = raw(SYS_write, fd, (long)p, (long)n);
		if (w == -EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}
