/* connroute: the access log's writer (docs/access-log.md, docs/INTERNALS.md
 * "Access log"): takes the records out of the ring (lib/alog.h), formats one
 * JSON object per line and writes it to the lane's output: a file, stderr,
 * or a unix datagram or stream socket a collector listens on.
 *
 * It runs on its own thread ("connroute-alog", started by the background
 * thread once some lane logs), woken a few times a second and when the ring
 * is half full, and once more at exit (a destructor writes what is left).
 * Its files and sockets are connroute's own fds (lib/ownfd.h): above the
 * floor, close-on-exec, known by inode and never used once the host closed
 * their number. Files are created with [global] access_log_mode (0600) in a
 * directory that passes the config's trust rules (lib/trust.h), never
 * through a symbolic link in a world-writable directory, and reopened when
 * the path names another file (logrotate's rename and create). */
#ifndef CR_ALOG_WRITER_H
#define CR_ALOG_WRITER_H

#include <stddef.h>

#include "alog.h"

/* Starts the writer thread when some lane of the published config logs.
 * Called by the background thread each turn: cheap. */
void cr_alog_writer_kick(void);

/* Writes every record taken so far and flushes the outputs (the exit path,
 * tests). Waits at most about 2 s for a turn of the thread in progress. */
void cr_alog_writer_flush(void);

/* Fork child: drops the parent's outputs (closes our copies), resets the
 * ring; the child's own thread starts at its next kick. Async-signal-safe. */
void cr_alog_writer_atfork_child(void);

/* One JSON line (with '\n') for R into BUF; LANE is the lane's name, PID the
 * process's. Returns its length, 0 if it does not fit CAP. */
size_t cr_alog_format(const struct cr_alog_rec *r, const char *lane, long pid, char *buf,
		      size_t cap);

#endif
