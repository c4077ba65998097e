/* connroute: raw syscalls, for the engine's internal use (never re-enter a
 * hooked name). They return -errno and never touch errno. cr_sys_ret turns
 * one into libc's convention: that is how the fallbacks behind cr_real
 * (lib/real.c) are written. */
#ifndef CR_SYS_H
#define CR_SYS_H

#include <errno.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/socket.h>

long cr_sys_close(int fd);
long cr_sys_connect(int fd, const struct sockaddr *sa, socklen_t len);
long cr_sys_close_range(unsigned first, unsigned last, unsigned flags);
long cr_sys_dup(int fd);
long cr_sys_dup2(int oldfd, int newfd);
long cr_sys_dup3(int oldfd, int newfd, int flags);
long cr_sys_setsockopt(int fd, int level, int name, const void *val, socklen_t len);
long cr_sys_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);
void cr_sys_write_all(int fd, const void *buf, size_t n);

/* -errno to libc's convention: -1 with errno set to the kernel's error. */
static inline long cr_sys_ret(long r)
{
	if (r < 0) {
		errno = (int)-r;
		return -1;
	}
	return r;
}

#endif
