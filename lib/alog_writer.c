/* connroute: the access log's writer; see alog_writer.h.
 *
 * One consumer at a time: the writer thread's turn and the exit flush take
 * `busy` (a flag, not a mutex: a fork child resets it without asking who
 * held it). Everything below is touched under it, except the fork child
 * handler, which runs alone.
 *
 * Outputs are shared by the lanes that name the same access_log. Lines are
 * written whole: a buffer of whole lines per output, one write() per flush
 * (O_APPEND: lines of processes sharing a file never interleave), one
 * datagram per line for a datagram socket. What cannot be written is
 * counted per lane in connroute_access_log_dropped_total, like what the
 * ring could not hold. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "alog_writer.h"
#include "base.h"
#include "cfgref.h"
#include "log.h"
#include "ownfd.h"
#include "sys.h"
#include "thread.h"
#include "trust.h"

#define WAKE_MS      250  /* idle wake-ups: a line is written within ~0.25 s */
#define CHECK_MS     1000 /* rotation and reconnect checks */
#define RECONNECT_MS 5000
#define REPORT_MS    10000       /* drop reports, at most this often */
#define BUF_CAP      (64 * 1024) /* pending bytes per output */
#define BUF_LINES    1024        /* pending lines per output */
#define LINE_MAX_    8192
#define BATCH        64
#define OUT_MAX      (CR_MAX_LANES + 1)
#define LINKS_MAX    8

enum { O_FILE, O_STDERR, O_UNIX };

struct output {
	int used;
	int orphan; /* inherited over fork: reset at the next turn */
	char spec[CR_ALOG_SPEC_MAX];
	char path[PATH_MAX]; /* %p expanded */
	int kind, sotype;
	int fd;       /* -1: not open */
	uint64_t ino; /* of FD: still ours? */
	dev_t fdev;   /* the file's identity at open: renamed away? */
	ino_t fino;
	int failed;       /* cannot be opened: its lanes log nothing (files) */
	int64_t retry_at; /* sockets: connect again at */
	int warned;
	int cont; /* stream: the first pending line was partly sent */
	char *buf;
	size_t len;
	int nlines;
	uint32_t line_end[BUF_LINES];
	uint16_t line_lane[BUF_LINES];
};

static struct output outs[OUT_MAX];
static int nouts;
static atomic_int any_output;             /* some output was made: the exit flush has work */
static int16_t lane_out[CR_MAX_LANE_IDS]; /* output of a lane id; -1 none, -2 not in the config */
static char lane_names[CR_MAX_LANE_IDS][CR_NAME_MAX];
static int fallback = -1;              /* [global] access_log: lanes gone since */
static const struct cr_config *mapped; /* counted reference: the config LANE_OUT is from */
static int remap;
static atomic_int busy;
static atomic_int exiting;
static int64_t next_check, next_report;
static uint64_t reported[CR_MAX_LANE_IDS];
static int mode_now = 0600;

static struct cr_alog_rec batch[BATCH];
static char line[LINE_MAX_];

/* ------------------------------------------------------------ JSON */

/* A line is built by hand (no printf: a line costs the writer about a
 * microsecond). Past CAP nothing is written but the length still grows, so
 * the caller sees it did not fit. */
struct jb {
	char *b;
	size_t cap, len;
};

static void jraw(struct jb *j, const char *s, size_t n)
{
	if (j->len + n < j->cap)
		memcpy(j->b + j->len, s, n);
	j->len += n;
}

static void jch(struct jb *j, char c)
{
	if (j->len + 1 < j->cap)
		j->b[j->len] = c;
	j->len++;
}

