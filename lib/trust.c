/* connroute: config file trust checks; see trust.h for the rules and why.
 *
 * Runs inside arbitrary host processes (the shim's constructor, the reload thread): no
 * allocation, no stdio, no NSS lookups, no hooked names (close goes through cr_sys_close),
 * errno restored. Buffers are on the stack (four PATH_MAX arrays). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sys.h"
#include "trust.h"

#define TRUST_MAX_LINKS  40
#define TRUST_MAX_STEPS  4096 /* components processed, links included */
#define TRUST_PATH_SHOWN 200

struct ctx {
	const char *path; /* as given */
	char *why;
	size_t n;
	int root; /* running as root: ownership and mode rules apply */
	uid_t euid;
	int origin;          /* enum cr_trust_origin: where the path came from (the fixes) */
	int want_dir;        /* the path names a directory (cr_dir_open_trusted) */
	const char *setting; /* what names the path, for messages */
};

/* The fix to suggest, by where the path came from: a path from the command line is not
 * fixed by changing CONNROUTE_CONFIG. */
enum { FIX_CHECK, FIX_REGULAR, FIX_ITSELF, FIX_NONE_GIVEN };
static const char *const fixes[3][4] = {
	[CR_TRUST_ENV] = {"check CONNROUTE_CONFIG", "point CONNROUTE_CONFIG at a regular file",
			  "point CONNROUTE_CONFIG at the file itself",
			  "set CONNROUTE_CONFIG to a file"},
	[CR_TRUST_ARG] = {"check the path given", "give a regular file",
			  "give the path of the file itself", "give a config file"},
	[CR_TRUST_SYSCONF] = {"check the file, or set CONNROUTE_CONFIG",
			      "make it a regular file, or remove it",
			      "put the file itself there, not a link",
			      "set CONNROUTE_CONFIG to a file"},
};

/* A path named by another setting (access_log): the fix names that setting. */
static const char *const setting_fixes[4] = {"check %s", "point %s at a regular file",
					     "point %s at the file itself", "set %s"};

static const char *fix(const struct ctx *c, int which)
{
	static __thread char buf[160];
	if (c->setting) {
		snprintf(buf, sizeof(buf), setting_fixes[which], c->setting);
		return buf;
	}
	return fixes[c->origin >= 0 && c->origin < 3 ? c->origin : 0][which];
}

