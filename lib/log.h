/* connroute: one-line diagnostics from inside a host process.
 *
 * Lines go to CONNROUTE_LOG_FILE (opened O_APPEND|O_CLOEXEC for each line, so
 * no fd of ours is ever open for the host to trip over or close), else to
 * fd 2 unless fd 2 is a socket (a daemon's stderr may be a client connection).
 * Formatting uses a stack buffer; no malloc. */
#ifndef CR_LOG_H
#define CR_LOG_H

enum cr_loglevel { CR_LL_ERROR = 0, CR_LL_WARN, CR_LL_INFO, CR_LL_DEBUG };

/* From the environment (CONNROUTE_LOG, CONNROUTE_LOG_FILE) at init: a level
 * given here (>= 0) wins over the config's `log` for the life of the
 * process, at start and at every reload alike. */
void cr_log_setup(int level, const char *file);
/* The config's `[global] log` (at init and at each reload): applied unless
 * the environment set the level. */
void cr_log_config_level(int level);
int cr_log_level(void);
void cr_logmsg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parses error|warn|info|debug; -1 if unknown. */
int cr_log_parse_level(const char *s);

#endif
