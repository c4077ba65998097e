/* connroute: raw-syscall wrappers for use before the real symbols are
 * resolved and inside hooks (never re-enter a hooked name). They return
 * -errno and never touch errno. */
#ifndef CR_SYS_H
#define CR_SYS_H

#include <stddef.h>
#include <sys/socket.h>

long cr_sys_close(int fd);
long cr_sys_connect(int fd, const struct sockaddr *sa, socklen_t len);
long cr_sys_close_range(unsigned first, unsigned last, unsigned flags);
long cr_sys_dup3(int oldfd, int newfd, int flags);
void cr_sys_write_all(int fd, const void *buf, size_t n);

#endif
