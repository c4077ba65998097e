/* connroute(1) tail: the last requests of an access log, as a table
 * (docs/access-log.md).
 *
 *   connroute tail PID | PATH [--slow] [-n N] [--lane NAME]
 *
 * PATH: an access log file. PID: the files a running process logs to, found
 * from its CONNROUTE_CONFIG (as `connroute stats` does; %p = PID); outputs
 * that are not files (stderr, unix sockets) cannot be read back and are
 * named. The last 4 MiB of each file are read; the last N lines [20] are
 * shown oldest first, or with --slow the N slowest of them, slowest first.
 * Everything printed from a line is cut and has its control characters
 * replaced: a logged path cannot send escape sequences to the terminal. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"

#define TAIL_BYTES (4u << 20)
#define FILES_MAX  (CR_MAX_LANES + 1)

struct row {
	char time[32];
	char lane[40];
	char kind[12];
	char method[12];
	char dest[64];
	char path[48];
	char outcome[12];
	char error[32];
	int status;
	double dur[6];    /* dns connect tls ttfb total queue; < 0: null */
	int reused, warm; /* -1: absent */
	int resends;
	long seq; /* order read */
};

static const char *const dur_keys[6] = {"dns", "connect", "tls", "ttfb", "total", "queue"};

/* ------------------------------------------------------------ one line */

/* A flat JSON object: calls FN for every key with its value as text
 * (strings unescaped, control characters as '?'); NULL for null. 0, or -1
 * if the line is not such an object. */
typedef void (*field_fn)(struct row *r, const char *key, const char *val, int is_str);

static const char *parse_str(const char *p, char *out, size_t cap)
{
	size_t n = 0;
	if (*p++ != '"')
		return NULL;
	while (*p && *p != '"') {
		unsigned c = (unsigned char)*p++;
		if (c == '\\') {
			char e = *p++;
			switch (e) {
			case 'n':
			case 't':
			case 'r':
			case 'b':
			case 'f': c = '?'; break;
			case 'u': {
				unsigned v = 0;
				for (int i = 0; i < 4; i++) {
					char h = *p++;
					if (!isxdigit((unsigned char)h))
						return NULL;
					v = v * 16 + (unsigned)(isdigit((unsigned char)h)
									? h - '0'
									: (tolower(h) - 'a' + 10));
				}
				c = v < 0x20 || v == 0x7f ? '?' : v < 0x80 ? v : '?';
				break;
			}
			case '\0': return NULL;
			default: c = (unsigned char)e;
			}
		} else if (c < 0x20 || c == 0x7f) {
			c = '?';
		} else if (c == 0xc2 && (unsigned char)*p >= 0x80 && (unsigned char)*p <= 0x9f) {
			c = '?'; /* a C1 control character (CSI...) in UTF-8 */
			p++;
		}
		if (n + 1 < cap)
			out[n++] = (char)c;
	}
	if (*p != '"')
		return NULL;
	out[n] = '\0';
	return p + 1;
}

static int parse_line(const char *p, struct row *r, field_fn fn)
{
	char key[64], val[512];
	while (*p == ' ')
		p++;
	if (*p++ != '{')
		return -1;
	for (;;) {
		while (*p == ' ')
			p++;
		if (*p == '}')
			return 0;
		if (!(p = parse_str(p, key, sizeof(key))) || *p++ != ':')
			return -1;
		if (*p == '"') {
			if (!(p = parse_str(p, val, sizeof(val))))
				return -1;
			fn(r, key, val, 1);
		} else {
			size_t n = strcspn(p, ",}");
			if (!p[n] || n >= sizeof(val))
				return -1;
			memcpy(val, p, n);
			val[n] = '\0';
			p += n;
			fn(r, key, strcmp(val, "null") ? val : NULL, 0);
		}
		if (*p == ',')
			p++;
		else if (*p != '}')
			return -1;
	}
}

