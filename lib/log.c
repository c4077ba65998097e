/* connroute: leveled log; see log.h for where lines go and why. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "sys.h"

static int log_level = CR_LL_WARN;
static atomic_int log_file_bad;
static char log_file[1024];

static const char *const names[] = {"error", "warn", "info", "debug"};

int cr_log_parse_level(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (s && strcmp(s, names[i]) == 0)
			return i;
	return -1;
}

static int env_pinned;

void cr_log_setup(int level, const char *file)
{
	if (level >= CR_LL_ERROR && level <= CR_LL_DEBUG) {
		log_level = level;
		env_pinned = 1;
	}
	if (file) {
		size_t n = strnlen(file, sizeof(log_file) - 1);
		memcpy(log_file, file, n);
		log_file[n] = '\0';
	}
}

void cr_log_config_level(int level)
{
	if (!env_pinned && level >= CR_LL_ERROR && level <= CR_LL_DEBUG)
		log_level = level;
}

int cr_log_level(void)
{
	return log_level;
}

/* Not when fd 2 is a socket: a daemon's stderr may be a client connection. */
static void write_stderr(const char *buf, size_t n)
{
	struct stat st;
	if (fstat(2, &st) == 0 && !S_ISSOCK(st.st_mode))
		cr_sys_write_all(2, buf, n);
}

void cr_logmsg(int level, const char *fmt, ...)
{
	char buf[1024];
	int n, saved = errno;
	va_list ap;

	if (level > log_level)
		return;
	n = snprintf(buf, sizeof(buf), "connroute[%d]: %s: ", (int)getpid(), names[level]);
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
	va_end(ap);
	if (n >= (int)sizeof(buf) - 1)
		n = (int)sizeof(buf) - 2;
	/* One event, one line: values echoed from the environment, a config
	 * or a key (CONNROUTE_KEY="x\nconnroute: error: ...") must not forge
	 * lines or send terminal escapes. Control bytes become '?'. */
	for (int i = 0; i < n; i++)
		if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
			buf[i] = '?';
	buf[n++] = '\n';

	if (log_file[0] && !atomic_load_explicit(&log_file_bad, memory_order_relaxed)) {
		/* Never block the host (a FIFO without a reader would hang it,
		 * in the constructor even): open non-blocking, then write only
		 * to a regular file or a character device (a terminal,
		 * /dev/null). Anything else is refused once, and lines go to
		 * stderr from then on. */
		int fd = (int)syscall(
			SYS_openat, AT_FDCWD, log_file,
			O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, 0600);
		struct stat st;
		if (fd >= 0 && fstat(fd, &st) == 0 &&
		    (S_ISREG(st.st_mode) || S_ISCHR(st.st_mode))) {
			cr_sys_write_all(fd, buf, (size_t)n);
			cr_sys_close(fd);
			errno = saved;
			return;
		}
		int err = fd >= 0 ? 0 : errno;
		if (fd >= 0)
			cr_sys_close(fd);
		if (!atomic_exchange(&log_file_bad, 1)) {
			char why[512];
			int k = snprintf(why, sizeof(why),
					 "connroute[%d]: warn: CONNROUTE_LOG_FILE=%.200s: %s; "
					 "logging to stderr "
					 "instead (name a regular file)\n",
					 (int)getpid(), log_file,
					 err ? strerror(err) : "not a regular file");
			write_stderr(why, k < (int)sizeof(why) ? (size_t)k : sizeof(why) - 1);
		}
	}
	write_stderr(buf, (size_t)n);
	errno = saved;
}
