/* connroute: what the app did to a socket before connecting it, so a warm
 * socket substituted for it can carry the same state.
 *
 * Recorded only while warm pools are configured (cr_warm_active): options
 * set with setsockopt() (up to 8, values up to 16 bytes) and whether the fd
 * was registered with epoll. Records are keyed by fd number and checked
 * against the socket inode, so a stale record (a close we did not see) is
 * never replayed onto another socket. */
#ifndef CR_SOCKREC_H
#define CR_SOCKREC_H

#include <stdint.h>
#include <sys/socket.h>

void cr_sockrec_setsockopt(int fd, int level, int name, const void *val, socklen_t len);
void cr_sockrec_epoll_add(int fd);
void cr_sockrec_forget(int fd);

/* FD's open file is now also reachable through another fd (dup). */
void cr_sockrec_shared(int fd);

/* 1 if a warm socket may stand in for FD (inode INO): not registered with
 * epoll, not duplicated, and every option the app set is one that means the
 * same after the handshake (replayable). */
int cr_sockrec_substitutable(int fd, uint64_t ino);

/* Replays FD's recorded options onto TO. Returns 0, or -1 if an option the
 * app set cannot be carried (then the caller does not substitute). */
int cr_sockrec_replay(int fd, uint64_t ino, int to);

#endif