/* V in decimal, at least WIDTH digits. */
static void jdigits(struct jb *j, uint64_t v, int width)
{
	char t[24];
	int n = 0;
	do {
		t[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v || n < width);
	while (n)
		jch(j, t[--n]);
}

/* Length of the valid UTF-8 sequence at S (at most N bytes), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t k;
	uint32_t cp;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		k = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		k = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		k = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (k > n)
		return 0;
	for (size_t i = 1; i < k; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((k == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (k == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return k;
}

/* A JSON string: quotes and backslashes escaped, control characters as
 * \u00XX, bytes that are not UTF-8 as U+FFFD: nothing in a value (a path
 * the app chose) can end the line or the string. */
static void jstr_val(struct jb *j, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;
	size_t n = strlen(s), i = 0;
	jch(j, '"');
	while (i < n) {
		size_t run = i;
		while (run < n && u[run] >= 0x20 && u[run] < 0x7f && u[run] != '"' &&
		       u[run] != '\\')
			run++;
		jraw(j, s + i, run - i);
		i = run;
		if (i == n)
			break;
		unsigned char c = u[i];
		if (c == '"' || c == '\\') {
			jch(j, '\\');
			jch(j, (char)c);
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
			jraw(j, e, 6);
			i++;
		} else {
			size_t k = utf8_len(u + i, n - i);
			if (k) {
				jraw(j, s + i, k);
				i += k;
			} else {
				jraw(j, "\\ufffd", 6);
				i++;
			}
		}
	}
	jch(j, '"');
}

/* ,"K": (every field but the first, time) */
#define JKEY(j, k) jraw((j), ",\"" k "\":", sizeof(",\"" k "\":") - 1)

#define JSTR(j, k, v)           \
	do {                    \
		JKEY(j, k);     \
		jstr_val(j, v); \
	} while (0)

#define JNUM(j, k, v)                        \
	do {                                 \
		JKEY(j, k);                  \
		jnum_val(j, (long long)(v)); \
	} while (0)

static void jnum_val(struct jb *j, long long v)
{
	if (v < 0) {
		jch(j, '-');
		jdigits(j, (uint64_t) - (v + 1) + 1, 1);
	} else {
		jdigits(j, (uint64_t)v, 1);
	}
}

/* Seconds with microseconds, from ns; null when not measured. */
static void jdur_val(struct jb *j, int64_t ns)
{
	if (ns < 0) {
		jraw(j, "null", 4);
		return;
	}
	uint64_t us = ((uint64_t)ns + 500) / 1000;
	jdigits(j, us / 1000000, 1);
	jch(j, '.');
	jdigits(j, us % 1000000, 6);
}

#define JDUR(j, k, v)           \
	do {                    \
		JKEY(j, k);     \
		jdur_val(j, v); \
	} while (0)

static void jbool_val(struct jb *j, int v)
{
	if (v < 0)
		jraw(j, "null", 4);
	else if (v)
		jraw(j, "true", 4);
	else
		jraw(j, "false", 5);
}

#define JBOOL(j, k, v)           \
	do {                     \
		JKEY(j, k);      \
		jbool_val(j, v); \
	} while (0)

/* {"time":"...Z": RFC 3339, UTC, microseconds; the civil date computed here
 * (gmtime_r takes a libc lock that a fork could leave held). */
static void jtime(struct jb *j, int64_t ns)
{
	int64_t s = ns / 1000000000, us = (ns % 1000000000) / 1000;
	if (ns < 0)
		s = 0, us = 0;
	int64_t days = s / 86400, sod = s % 86400;
	/* Howard Hinnant's civil_from_days */
	int64_t z = days + 719468, era = z / 146097, doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t y = yoe + era * 400, doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153, d = doy - (153 * mp + 2) / 5 + 1;
	int64_t m = mp < 10 ? mp + 3 : mp - 9;
	y += m <= 2;
	jraw(j, "{\"time\":\"", 9);
	jdigits(j, (uint64_t)y, 4);
	jch(j, '-');
	jdigits(j, (uint64_t)m, 2);
	jch(j, '-');
	jdigits(j, (uint64_t)d, 2);
	jch(j, 'T');
	jdigits(j, (uint64_t)(sod / 3600), 2);
	jch(j, ':');
	jdigits(j, (uint64_t)(sod / 60 % 60), 2);
	jch(j, ':');
	jdigits(j, (uint64_t)(sod % 60), 2);
	jch(j, '.');
	jdigits(j, (uint64_t)us, 6);
	jraw(j, "Z\"", 2);
}

static const char *rstr(const struct cr_alog_rec *r, int i)
{
	uint16_t o = r->str_off[i];
	return o == CR_ALOG_NOSTR || o >= CR_ALOG_STR ? NULL : r->str + o;
}

static const char *const outcome_txt[CR_ALOG_NOUT] = {
	"ok", "http_error", "timeout", "overflow", "error", "ejected", "breaker_open"};

size_t cr_alog_format(const struct cr_alog_rec *r, const char *lane, long pid, char *buf,
		      size_t cap)
{
	struct jb j = {buf, cap, 0};
	int http = r->kind == CR_ALOG_HTTP;
	char peer[INET6_ADDRSTRLEN] = "";
	const char *s, *ptext = rstr(r, CR_AS_PEER);

	if (!ptext && r->peer_family && inet_ntop(r->peer_family, r->peer_addr, peer, sizeof(peer)))
		ptext = peer;
	jtime(&j, r->wall_ns);
	JSTR(&j, "connroute.kind", http ? "http" : "connect");
	JSTR(&j, "connroute.lane", lane);
	if ((s = rstr(r, CR_AS_KEY)))
		JSTR(&j, "connroute.key", s);
	if ((s = rstr(r, CR_AS_METHOD)))
		JSTR(&j, "http.request.method", s);
	if ((s = rstr(r, CR_AS_SCHEME)))
		JSTR(&j, "url.scheme", s);
	s = rstr(r, CR_AS_HOST);
	if (s || ptext)
		JSTR(&j, "server.address", s ? s : ptext);
	if (r->server_port)
		JNUM(&j, "server.port", r->server_port);
	if ((s = rstr(r, CR_AS_PATH)))
		JSTR(&j, "url.path", s[0] ? s : "/");
	if (r->status)
		JNUM(&j, "http.response.status_code", r->status);
	if ((s = rstr(r, CR_AS_ERROR)))
		JSTR(&j, "error.type", s);
	if (ptext)
		JSTR(&j, "network.peer.address", ptext);
	if (r->peer_port)
		JNUM(&j, "network.peer.port", r->peer_port);
	if (r->local_port)
		JNUM(&j, "network.local.port", r->local_port);
	if (http)
		JDUR(&j, "dns", r->dur_ns[CR_AD_DNS]);
	JDUR(&j, "connect", r->dur_ns[CR_AD_CONNECT]);
	if (http) {
		JDUR(&j, "tls", r->dur_ns[CR_AD_TLS]);
		JDUR(&j, "ttfb", r->dur_ns[CR_AD_TTFB]);
	}
	JDUR(&j, "total", r->dur_ns[CR_AD_TOTAL]);
	JDUR(&j, "queue", r->dur_ns[CR_AD_QUEUE]);
	if (http)
		JBOOL(&j, "reused", r->reused);
	JBOOL(&j, "warm", r->warm);
	if (http)
		JNUM(&j, "http.request.resend_count", r->resends);
	JSTR(&j, "outcome", r->outcome < CR_ALOG_NOUT ? outcome_txt[r->outcome] : "error");
	JNUM(&j, "pid", pid);
	JNUM(&j, "tid", r->tid);
	jraw(&j, "}\n", 2);
	if (j.len >= cap)
		return 0;
	buf[j.len] = '\0';
	return j.len;
}

/* ------------------------------------------------------------ outputs */

static void drop_lines(struct output *o, int from)
{
	for (int i = from; i < o->nlines; i++)
		cr_alog_drop(o->line_lane[i], 1);
}

/* Forgets the fd without closing it unless it still is ours (the host may
 * have closed our number and reused it). */
static void close_fd(struct output *o)
{
	if (o->fd >= 0 && o->kind != O_STDERR)
		cr_ownfd_close(o->fd, o->ino);
	o->fd = -1;
	o->ino = 0;
}

static void expand(const char *in, char *out, size_t n, long pid)
{
	size_t k = 0;
	for (const char *c = in; *c && k + 1 < n; c++) {
		if (c[0] == '%' && c[1] == 'p') {
			int w = snprintf(out + k, n - k, "%ld", pid);
			k += w > 0 ? (size_t)w : 0;
			c++;
		} else {
			out[k++] = *c;
		}
	}
	out[k < n ? k : n - 1] = '\0';
}

/* Opens PATH for appending: its directory passes the trust rules, a link as
 * the last component is followed only outside a world-writable directory,
 * the file is created with MODE and must be a regular file (or a character
 * device such as /dev/null); as root, one with other links or another owner
 * is refused. Returns the fd, or -1 with WHY. */
static int open_file(const char *path, int mode, char *why, size_t wn, struct stat *st)
{
	char cur[PATH_MAX], dir[PATH_MAX], tgt[PATH_MAX];
	snprintf(cur, sizeof(cur), "%s", path);
	for (int links = 0; links <= LINKS_MAX; links++) {
		char *slash = strrchr(cur, '/');
		if (!slash || !slash[1]) {
			snprintf(why, wn, "%.200s: not a file path", path);
			return -1;
		}
		size_t dl = (size_t)(slash - cur);
		memcpy(dir, cur, dl);
		dir[dl ? dl : 1] = '\0';
		if (!dl)
			dir[0] = '/';
		const char *base = slash + 1;
		int dfd = cr_dir_open_trusted(dir, "access_log", why, wn);
		if (dfd < 0)
			return -1;
		struct stat ds, ls;
		if (fstatat(dfd, base, &ls, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(ls.st_mode)) {
			ssize_t tl = -1;
			if (fstat(dfd, &ds) == 0 && !(ds.st_mode & S_IWOTH))
				tl = readlinkat(dfd, base, tgt, sizeof(tgt) - 1);
			cr_sys_close(dfd);
			if (tl <= 0) {
				snprintf(why, wn,
					 "%.200s: refused: a symbolic link in the world-writable "
					 "directory "
					 "%.200s, where anyone could have planted it; point "
					 "access_log at the file "
					 "itself",
					 cur, dir);
				return -1;
			}
			tgt[tl] = '\0';
			if (tgt[0] == '/')
				snprintf(cur, sizeof(cur), "%s", tgt);
			else if ((size_t)snprintf(cur, sizeof(cur), "%s/%s", dl ? dir : "", tgt) >=
				 sizeof(cur))
				break;
			continue;
		}
		int fd = openat(dfd, base,
				O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY |
					O_NONBLOCK,
				(mode_t)mode);
		int err = errno;
		cr_sys_close(dfd);
		if (fd < 0) {
			snprintf(why, wn, "%.200s: cannot open: %s", cur, strerror(err));
			return -1;
		}
		if (fstat(fd, st) != 0 || !(S_ISREG(st->st_mode) || S_ISCHR(st->st_mode))) {
			cr_sys_close(fd);
			snprintf(why, wn,
				 "%.200s: refused: not a regular file (a FIFO would block the log)",
				 cur);
			return -1;
		}
		if (geteuid() == 0 && S_ISREG(st->st_mode) &&
		    (st->st_nlink != 1 || st->st_uid != 0)) {
			cr_sys_close(fd);
			snprintf(why, wn,
				 "%.200s: refused (running as root): the file has %lu links or is "
				 "owned "
				 "by uid %u; let root create it",
				 cur, (unsigned long)st->st_nlink, (unsigned)st->st_uid);
			return -1;
		}
		int fl = fcntl(fd, F_GETFL);
		if (fl >= 0)
			(void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
		return fd;
	}
	snprintf(why, wn, "%.200s: refused: more than %d symbolic links", path, LINKS_MAX);
	return -1;
}

static int open_unix(struct output *o, char *why, size_t wn)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	const char *p = o->path;
	size_t n = strlen(p);
	if (n >= sizeof(sa.sun_path)) {
		snprintf(why, wn, "unix:%.200s: path too long", p);
		return -1;
	}
	memcpy(sa.sun_path, p, n);
	if (p[0] == '@')
		sa.sun_path[0] = '\0';
	socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
				    (p[0] == '@' ? 0 : 1));
	static const int types[2] = {SOCK_DGRAM, SOCK_STREAM};
	long r = -ENOENT;
	for (int i = 0; i < 2; i++) {
		int fd = socket(AF_UNIX, types[i] | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			r = -errno;
			break;
		}
		/* the raw syscall: the connect hook must never see our own sockets */
		r = cr_sys_connect(fd, (struct sockaddr *)&sa, len);
		if (r == 0) {
			fd = cr_ownfd_raise(fd, 1);
			if (fd < 0)
				break;
			o->fd = fd;
			o->ino = cr_fd_inode(fd);
			o->sotype = types[i];
			if (types[i] == SOCK_STREAM) {
				int sz = 256 * 1024;
				(void)cr_sys_setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
			}
			return 0;
		}
		cr_sys_close(fd);
		if (r != -EPROTOTYPE)
			break;
	}
	snprintf(why, wn, "unix:%.200s: cannot connect: %s", p, strerror((int)-r));
	return -1;
}

/* Opens O (again). 0, or -1 (warned once). */
static int open_output(struct output *o)
{
	char why[1024];
	int r = 0;
	close_fd(o);
	if (o->kind == O_STDERR) {
		o->fd = 2;
		o->failed = 0;
		return 0;
	}
	if (o->kind == O_UNIX) {
		r = open_unix(o, why, sizeof(why));
	} else {
		struct stat st;
		int fd = open_file(o->path, mode_now, why, sizeof(why), &st);
		if (fd >= 0)
			fd = cr_ownfd_raise(fd, 1);
		if (fd < 0) {
			r = -1;
		} else {
			o->fd = fd;
			o->ino = cr_fd_inode(fd);
			o->fdev = st.st_dev;
			o->fino = st.st_ino;
		}
	}
	if (r == 0) {
		if (o->warned)
			cr_logmsg(CR_LL_INFO, "access log %s: writing again", o->spec);
		o->warned = 0;
		o->failed = 0;
		return 0;
	}
	if (!o->warned)
		cr_logmsg(
			CR_LL_WARN, "access log: %s; %s", why,
			o->kind == O_UNIX
				? "lines are dropped until it can be connected (tried every 5 s)"
				: "its lanes log nothing until it can be opened (tried every 5 s)");
	o->warned = 1;
	o->failed = o->kind == O_FILE;
	o->retry_at = cr_now_ms() + RECONNECT_MS;
	return -1;
}

/* Removes the first K lines and CUT bytes from O's buffer. */
static void shift(struct output *o, int k, size_t cut)
{
	memmove(o->buf, o->buf + cut, o->len - cut);
	o->len -= cut;
	int m = 0;
	for (int i = k; i < o->nlines; i++, m++) {
		o->line_end[m] = (uint32_t)(o->line_end[i] - cut);
		o->line_lane[m] = o->line_lane[i];
	}
	o->nlines = m;
}

/* Writes O's pending lines. A file or stderr: all of it, or what is left is
 * lost (counted). A stream socket: what it takes now, the rest later; after
 * a partly sent line the connection must carry its end (CONT), and if the
 * connection is lost that line is too, never completed on another one. */
static void flush(struct output *o)
{
	if (!o->len)
		return;
	if (o->fd >= 0 && o->kind != O_STDERR && cr_fd_inode(o->fd) != o->ino) {
		/* The host closed our number (closefrom...): never write to
		 * what it holds now; open ours again. */
		o->fd = -1;
		o->ino = 0;
		if (o->kind == O_FILE || cr_now_ms() >= o->retry_at)
			open_output(o);
	}
	int stream = o->kind == O_UNIX;
	size_t done = 0;
	while (o->fd >= 0 && done < o->len) {
		ssize_t w = stream ? send(o->fd, o->buf + done, o->len - done,
					  MSG_DONTWAIT | MSG_NOSIGNAL)
				   : write(o->fd, o->buf + done, o->len - done);
		if (w > 0) {
			done += (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (stream && w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break; /* the collector is slow: the rest waits */
		if (stream) {
			close_fd(o); /* the collector went away: connect again later */
			o->retry_at = cr_now_ms() + RECONNECT_MS;
		}
		break;
	}
	int k = 0;
	while (k < o->nlines && o->line_end[k] <= done)
		k++;
	if (k > 0)
		o->cont = 0;
	if (!stream) {
		drop_lines(o, k);
		o->len = 0;
		o->nlines = 0;
		return;
	}
	if (o->fd >= 0) {
		if (done > (k ? o->line_end[k - 1] : 0))
			o->cont = 1;
		shift(o, k, done);
		return;
	}
	size_t cut = k ? o->line_end[k - 1] : 0;
	if (k < o->nlines && (o->cont || done > cut)) {
		cr_alog_drop(o->line_lane[k], 1);
		cut = o->line_end[k];
		k++;
	}
	o->cont = 0;
	shift(o, k, cut);
}

static void emit(struct output *o, int lane, const char *s, size_t n)
{
	if (o->failed || o->fd < 0) {
		if (o->kind == O_UNIX && cr_now_ms() >= o->retry_at)
			open_output(o);
		if (o->failed || o->fd < 0) {
			cr_alog_drop(lane, 1);
			return;
		}
	}
	if (o->kind == O_UNIX && o->sotype == SOCK_DGRAM) {
		/* one datagram per line, without the newline */
		ssize_t w = send(o->fd, s, n - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w < 0) {
			cr_alog_drop(lane, 1);
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS) {
				close_fd(o);
				o->retry_at = cr_now_ms() + RECONNECT_MS;
			}
		}
		return;
	}
	if (!o->buf && !(o->buf = malloc(BUF_CAP))) {
		cr_alog_drop(lane, 1);
		return;
	}
	if (o->len + n > BUF_CAP || o->nlines == BUF_LINES)
		flush(o);
	if (o->len + n > BUF_CAP || o->nlines == BUF_LINES) {
		cr_alog_drop(lane, 1); /* a collector that does not read */
		return;
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
	o->line_end[o->nlines] = (uint32_t)o->len;
	o->line_lane[o->nlines++] = (uint16_t)lane;
}

static void output_free(struct output *o)
{
	flush(o);
	drop_lines(o, 0);
	close_fd(o);
	free(o->buf);
	memset(o, 0, sizeof(*o));
	o->fd = -1;
}

/* ------------------------------------------------------------ mapping */

static int output_for(const char *spec, long pid)
{
	for (int i = 0; i < nouts; i++)
		if (outs[i].used && strcmp(outs[i].spec, spec) == 0)
			return i;
	int i = 0;
	while (i < nouts && outs[i].used)
		i++;
	if (i == OUT_MAX)
		return -1;
	if (i == nouts)
		nouts++;
	atomic_store(&any_output, 1);
	struct output *o = &outs[i];
	memset(o, 0, sizeof(*o));
	o->fd = -1;
	o->used = 1;
	snprintf(o->spec, sizeof(o->spec), "%s", spec);
	if (strcmp(spec, "stderr") == 0) {
		o->kind = O_STDERR;
	} else if (strncmp(spec, "unix:", 5) == 0) {
		o->kind = O_UNIX;
		expand(spec + 5, o->path, sizeof(o->path), pid);
	} else {
		o->kind = O_FILE;
		expand(spec, o->path, sizeof(o->path), pid);
	}
	open_output(o);
	return i;
}

/* The lanes of the published config to their outputs, when it changed. */
static void refresh(long pid)
{
	const struct cr_config *cur = cr_cfgref_current();
	if (cur == mapped && !remap)
		return;
	const struct cr_config *cfg = cr_cfgref_acquire();
	if (!cfg)
		return;
	remap = 0;
	mode_now = cfg->access_log_mode > 0 ? cfg->access_log_mode : 0600;
	int keep[OUT_MAX] = {0};
	for (int i = 0; i < CR_MAX_LANE_IDS; i++)
		lane_out[i] = -2;
	for (int i = 0; i < cfg->nlanes; i++) {
		const struct cr_lane *l = &cfg->lanes[i];
		if (l->id < 0 || l->id >= CR_MAX_LANE_IDS)
			continue;
		snprintf(lane_names[l->id], CR_NAME_MAX, "%s", l->name);
		lane_out[l->id] = -1;
		if (!l->alog_on)
			continue;
		int o = output_for(l->access_log, pid);
		lane_out[l->id] = (int16_t)o;
		if (o >= 0)
			keep[o] = 1;
	}
	fallback = cfg->access_log[0] ? output_for(cfg->access_log, pid) : -1;
	if (fallback >= 0)
		keep[fallback] = 1;
	for (int i = 0; i < nouts; i++)
		if (outs[i].used && !keep[i])
			output_free(&outs[i]);
	if (mapped)
		cr_cfgref_release(mapped);
	mapped = cfg;
}

/* The request path does not even fill records for a lane whose output
 * cannot be opened. */
static void apply_off(void)
{
	for (int id = 0; id < CR_MAX_LANE_IDS; id++) {
		int o = lane_out[id];
		if (o != -2)
			cr_alog_lane_off(id, o == -1 ? 0 : o < 0 || outs[o].failed);
	}
}

/* Files renamed away (logrotate) or removed are opened again by name;
 * sockets whose collector went away are connected again. */
static void check_outputs(void)
{
	for (int i = 0; i < nouts; i++) {
		struct output *o = &outs[i];
		struct stat st;
		if (!o->used)
			continue;
		if (o->kind == O_UNIX) {
			if (o->fd < 0 && cr_now_ms() >= o->retry_at)
				open_output(o);
			continue;
		}
		if (o->kind != O_FILE)
			continue;
		if (o->failed) {
			if (cr_now_ms() >= o->retry_at)
				open_output(o);
			continue;
		}
		int moved = stat(o->path, &st) != 0 || st.st_dev != o->fdev || st.st_ino != o->fino;
		if (moved || o->fd < 0 || cr_fd_inode(o->fd) != o->ino) {
			flush(o);
			open_output(o);
		}
	}
}

static void report(int final)
{
	for (int id = 0; id < CR_MAX_LANE_IDS; id++) {
		uint64_t d = cr_alog_dropped(id);
		if (final && d)
			cr_logmsg(CR_LL_WARN,
				  "access log: lane '%s': %llu line(s) dropped in all "
				  "(connroute_access_log_dropped_total)",
				  lane_names[id][0] ? lane_names[id] : "?", (unsigned long long)d);
		else if (d > reported[id])
			cr_logmsg(CR_LL_WARN,
				  "access log: lane '%s': %llu line(s) dropped (buffer full or "
				  "output failing; connroute_access_log_dropped_total)",
				  lane_names[id][0] ? lane_names[id] : "?",
				  (unsigned long long)(d - reported[id]));
		reported[id] = d;
	}
}

enum { T_RUN, T_FLUSH, T_EXIT };

/* One turn: config, outputs, every record there is, flush. Under BUSY.
 * T_FLUSH checks the outputs now; T_EXIT reports the drops of the whole
 * run and opens nothing again. */
static void turn(int how)
{
	long pid = (long)getpid();
	int64_t now = cr_now_ms();
	for (int i = 0; i < nouts; i++)
		if (outs[i].orphan) {
			free(outs[i].buf);
			memset(&outs[i], 0, sizeof(outs[i]));
			outs[i].fd = -1;
		}
	refresh(pid);
	if ((now >= next_check && how != T_EXIT) || how == T_FLUSH) {
		check_outputs();
		next_check = now + CHECK_MS;
	}
	apply_off();
	for (int rounds = 0; rounds < 1024; rounds++) {
		size_t n = cr_alog_take(batch, BATCH);
		for (size_t i = 0; i < n; i++) {
			const struct cr_alog_rec *r = &batch[i];
			int o = lane_out[r->lane];
			if (o == -2)
				o = fallback;
			if (o < 0 || !outs[o].used) {
				cr_alog_drop(r->lane, 1);
				continue;
			}
			const char *name = lane_names[r->lane][0] ? lane_names[r->lane] : "?";
			size_t len = cr_alog_format(r, name, pid, line, sizeof(line));
			if (!len) {
				cr_alog_drop(r->lane, 1);
				continue;
			}
			emit(&outs[o], r->lane, line, len);
		}
		if (n < BATCH)
			break;
	}
	for (int i = 0; i < nouts; i++)
		if (outs[i].used)
			flush(&outs[i]);
	if (how == T_EXIT || now >= next_report) {
		report(how == T_EXIT);
		next_report = now + REPORT_MS;
	}
}

static int lock_busy(int wait_ms)
{
	for (int i = 0;; i++) {
		int z = 0;
		if (atomic_compare_exchange_strong(&busy, &z, 1))
			return 1;
		if (i >= wait_ms)
			return 0;
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
}

static void *writer_main(void *arg)
{
	(void)arg;
	for (;;) {
		if (!atomic_load(&exiting) && lock_busy(0)) {
			turn(T_RUN);
			atomic_store(&busy, 0);
		}
		cr_alog_wait(WAKE_MS);
	}
	return NULL;
}

static struct cr_thread writer = {
	.name = "connroute-alog", .main = writer_main, .stack = 256 * 1024};

void cr_alog_writer_kick(void)
{
	const struct cr_config *cfg = cr_cfgref_current();
	if (!cfg)
		return;
	for (int i = 0; i < cfg->nlanes; i++)
		if (cfg->lanes[i].alog_on) {
			(void)cr_thread_kick(&writer);
			return;
		}
}

void cr_alog_writer_flush(void)
{
	if (!cr_alog_capacity() && !atomic_load(&any_output))
		return; /* this process never logged */
	SAVE_ERRNO({
		if (lock_busy(2000)) {
			turn(T_FLUSH);
			atomic_store(&busy, 0);
		}
	});
}

/* At exit: what is still in the ring is written (not at _exit, nor when a
 * signal kills the process). The thread is kept from starting another turn
 * while libc tears down. */
__attribute__((destructor)) static void alog_fini(void)
{
	if (!cr_alog_capacity() && !atomic_load(&any_output))
		return;
	SAVE_ERRNO({
		if (lock_busy(2000)) {
			atomic_store(&exiting, 1);
			turn(T_EXIT);
			atomic_store(&busy, 0);
		}
	});
}

void cr_alog_writer_atfork_child(void)
{
	for (int i = 0; i < nouts; i++) {
		struct output *o = &outs[i];
		if (!o->used)
			continue;
		/* the parent writes its own pending lines */
		if (o->fd >= 0 && o->kind != O_STDERR)
			cr_ownfd_close(o->fd, o->ino);
		o->fd = -1;
		o->used = 0;
		o->orphan = 1; /* its buffer is freed at the child's first turn */
	}
	for (int i = 0; i < CR_MAX_LANE_IDS; i++) {
		reported[i] = 0;
		cr_alog_lane_off(i, 0);
	}
	remap = 1;
	atomic_store(&busy, 0);
	atomic_store(&exiting, 0);
	cr_thread_atfork_child(&writer);
	cr_alog_atfork_child();
}
