/* lib/real.c: the fallbacks every cr_real pointer starts at behave as libc
 * (docs/INTERNALS.md, "Layers"), and resolution finds libc. */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "real.h"

/* The same call through the fallback and through libc: same result, same
 * errno (and errno untouched on success). */
#define SAME(fb, libc)                                                                             \
	do {                                                                                       \
		errno = EXDEV;                                                                     \
		int r1_ = (fb), e1_ = errno;                                                       \
		errno = EXDEV;                                                                     \
		int r2_ = (libc), e2_ = errno;                                                     \
		cr_expect_eq(r1_, r2_, "%s: %d, libc %d", #fb, r1_, r2_);                          \
		cr_expect_eq(e1_, e2_, "%s: errno %s, libc %s", #fb, strerror(e1_), strerror(e2_)); \
	} while (0)

Test(real, starts_at_the_fallbacks)
{
#define CR_LIBC(name, ret, params) cr_expect(cr_real.name == cr_fallback_##name, "%s", #name);
#define CR_CURL(name, ret, params)
#include "hooks.def"
#undef CR_LIBC
#undef CR_CURL
}

Test(real, resolve_takes_what_dlsym_found)
{
	cr_real_resolve();
#define CR_LIBC(name, ret, params)                                                                 \
	{                                                                                          \
		void *p = dlsym(RTLD_DEFAULT, #name);                                              \
		if (p)                                                                             \
			cr_expect_eq(*(void **)&cr_real.name, p, "%s", #name);                     \
		else                                                                               \
			cr_expect(cr_real.name == cr_fallback_##name, "%s kept", #name);           \
	}
#define CR_CURL(name, ret, params)
#include "hooks.def"
#undef CR_LIBC
#undef CR_CURL
	cr_expect_eq(*(void **)&cr_real.close, dlsym(RTLD_DEFAULT, "close"));
}

Test(real, fallbacks_behave_as_libc)
{
	int one = 1, s = socket(AF_INET, SOCK_STREAM, 0), ep = epoll_create1(EPOLL_CLOEXEC), p[2];
	cr_assert(s >= 0 && ep >= 0 && pipe(p) == 0);
	struct epoll_event ev = {.events = EPOLLIN};
	struct sockaddr_un un = {.sun_family = AF_UNIX, .sun_path = "/nonexistent/connroute"};
	struct sockaddr_in in = {.sin_family = AF_INET};

	SAME(cr_fallback_setsockopt(-1, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)),
	     setsockopt(-1, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)));
	SAME(cr_fallback_setsockopt(p[0], SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)),
	     setsockopt(p[0], SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)));
	SAME(cr_fallback_setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)),
	     setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)));
	SAME(cr_fallback_epoll_ctl(-1, EPOLL_CTL_ADD, s, &ev), epoll_ctl(-1, EPOLL_CTL_ADD, s, &ev));
	SAME(cr_fallback_epoll_ctl(ep, EPOLL_CTL_ADD, ep, &ev), epoll_ctl(ep, EPOLL_CTL_ADD, ep, &ev));
	SAME(cr_fallback_epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev), epoll_ctl(ep, EPOLL_CTL_DEL, s, NULL));

	SAME(cr_fallback_dup(-1), dup(-1));
	SAME(cr_fallback_dup2(s, s), dup2(s, s));
	cr_expect_eq(cr_fallback_dup2(s, s), s, "dup2(fd, fd) is fd");
	SAME(cr_fallback_dup2(900, 900), dup2(900, 900));
	SAME(cr_fallback_dup2(-1, 900), dup2(-1, 900));
	SAME(cr_fallback_dup3(s, s, 0), dup3(s, s, 0));
	SAME(cr_fallback_dup3(s, 900, O_CLOEXEC), dup3(s, 900, O_CLOEXEC));
	cr_expect_eq(fcntl(900, F_GETFD), FD_CLOEXEC);
	/* Calls that change the table: the fallback's effect, seen through libc. */
	errno = EXDEV;
	cr_expect_eq(cr_fallback_dup2(p[0], 900), 900);
	cr_expect_eq(cr_fallback___close(900), 0);
	cr_expect_eq(errno, EXDEV, "errno untouched on success");
	cr_expect_eq(fcntl(900, F_GETFD), -1, "closed");
	errno = EXDEV;
	int d = cr_fallback_dup(s);
	cr_expect(d > s);
	cr_expect_eq(cr_fallback_close(d), 0);
	cr_expect_eq(errno, EXDEV);
	SAME(cr_fallback_close(d), close(d));
	SAME(cr_fallback_close(-1), close(-1));

	SAME(cr_fallback_connect(-1, (struct sockaddr *)&in, sizeof(in)),
	     connect(-1, (struct sockaddr *)&in, sizeof(in)));
	SAME(cr_fallback___connect(s, (struct sockaddr *)&un, sizeof(un)),
	     connect(s, (struct sockaddr *)&un, sizeof(un)));

	SAME(cr_fallback_close_range(5, 3, 0), close_range(5, 3, 0));
	SAME(cr_fallback_close_range(950, 960, 1u << 30), close_range(950, 960, 1u << 30));
	cr_assert_eq(dup2(s, 950), 950);
	cr_expect_eq(cr_fallback_close_range(950, 960, 0), 0);
	cr_expect_eq(fcntl(950, F_GETFD), -1, "closed");

	errno = EXDEV;
	cr_assert_eq(dup2(s, 970), 970);
	cr_fallback_closefrom(970);
	cr_expect_eq(errno, EXDEV, "closefrom leaves errno alone");
	cr_expect_eq(fcntl(970, F_GETFD), -1);
	cr_expect_eq(fcntl(s, F_GETFD), 0, "below lowfd: open");

	close(s);
	close(ep);
	close(p[0]);
	close(p[1]);
}
