/* connroute: connect_timeout for blocking connects, enforced from outside.
 *
 * A routed blocking connect with a lane connect_timeout stays the kernel's
 * own blocking connect: the socket is never made non-blocking, the app's
 * SO_SNDTIMEO bounds it as usual (EINPROGRESS), and a signal interrupts it
 * or restarts it exactly as the signal's own SA_RESTART says. Only the lane's
 * deadline comes from here: one lazily started thread shuts the socket down
 * (SHUT_RDWR on a SYN_SENT socket dissolves the attempt: the connect returns
 * at once and the socket can be connected again, as after a kernel timeout)
 * when the deadline passes while it is still connecting and still the same
 * socket (inode). A deadline whose connect was left by siglongjmp still
 * fires, then frees itself: bounded, never touching a reused fd number. */
#ifndef CR_DEADLINE_H
#define CR_DEADLINE_H

#include <stdint.h>

/* Arms a deadline for the connect about to be made on FD (inode INO).
 * Returns a handle, or -1 when none can be had (no thread, table full):
 * the caller then bounds the connect itself. */
long cr_deadline_arm(int fd, uint64_t ino, uint64_t deadline_ns);

/* Disarms H; 1 if it fired (the connect was cut short: report ETIMEDOUT). */
int cr_deadline_disarm(long h);

/* fork child: no deadlines, no thread. */
void cr_deadline_atfork_child(void);

#endif
