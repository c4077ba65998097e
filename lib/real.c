/* connroute: the real functions behind the libc hooks (lib/real.h). The
 * fallbacks are the kernel's calls in libc's convention, the state every
 * pointer starts in (docs/INTERNALS.md, "State machine"). */
#include <dlfcn.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "real.h"
#include "sys.h"

int cr_fallback_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	return (int)cr_sys_ret(cr_sys_connect(fd, sa, len));
}

int cr_fallback___connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	return cr_fallback_connect(fd, sa, len);
}

int cr_fallback_close(int fd)
{
	return (int)cr_sys_ret(cr_sys_close(fd));
}

int cr_fallback___close(int fd)
{
	return cr_fallback_close(fd);
}

int cr_fallback_close_range(unsigned first, unsigned last, int flags)
{
	return (int)cr_sys_ret(cr_sys_close_range(first, last, (unsigned)flags));
}

/* closefrom reports nothing and, done, leaves errno as it was. */
void cr_fallback_closefrom(int lowfd)
{
	(void)cr_sys_close_range(lowfd < 0 ? 0 : (unsigned)lowfd, ~0u, 0);
}

int cr_fallback_dup(int fd)
{
	return (int)cr_sys_ret(cr_sys_dup(fd));
}

int cr_fallback_dup2(int oldfd, int newfd)
{
	return (int)cr_sys_ret(cr_sys_dup2(oldfd, newfd));
}

int cr_fallback_dup3(int oldfd, int newfd, int flags)
{
	return (int)cr_sys_ret(cr_sys_dup3(oldfd, newfd, flags));
}

int cr_fallback_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	return (int)cr_sys_ret(cr_sys_setsockopt(fd, level, name, val, len));
}

int cr_fallback_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	return (int)cr_sys_ret(cr_sys_epoll_ctl(epfd, op, fd, ev));
}

/* syscall() has libc's convention already: -1 and errno on failure, errno
 * untouched on success. */
ssize_t cr_fallback_sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *sa,
			   socklen_t len)
{
	return syscall(SYS_sendto, fd, buf, n, flags, sa, len);
}

ssize_t cr_fallback_sendmsg(int fd, const struct msghdr *msg, int flags)
{
	return syscall(SYS_sendmsg, fd, msg, flags);
}

/* No syscall loads a library: until cr_real_resolve ran (another library's
 * constructor), libc's own dlopen is looked up here. Both calls are tail
 * calls, so glibc sees the hook's caller as the caller (it searches that
 * object's RUNPATH and expands its $ORIGIN; docs/INTERNALS.md, "RTLD_DEEPBIND
 * hosts"). */
void *cr_fallback_dlopen(const char *file, int mode)
{
	void *(*fn)(const char *, int);
	*(void **)&fn = dlsym(RTLD_NEXT, "dlopen");
	if (!fn)
		return NULL;
	return fn(file, mode);
}

void *cr_fallback_dlmopen(Lmid_t lmid, const char *file, int mode)
{
	void *(*fn)(Lmid_t, const char *, int);
	*(void **)&fn = dlsym(RTLD_NEXT, "dlmopen");
	if (!fn)
		return NULL;
	return fn(lmid, file, mode);
}

#define CR_LIBC(name, ret, params) .name = cr_fallback_##name,
#define CR_CURL(name, ret, params)
struct cr_real cr_real = {
#include "hooks.def"
};
#undef CR_LIBC
#undef CR_CURL

void cr_real_resolve(void)
{
	void *p;
#define CR_LIBC(name, ret, params)         \
	if ((p = dlsym(RTLD_NEXT, #name))) \
		*(void **)&cr_real.name = p;
#define CR_CURL(name, ret, params)
#include "hooks.def"
#undef CR_LIBC
#undef CR_CURL
}
