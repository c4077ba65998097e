/* connroute: connroute's own fds; see ownfd.h. */
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "base.h"
#include "ownfd.h"
#include "sys.h"

#define FLOOR_MAX 4096
#define LIMIT_MIN 256

int cr_ownfd_floor(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < LIMIT_MIN)
		return 0;
	rlim_t f = rl.rlim_cur / 2;
	return f > FLOOR_MAX ? FLOOR_MAX : (int)f;
}

int cr_ownfd_raise(int fd, int keep)
{
	int floor, nfd = -1;
	if (fd < 0)
		return -1;
	SAVE_ERRNO({
		floor = cr_ownfd_floor();
		if (floor > 0 && fd < floor / 4)
			nfd = fcntl(fd, F_DUPFD_CLOEXEC, floor);
		if (nfd < 0 && keep)
			nfd = fd;
		else
			(void)cr_sys_close(fd);
	});
	return nfd;
}

uint64_t cr_fd_inode(int fd)
{
	struct stat st;
	int r;
	SAVE_ERRNO(r = fstat(fd, &st));
	return r == 0 ? (uint64_t)st.st_ino : 0;
}

int cr_ownfd_close(int fd, uint64_t ino)
{
	if (fd < 0 || !ino || cr_fd_inode(fd) != ino)
		return 0;
	(void)cr_sys_close(fd);
	return 1;
}