/* Copies S into OUT (at most TRUST_PATH_SHOWN bytes, "..." when cut), control bytes as '?'. */
static void shown(char out[TRUST_PATH_SHOWN + 4], const char *s)
{
	size_t i = 0;
	for (; s[i] && i < TRUST_PATH_SHOWN; i++) {
		unsigned char c = (unsigned char)s[i];
		out[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	if (s[i]) {
		memcpy(out + i, "...", 3);
		i += 3;
	}
	out[i] = '\0';
}

static int refuse(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int refuse(struct ctx *c, const char *fmt, ...)
{
	char p[TRUST_PATH_SHOWN + 4];
	if (!c->why || c->n == 0)
		return -1;
	shown(p, c->path ? c->path : "(null)");
	int k = snprintf(c->why, c->n, "%s: ", p);
	if (k >= 0 && (size_t)k < c->n) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(c->why + k, c->n - (size_t)k, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* A directory on the resolved path, as root: nobody but root (or us) may change what it
 * holds. */
static int check_dir(struct ctx *c, const char *dir, const struct stat *st)
{
	char d[TRUST_PATH_SHOWN + 4];
	if (!c->root)
		return 0;
	shown(d, dir);
	if (st->st_uid != 0 && st->st_uid != c->euid)
		return refuse(c,
			      "refused (running as root): the directory %s is owned by uid %u, who "
			      "could replace the file; use a root-owned directory (chown root %s)",
			      d, (unsigned)st->st_uid, d);
	if ((st->st_mode & S_ISVTX) == 0) {
		if (st->st_mode & S_IWOTH)
			return refuse(
				c,
				"refused (running as root): the directory %s is writable by "
				"every user (mode %04o), who could replace the file; chmod o-w %s",
				d, (unsigned)(st->st_mode & 07777), d);
		if ((st->st_mode & S_IWGRP) && st->st_gid != 0)
			return refuse(c,
				      "refused (running as root): the directory %s is writable by "
				      "group %u (mode %04o), whose members could replace the file; "
				      "chmod g-w %s",
				      d, (unsigned)st->st_gid, (unsigned)(st->st_mode & 07777), d);
	}
	return 0;
}

static int check_file(struct ctx *c, const char *file, const struct stat *st)
{
	char f[TRUST_PATH_SHOWN + 4];
	shown(f, file);
	if (!S_ISREG(st->st_mode)) {
		const char *what = S_ISDIR(st->st_mode)    ? "a directory"
				   : S_ISFIFO(st->st_mode) ? "a FIFO (reading it would block)"
				   : S_ISSOCK(st->st_mode) ? "a socket"
				   : S_ISCHR(st->st_mode)  ? "a character device"
				   : S_ISBLK(st->st_mode)  ? "a block device"
							   : "not a regular file";
		return refuse(c, "refused: %s is %s; %s", f, what, fix(c, FIX_REGULAR));
	}
	if (!c->root)
		return 0;
	if (st->st_uid != 0 && st->st_uid != c->euid)
		return refuse(c,
			      "refused (running as root): the file is owned by uid %u, not root; "
			      "chown root %s (and keep it writable by root only)",
			      (unsigned)st->st_uid, f);
	if (st->st_mode & S_IWOTH)
		return refuse(c,
			      "refused (running as root): the file is writable by every user (mode "
			      "%04o); chmod o-w %s",
			      (unsigned)(st->st_mode & 07777), f);
	if ((st->st_mode & S_IWGRP) && st->st_gid != 0)
		return refuse(c,
			      "refused (running as root): the file is writable by group %u (mode "
			      "%04o); chmod g-w %s or chgrp root %s",
			      (unsigned)st->st_gid, (unsigned)(st->st_mode & 07777), f, f);
	return 0;
}

/* res ("/..." without links) += "/" + comp. */
static int join(char *res, const char *comp, size_t cl)
{
	size_t rl = strlen(res);
	int slash = !(rl == 1 && res[0] == '/');
	if (rl + (size_t)slash + cl + 1 > PATH_MAX)
		return -1;
	if (slash)
		res[rl++] = '/';
	memcpy(res + rl, comp, cl);
	res[rl + cl] = '\0';
	return 0;
}

static void parent(char *res)
{
	char *s = strrchr(res, '/');
	if (!s || s == res)
		res[1] = '\0'; /* "/" */
	else
		*s = '\0';
}

/* The directory RES (lstat'ed as ST): checked like every directory on the path, opened
 * without following a link, compared. */
static int open_dir(struct ctx *c, const char *res, const struct stat *st)
{
	char r[TRUST_PATH_SHOWN + 4];
	shown(r, res);
	if (!S_ISDIR(st->st_mode))
		return refuse(c, "refused: %s is not a directory", r);
	if (check_dir(c, res, st) != 0)
		return -1;
	int fd = open(res, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return refuse(c, "cannot open %s: %s; %s", r, strerror(errno), fix(c, FIX_CHECK));
	struct stat fst;
	if (fstat(fd, &fst) != 0 || fst.st_dev != st->st_dev || fst.st_ino != st->st_ino) {
		cr_sys_close(fd);
		return refuse(
			c, "refused: the directory changed while it was being checked; try again");
	}
	return fd;
}

static int open_checked(struct ctx *c)
{
	char res[PATH_MAX], rest[PATH_MAX], tmp[PATH_MAX];
	struct stat st;
	int links = 0;

	if (!c->path || !c->path[0])
		return refuse(c, "no config file given; %s", fix(c, FIX_NONE_GIVEN));
	size_t pl = strlen(c->path);
	if (pl >= PATH_MAX)
		return refuse(c, "refused: the path is longer than %d bytes", PATH_MAX - 1);
	if (c->path[0] == '/') {
		memcpy(rest, c->path, pl + 1);
	} else {
		/* getcwd gives the current directory without links: walk it like the rest */
		if (!getcwd(tmp, sizeof(tmp)))
			return refuse(
				c,
				"refused: cannot resolve a relative path (getcwd: %s); use an "
				"absolute path",
				strerror(errno));
		size_t tl = strlen(tmp);
		if (tl + 1 + pl >= PATH_MAX)
			return refuse(c, "refused: the path is longer than %d bytes", PATH_MAX - 1);
		memcpy(rest, tmp, tl);
		rest[tl] = '/';
		memcpy(rest + tl + 1, c->path, pl + 1);
	}
	res[0] = '/';
	res[1] = '\0';
	if (stat("/", &st) != 0)
		return refuse(c, "refused: cannot stat /: %s", strerror(errno));
	if (check_dir(c, "/", &st) != 0)
		return -1;

	const char *p = rest;
	for (int steps = 0;; steps++) {
		if (steps == TRUST_MAX_STEPS)
			return refuse(c, "refused: more than %d path components", TRUST_MAX_STEPS);
		while (*p == '/')
			p++;
		if (!*p)
			break;
		const char *e = strchr(p, '/');
		size_t cl = e ? (size_t)(e - p) : strlen(p);
		const char *next = p + cl;
		while (*next == '/')
			next++;
		int last = *next == '\0';
		if (cl == 1 && p[0] == '.') {
			p = next;
			continue;
		}
		if (cl == 2 && p[0] == '.' && p[1] == '.') {
			parent(res);
			p = next;
			continue;
		}
		char dir[PATH_MAX];
		memcpy(dir, res, strlen(res) + 1);
		if (join(res, p, cl) != 0)
			return refuse(c, "refused: the resolved path is longer than %d bytes",
				      PATH_MAX - 1);
		if (lstat(res, &st) != 0) {
			char r[TRUST_PATH_SHOWN + 4];
			shown(r, res);
			return refuse(c, "cannot read %s: %s; %s", r, strerror(errno),
				      fix(c, FIX_CHECK));
		}
		if (S_ISLNK(st.st_mode)) {
			struct stat dst;
			char r[TRUST_PATH_SHOWN + 4], d[TRUST_PATH_SHOWN + 4];
			shown(r, res);
			shown(d, dir);
			if (++links > TRUST_MAX_LINKS)
				return refuse(c, "refused: more than %d symbolic links",
					      TRUST_MAX_LINKS);
			if (stat(dir, &dst) != 0)
				return refuse(c, "refused: cannot stat %s: %s", d, strerror(errno));
			if (dst.st_mode & S_IWOTH)
				return refuse(
					c,
					"refused: %s is a symbolic link in the world-writable "
					"directory %s, where anyone could have planted it; %s",
					r, d, fix(c, FIX_ITSELF));
			ssize_t tl = readlink(res, tmp, sizeof(tmp) - 1);
			if (tl <= 0)
				return refuse(c, "refused: cannot read the link %s: %s", r,
					      tl < 0 ? strerror(errno) : "empty");
			tmp[tl] = '\0';
			size_t nl = strlen(next);
			if ((size_t)tl + 1 + nl >= PATH_MAX)
				return refuse(c,
					      "refused: the resolved path is longer than %d bytes",
					      PATH_MAX - 1);
			/* rest := target "/" remaining (NEXT points into REST: memmove); a relative
			 * target resolves from the link's directory */
			memmove(rest + tl + 1, next, nl + 1);
			memcpy(rest, tmp, (size_t)tl);
			rest[tl] = '/';
			p = rest;
			if (tmp[0] == '/') {
				res[0] = '/';
				res[1] = '\0';
			} else {
				memcpy(res, dir, strlen(dir) + 1);
			}
			continue;
		}
		if (!last) {
			if (!S_ISDIR(st.st_mode)) {
				char r[TRUST_PATH_SHOWN + 4];
				shown(r, res);
				return refuse(c, "refused: %s is not a directory", r);
			}
			if (check_dir(c, res, &st) != 0)
				return -1;
			p = next;
			continue;
		}
		if (c->want_dir)
			return open_dir(c, res, &st);
		/* the file itself: checked by lstat, then opened without following anything and
		 * compared, so what is returned is what was checked */
		if (check_file(c, res, &st) != 0)
			return -1;
		int fd = open(res, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
		if (fd < 0) {
			char r[TRUST_PATH_SHOWN + 4];
			shown(r, res);
			return refuse(c, "cannot open %s: %s; %s", r, strerror(errno),
				      fix(c, FIX_CHECK));
		}
		struct stat fst;
		if (fstat(fd, &fst) != 0 || fst.st_dev != st.st_dev || fst.st_ino != st.st_ino) {
			cr_sys_close(fd);
			return refuse(
				c,
				"refused: the file changed while it was being checked; try again");
		}
		if (check_file(c, res, &fst) != 0) {
			cr_sys_close(fd);
			return -1;
		}
		int fl = fcntl(fd, F_GETFL);
		if (fl >= 0)
			fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
		return fd;
	}
	/* the path named "/" (or a directory through "..") */
	if (stat(res, &st) != 0)
		return refuse(c, "cannot read the path: %s", strerror(errno));
	if (c->want_dir)
		return open_dir(c, res, &st);
	return check_file(c, res, &st) == 0 ? refuse(c, "refused: not a file") : -1;
}

/* Both entry points: errno kept, WHY emptied, the root rules for euid 0. */
static int open_checked_keep_errno(struct ctx *c)
{
	int saved = errno;
	c->root = c->euid == 0;
	if (c->why && c->n)
		c->why[0] = '\0';
	int fd = open_checked(c);
	errno = saved;
	return fd;
}

int cr_config_open_trusted_as(const char *path, uid_t euid, int origin, char *why, size_t n)
{
	struct ctx c = {.path = path, .why = why, .n = n, .euid = euid, .origin = origin};
	return open_checked_keep_errno(&c);
}

int cr_dir_open_trusted(const char *path, const char *setting, char *why, size_t n)
{
	struct ctx c = {.path = path,
			.why = why,
			.n = n,
			.euid = geteuid(),
			.want_dir = 1,
			.setting = setting};
	return open_checked_keep_errno(&c);
}

int cr_config_open_trusted(const char *path, char *why, size_t n)
{
	return cr_config_open_trusted_as(path, geteuid(), CR_TRUST_ENV, why, n);
}

int cr_config_trusted_as(const char *path, uid_t euid, int origin, char *why, size_t n)
{
	int fd = cr_config_open_trusted_as(path, euid, origin, why, n);
	if (fd < 0)
		return -1;
	cr_sys_close(fd);
	return 0;
}

int cr_config_trusted(const char *path, char *why, size_t n)
{
	int fd = cr_config_open_trusted(path, why, n);
	if (fd < 0)
		return -1;
	cr_sys_close(fd);
	return 0;
}