static void cut(char *dst, size_t cap, const char *s)
{
	size_t n = strlen(s);
	if (n < cap) {
		memcpy(dst, s, n + 1);
		return;
	}
	memcpy(dst, s, cap - 4);
	memcpy(dst + cap - 4, "...", 4);
}

static void on_field(struct row *r, const char *k, const char *v, int is_str)
{
	if (!v)
		return;
	if (!strcmp(k, "time"))
		cut(r->time, sizeof(r->time), v);
	else if (!strcmp(k, "connroute.lane"))
		cut(r->lane, sizeof(r->lane), v);
	else if (!strcmp(k, "connroute.kind"))
		cut(r->kind, sizeof(r->kind), v);
	else if (!strcmp(k, "http.request.method"))
		cut(r->method, sizeof(r->method), v);
	else if (!strcmp(k, "server.address") && !r->dest[0])
		cut(r->dest, sizeof(r->dest), v);
	else if (!strcmp(k, "server.port") && !is_str) {
		size_t n = strlen(r->dest);
		if (n + 8 < sizeof(r->dest))
			snprintf(r->dest + n, sizeof(r->dest) - n, ":%d", atoi(v));
	} else if (!strcmp(k, "url.path"))
		cut(r->path, sizeof(r->path), v);
	else if (!strcmp(k, "outcome"))
		cut(r->outcome, sizeof(r->outcome), v);
	else if (!strcmp(k, "error.type"))
		cut(r->error, sizeof(r->error), v);
	else if (!strcmp(k, "http.response.status_code"))
		r->status = atoi(v);
	else if (!strcmp(k, "reused"))
		r->reused = !strcmp(v, "true");
	else if (!strcmp(k, "warm"))
		r->warm = !strcmp(v, "true");
	else if (!strcmp(k, "http.request.resend_count"))
		r->resends = atoi(v);
	else
		for (int i = 0; i < 6; i++)
			if (!strcmp(k, dur_keys[i]))
				r->dur[i] = strtod(v, NULL); /* the log's numbers use '.' */
}

/* ------------------------------------------------------------ files */

struct rows {
	struct row *v;
	size_t n, cap;
	long seq;
};

static int add_file(struct rows *rs, const char *path, const char *lane)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		fprintf(stderr, "connroute tail: %s: %s\n", path,
			fd < 0 ? strerror(errno) : "not a file");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	off_t from = st.st_size > (off_t)TAIL_BYTES ? st.st_size - (off_t)TAIL_BYTES : 0;
	size_t want = (size_t)(st.st_size - from), got = 0;
	char *buf = malloc(want + 1);
	if (!buf) {
		close(fd);
		return -1;
	}
	while (got < want) {
		ssize_t k = pread(fd, buf + got, want - got, from + (off_t)got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		got += (size_t)k;
	}
	close(fd);
	buf[got] = '\0';
	char *p = buf;
	if (from > 0) { /* the first line read is cut: skip it */
		char *nl = strchr(p, '\n');
		p = nl ? nl + 1 : buf + got;
	}
	for (char *nl; *p; p = nl + 1) {
		nl = strchr(p, '\n');
		if (!nl)
			break; /* a line still being written */
		*nl = '\0';
		struct row r;
		memset(&r, 0, sizeof(r));
		for (int i = 0; i < 6; i++)
			r.dur[i] = -1;
		r.reused = r.warm = -1;
		if (parse_line(p, &r, on_field) != 0)
			continue;
		if (lane && strcmp(lane, r.lane))
			continue;
		if (rs->n == rs->cap) {
			size_t nc = rs->cap ? rs->cap * 2 : 1024;
			struct row *v = realloc(rs->v, nc * sizeof(*v));
			if (!v)
				break;
			rs->v = v;
			rs->cap = nc;
		}
		r.seq = rs->seq++;
		rs->v[rs->n++] = r;
	}
	free(buf);
	return 0;
}

