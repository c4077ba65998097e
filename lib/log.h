/* connroute: one-line diagnostics from inside a host process.
 *
 * Lines go to CONNROUTE_LOG_FILE (opened O_APPEND|O_CLOEXEC for each line, so
 * no fd of ours is ever open for the host to trip over or close), else to
 * fd 2 unless fd 2 is a socket (a daemon's stderr may be a client connection).
 * Formatting uses a stack buffer; no malloc. */
#ifndef CR_LOG_H
#define CR_LOG_H

#include "config.h"

void cr_log_setup(int level, const char *file);
int cr_log_level(void);
void cr_logmsg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parses error|warn|info|debug; -1 if unknown. */
int cr_log_parse_level(const char *s);

#endif
