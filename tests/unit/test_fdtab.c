#include <errno.h>
#include <criterion/criterion.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fdtab.h"

Test(fdtab, put_peek_take)
{
	struct cr_fdinfo in = {.slot = 7, .lane = 3, .flags = CR_FDF_ROUTED, .ino = 12345}, out;
	cr_expect_not(cr_fdtab_any());
	cr_expect_eq(cr_fdtab_put(10, &in), 0);
	cr_expect(cr_fdtab_any());
	cr_expect(cr_fdtab_peek(10, &out));
	cr_expect_eq(out.slot, 7);
	cr_expect_eq(out.lane, 3);
	cr_expect_eq(out.ino, 12345);
	cr_expect(cr_fdtab_take(10, &out));
	cr_expect_not(cr_fdtab_take(10, &out), "taken exactly once");
	cr_expect_not(cr_fdtab_any());
	cr_expect_not(cr_fdtab_peek(11, &out));
	cr_expect_eq(cr_fdtab_put(-1, &in), -EBADF);
	cr_expect_eq(cr_fdtab_put(1 << 21, &in), -EBADF, "beyond the table: not tracked");
}

static int calls;
static void count(int fd, const struct cr_fdinfo *i, void *ctx)
{
	(void)fd;
	(void)i;
	(void)ctx;
	calls++;
}

Test(fdtab, take_range_spans_pages)
{
	struct cr_fdinfo in = {.slot = 1, .ino = 1};
	cr_fdtab_put(5, &in);
	cr_fdtab_put(1500, &in);
	cr_fdtab_put(70000, &in);
	calls = 0;
	cr_fdtab_take_range(6, ~0u, count, NULL);
	cr_expect_eq(calls, 2);
	cr_expect_eq(atomic_load(&cr_fdtab_count), 1);
	calls = 0;
	cr_fdtab_take_range(0, 5, count, NULL);
	cr_expect_eq(calls, 1);
	cr_expect_not(cr_fdtab_any());
}

Test(fdtab, reaper_finds_closed_and_reused_fds)
{
	int sv[2], other[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct cr_fdinfo a = {.slot = 9, .ino = cr_fd_inode(sv[0])};
	struct cr_fdinfo b = {.slot = 9, .ino = cr_fd_inode(sv[1])};
	cr_fdtab_put(sv[0], &a);
	cr_fdtab_put(sv[1], &b);
	calls = 0;
	cr_fdtab_reap_slot(9, count, NULL);
	cr_expect_eq(calls, 0, "live fds with their inode are left alone");
	close(sv[1]); /* behind the table's back */
	cr_fdtab_reap_slot(9, count, NULL);
	cr_expect_eq(calls, 1);
	/* sv[0] closed and its number reused by another socket. */
	close(sv[0]);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, other), 0);
	cr_fdtab_reap_slot(9, count, NULL);
	cr_expect_eq(calls, 2, "a reused fd number does not fool the inode check");
	cr_expect_not(cr_fdtab_any());
}