/* /proc/PID/environ's CONNROUTE_CONFIG, then its logs' files. */
static int add_pid(struct rows *rs, long pid, const char *lane)
{
	char path[128], cfgpath[4200];
	static char env[1 << 17];
	snprintf(path, sizeof(path), "/proc/%ld/environ", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "connroute tail: cannot read the environment of process %ld: %s\n",
			pid, strerror(errno));
		return -1;
	}
	ssize_t n = read(fd, env, sizeof(env) - 1);
	close(fd);
	if (n < 0)
		n = 0;
	env[n] = '\0';
	const char *cfgv = NULL;
	for (const char *p = env; p < env + n; p += strlen(p) + 1)
		if (!strncmp(p, "CONNROUTE_CONFIG=", 17))
			cfgv = p + 17;
	if (!cfgv || !cfgv[0]) {
		fprintf(stderr,
			"connroute tail: process %ld has no CONNROUTE_CONFIG, so no access log; "
			"give the log's PATH\n",
			pid);
		return -1;
	}
	if (cfgv[0] == '/')
		snprintf(cfgpath, sizeof(cfgpath), "%s", cfgv);
	else
		snprintf(cfgpath, sizeof(cfgpath), "/proc/%ld/cwd/%s", pid, cfgv);
	struct cr_config *cfg = calloc(1, sizeof(*cfg));
	struct cr_diag *diag = calloc(1, sizeof(*diag));
	int rc = -1, files = 0;
	char seen[FILES_MAX][CR_ALOG_SPEC_MAX];
	if (!cfg || !diag)
		goto out;
	if (cr_config_load_file(cfgpath, cfg, diag) != 0) {
		fprintf(stderr, "connroute tail: process %ld: %s\n", pid, diag->msg[0]);
		goto out;
	}
	for (int i = 0; i < cfg->nlanes; i++) {
		const struct cr_lane *l = &cfg->lanes[i];
		if (!l->alog_on || (lane && strcmp(lane, l->name)))
			continue;
		int dup = 0;
		for (int k = 0; k < files && !dup; k++)
			dup = !strcmp(seen[k], l->access_log);
		if (dup || files == FILES_MAX)
			continue;
		snprintf(seen[files++], CR_ALOG_SPEC_MAX, "%s", l->access_log);
		if (l->access_log[0] != '/') {
			fprintf(stderr,
				"connroute tail: lane %s logs to %s, which cannot be read back\n",
				l->name, l->access_log);
			continue;
		}
		char file[4200];
		size_t k = 0;
		for (const char *c = l->access_log; *c && k + 24 < sizeof(file); c++) {
			if (c[0] == '%' && c[1] == 'p') {
				k += (size_t)snprintf(file + k, sizeof(file) - k, "%ld", pid);
				c++;
			} else {
				file[k++] = *c;
			}
		}
		file[k] = '\0';
		if (add_file(rs, file, lane) == 0)
			rc = 0;
	}
	if (!files)
		fprintf(stderr, "connroute tail: process %ld: %s sets no access_log%s%s\n", pid,
			cfgpath, lane ? " for lane " : "", lane ? lane : "");
out:
	free(cfg);
	free(diag);
	return rc;
}

/* ------------------------------------------------------------ the table */

static int by_time(const void *a, const void *b)
{
	const struct row *x = a, *y = b;
	int c = strcmp(x->time, y->time);
	return c ? c : (x->seq > y->seq) - (x->seq < y->seq);
}

static int by_total_desc(const void *a, const void *b)
{
	const struct row *x = a, *y = b;
	if (x->dur[4] != y->dur[4])
		return x->dur[4] < y->dur[4] ? 1 : -1;
	return (x->seq > y->seq) - (x->seq < y->seq);
}

