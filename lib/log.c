/* connroute: leveled log; see log.h for where lines go and why. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "sys.h"

static int log_level = CR_LL_WARN;
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
	buf[n++] = '\n';

	if (log_file[0]) {
		int fd = (int)syscall(SYS_openat, AT_FDCWD, log_file,
				      O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
		if (fd >= 0) {
			cr_sys_write_all(fd, buf, (size_t)n);
			cr_sys_close(fd);
		}
	} else {
		struct stat st;
		if (fstat(2, &st) == 0 && !S_ISSOCK(st.st_mode))
			cr_sys_write_all(2, buf, (size_t)n);
	}
	errno = saved;
}
