/* connroute: the fds connroute itself keeps open in the host (warm sockets,
 * the metrics listener and its client).
 *
 * The host counts on fd numbers: the lowest free number is what open(),
 * socket() and accept() return, so `close(1); open(log)` gets 1 back. A
 * long-lived fd of ours at a low number would take such a number. Ours live
 * at or above a high floor instead, close-on-exec, and are given up rather
 * than compete with the host when it is near its fd limit. */
#ifndef CR_OWNFD_H
#define CR_OWNFD_H

#include <stdint.h>

/* The floor: half the RLIMIT_NOFILE soft limit, at most 4096; 0 when the
 * limit is below 256 (too small to share: hold no long-lived fds). */
int cr_ownfd_floor(void);

/* Moves FD (just made by connroute, at the lowest free number) to a number
 * >= the floor, close-on-exec, and closes the low number. Returns the new
 * fd. When there is no floor, when FD's number shows that the host already
 * uses more than a quarter of the numbers below the floor (a busy host: do
 * not compete), or when no number above the floor is free: with KEEP, FD
 * itself (something the operator asked for, like the metrics listener);
 * without, -1 and FD is closed (warm sockets: an optimisation, given up).
 * -1 also when FD < 0. errno is preserved. */
int cr_ownfd_raise(int fd, int keep);

/* Closes FD only if it still is the file with inode INO (the host may have
 * closed our number and reused it: then it is the host's, never ours to
 * close). Through the raw syscall. 1 if closed. */
int cr_ownfd_close(int fd, uint64_t ino);

/* Inode of FD's file, 0 if FD is not open. errno is preserved. */
uint64_t cr_fd_inode(int fd);

#endif