static const char *ms(char *b, size_t n, double s)
{
	if (s < 0)
		return "-";
	if (s * 1000 < 10)
		snprintf(b, n, "%.2f", s * 1000);
	else if (s * 1000 < 1000)
		snprintf(b, n, "%.1f", s * 1000);
	else
		snprintf(b, n, "%.0f", s * 1000);
	return b;
}

static void print_row(const struct row *r)
{
	char d[6][16], st[16];
	const char *t = strchr(r->time, 'T');
	char tm[16];
	snprintf(tm, sizeof(tm), "%.12s", t ? t + 1 : r->time);
	if (r->status)
		snprintf(st, sizeof(st), "%d", r->status);
	else
		snprintf(st, sizeof(st), "-");
	const char *what = r->method[0] ? r->method : r->kind;
	printf("%-12s %-12.12s %-10s %-4s %-7s %-24.24s %-24.24s", tm, r->lane, r->outcome, st,
	       what, r->dest, r->path[0] ? r->path : "-");
	for (int i = 0; i < 6; i++)
		printf(" %7s", ms(d[i], sizeof(d[i]), r->dur[i]));
	printf(" %-3s %-3s %2d %s\n",
	       r->reused < 0 ? "-"
	       : r->reused   ? "yes"
			     : "no",
	       r->warm < 0 ? "-"
	       : r->warm   ? "yes"
			   : "no",
	       r->resends, r->error);
}

static void tail_usage(FILE *f)
{
	fputs("usage: connroute tail PID | PATH [--slow] [-n N] [--lane NAME]\n"
	      "  the last N [20] requests of an access log, oldest first; --slow: the N slowest "
	      "of\n"
	      "  the last 4 MiB of the log, slowest first. PID: the files the process logs to\n"
	      "  (its CONNROUTE_CONFIG's access_log, %p = PID). Durations in ms.\n",
	      f);
}

int cr_cli_tail(int argc, char **argv)
{
	const char *target = NULL, *lane = NULL;
	int slow = 0;
	long n = 20;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--slow")) {
			slow = 1;
		} else if ((!strcmp(a, "-n") || !strcmp(a, "--lane")) && i + 1 < argc) {
			if (a[1] == 'n') {
				char *e;
				n = strtol(argv[++i], &e, 10);
				if (*e || n <= 0) {
					tail_usage(stderr);
					return 2;
				}
			} else {
				lane = argv[++i];
			}
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			tail_usage(stdout);
			return 0;
		} else if (a[0] != '-' && !target) {
			target = a;
		} else {
			tail_usage(stderr);
			return 2;
		}
	}
	if (!target) {
		tail_usage(stderr);
		return 2;
	}
	struct rows rs = {0};
	int pid = target[0] && strspn(target, "0123456789") == strlen(target);
	int rc = pid ? add_pid(&rs, strtol(target, NULL, 10), lane) : add_file(&rs, target, lane);
	if (rc != 0 && !rs.n) {
		free(rs.v);
		return 1;
	}
	/* the last N by time (several files interleave), or the N slowest */
	qsort(rs.v, rs.n, sizeof(*rs.v), by_time);
	size_t from = rs.n > (size_t)n ? rs.n - (size_t)n : 0;
	struct row *v = rs.v;
	size_t cnt = rs.n - from;
	if (slow) {
		qsort(rs.v, rs.n, sizeof(*rs.v), by_total_desc);
		from = 0;
		cnt = rs.n < (size_t)n ? rs.n : (size_t)n;
	}
	printf("%-12s %-12s %-10s %-4s %-7s %-24s %-24s %7s %7s %7s %7s %7s %7s %-3s %-3s %2s %s\n",
	       "TIME", "LANE", "OUTCOME", "CODE", "METHOD", "SERVER", "PATH", "DNS", "CONNECT",
	       "TLS", "TTFB", "TOTAL", "QUEUE", "RE", "WRM", "RT", "ERROR");
	for (size_t i = 0; i < cnt; i++)
		print_row(&v[from + i]);
	free(rs.v);
	return 0;
}
