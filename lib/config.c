/* connroute: configuration parser.
 *
 * inih does the key = value splitting; this file does everything inih cannot
 * do well for a config that must explain every mistake with its line:
 *
 * - Debian's libinih is built without INI_HANDLER_LINENO and only returns
 *   the line of the *first* error, so input is fed through our own reader
 *   (read_line), which counts physical lines; the handler runs synchronously
 *   right after the reader returns, so p->line is the line of the pair.
 * - inih calls nothing for a section header (INI_CALL_HANDLER_ON_NEW_SECTION
 *   is 0), so an empty `[lane default]` would be invisible. The reader parses
 *   headers itself and hands inih a neutral "[s]".
 * - With INI_ALLOW_MULTILINE, an indented line continues the previous key:
 *   `  hosts = x` under an indented `  match = y` would silently become a
 *   second match value "hosts = x". The reader strips indentation, so inih
 *   never sees a continuation line; list keys are repeated instead.
 * - A line longer than the buffer inih hands the reader (INI_MAX_LINE, 200)
 *   would be split and its tail parsed as a line of its own, maybe as a
 *   valid key. The reader reports it and hands inih an empty line. Comments
 *   never reach inih (whole-line ones are dropped, inline ones cut by inih's
 *   own rule: ';' after whitespace), so only content counts toward the limit.
 * - Lines inih would reject (no '=' or ':') are reported here and blanked;
 *   inih would only have told us the first such line.
 *
 * No static mutable state, no output, no exit: the shim calls this at init
 * inside arbitrary host processes, and `connroute check` prints *diag.
 * Numbers are parsed by hand rather than with strtod, whose decimal point
 * follows the host application's LC_NUMERIC. Files are read with stdio, not
 * open/close, because the shim interposes close() (docs/INTERNALS.md, "Rules inside a host process"). */
#include "config.h"
#include "sys.h"

#include <arpa/inet.h>
#include <errno.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define CR_FILE_MAX (1 << 20)        /* a config is a few KB; more is a wrong path */
#define CR_DUR_MAX_MS INT_MAX        /* poll() and friends take int milliseconds */
#define CR_KEEPALIVE_MAX_S 32767     /* MAX_TCP_KEEPIDLE / MAX_TCP_KEEPINTVL */
#define CR_KEEPCNT_MAX 127           /* MAX_TCP_KEEPCNT */
#define CR_PREWARM_COUNT_MAX 1024
#define CR_SUN_PATH_MAX 107          /* sizeof(sun_path) - NUL */
#define CR_PID_DIGITS 7              /* pid_max <= 4194304 */

enum sec { SEC_NONE, SEC_GLOBAL, SEC_THREADS, SEC_LANE, SEC_SKIP };

struct parse;
struct lane_key;
typedef int (*lane_setter)(struct parse *p, struct cr_lane *l, const struct lane_key *k,
			   const char *v);

enum field { F_INT, F_LONG, F_LLONG };

#define KEY_LIST 1u   /* may be repeated; each line appends */
#define KEY_HEX 2u    /* integer may be written 0x.. */

struct lane_key {
	const char *name;
	lane_setter set;
	size_t off;
	enum field type;
	long long min, max;
	unsigned flags;
	const char *example;
};

enum lane_key_id {
	LK_MATCH,
	LK_HOSTS,
	LK_MAX_CONNS_PER_HOST,
	LK_MAX_IDLE_PER_HOST,
	LK_IDLE_TIMEOUT,
	LK_MAX_LIFETIME,
	LK_CONNECT_TIMEOUT,
	LK_RESPONSE_HEADER_TIMEOUT,
	LK_REQUEST_TIMEOUT,
	LK_QUEUE_TIMEOUT,
	LK_KEEPALIVE,
	LK_KEEPALIVE_INTERVAL,
	LK_KEEPALIVE_COUNT,
	LK_NODELAY,
	LK_TOS,
	LK_DSCP,
	LK_PRIORITY,
	LK_MARK,
	LK_BIND,
	LK_MIN_TLS,
	LK_RETRIES,
	LK_RETRY_BUDGET,
	LK_RETRY_BUDGET_MIN,
	LK_PREWARM,
	LK_PREWARM_URL,
	LK_PREWARM_METHOD,
	LK_PRECONNECT_RATIO,
	LK_WARM_MAX_IDLE,
	LK__COUNT
};

enum global_key_id { GK_LOG, GK_METRICS, GK__COUNT };

struct parse {
	struct cr_config *cfg;
	struct cr_diag *diag;
	const char *file;          /* name used in messages */
	const char *p, *end;       /* unread input */
	int line;                  /* physical line last handed to inih */
	enum sec sec;
	struct cr_lane *lane;      /* SEC_LANE */
	int seen[LK__COUNT];       /* line each key was set on in this lane, 0 = not yet */
	int gseen[GK__COUNT];
	int have_default;
};

/* ------------------------------------------------------------------------ */
/* diagnostics */

__attribute__((format(printf, 3, 4))) static void diag_add(struct parse *p, int line,
							    const char *fmt, ...)
{
	struct cr_diag *d = p->diag;
	va_list ap;
	char *m;
	int off;

	if (d->n < CR_MAX_DIAG) {
		m = d->msg[d->n];
		if (line > 0)
			off = snprintf(m, CR_DIAG_LEN, "%s:%d: ", p->file, line);
		else
			off = snprintf(m, CR_DIAG_LEN, "%s: ", p->file);
		if (off < 0)
			off = 0;
		if (off >= CR_DIAG_LEN)
			off = CR_DIAG_LEN - 1;
		va_start(ap, fmt);
		vsnprintf(m + off, (size_t)(CR_DIAG_LEN - off), fmt, ap);
		va_end(ap);
	}
	d->n++;
}

#define QMAX 64
/* A value as it may appear inside a message: bounded, control bytes masked,
 * so a binary file cannot garble the terminal that shows the error. */
static const char *q(char buf[QMAX + 4], const char *s)
{
	size_t i;

	for (i = 0; s[i] && i < QMAX; i++)
		buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	if (s[i])
		memcpy(buf + i, "...", 4);
	else
		buf[i] = '\0';
	return buf;
}

/* ------------------------------------------------------------------------ */
/* small lexical helpers (locale-independent on purpose) */

static int is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static int is_alnum(int c)
{
	return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_space(int c)
{
	return c == ' ' || c == '\t' || c == '\v' || c == '\f';
}

static int lower(int c)
{
	return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

static int str_ieq(const char *a, const char *b)
{
	while (*a && lower((unsigned char)*a) == lower((unsigned char)*b))
		a++, b++;
	return lower((unsigned char)*a) == lower((unsigned char)*b);
}

static int str_copy(char *dst, size_t size, const char *src, size_t n)
{
	if (n >= size)
		return -1;
	memcpy(dst, src, n);
	dst[n] = '\0';
	return 0;
}

/* Decimal or (HEX) 0x-hex unsigned integer, the whole string. */
static int parse_uint(const char *s, int hex, unsigned long long max, unsigned long long *out)
{
	unsigned long long v = 0;
	unsigned base = 10, d;
	int over = 0;

	if (hex && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && s[2]) {
		base = 16;
		s += 2;
	}
	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		if (is_digit(*s))
			d = (unsigned)(*s - '0');
		else if (base == 16 && lower(*s) >= 'a' && lower(*s) <= 'f')
			d = (unsigned)(lower(*s) - 'a' + 10);
		else
			return -EINVAL;
		if (v > (ULLONG_MAX - d) / base)
			over = 1;
		else
			v = v * base + d;
	}
	if (over || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

/* "12", "1.5", ".5": digits as an integer mantissa and a count of fraction
 * digits, so callers can do exact integer arithmetic. *END gets the first
 * byte after the number. */
static int parse_decimal(const char *s, unsigned long long *mant, int *scale, const char **end)
{
	unsigned long long m = 0;
	int sig = 0, whole = 0, sc = 0, frac = 0;

	for (;; s++) {
		if (is_digit(*s)) {
			if (sig >= 15)
				return -ERANGE;
			if (m || *s != '0')
				sig++;
			m = m * 10 + (unsigned)(*s - '0');
			if (!frac)
				whole++;
			else if (++sc > 9)
				return -ERANGE;
		} else if (*s == '.' && !frac) {
			frac = 1;
		} else {
			break;
		}
	}
	/* "", "." and "5." are not numbers; ".5" is */
	if (frac ? sc == 0 : whole == 0)
		return -EINVAL;
	*mant = m;
	*scale = sc;
	*end = s;
	return 0;
}

static double decimal_value(unsigned long long mant, int scale)
{
	double d = 1;

	while (scale-- > 0)
		d *= 10;
	return (double)mant / d;
}

/* -EINVAL syntax, -ENOMSG bare non-zero number (unit missing), -ERANGE too
 * long, -EDOM finer than a millisecond. */
static int duration_ms(const char *s, long *out)
{
	unsigned long long mant, unit, pow10 = 1, ms;
	const char *e;
	int scale, i, rc;

	rc = parse_decimal(s, &mant, &scale, &e);
	if (rc == -ERANGE)
		return -ERANGE;
	if (rc < 0)
		return -EINVAL;
	while (is_space(*e))
		e++;
	if (!*e) {
		if (mant != 0)
			return -ENOMSG;
		*out = 0;
		return 0;
	}
	if (strcmp(e, "ms") == 0)
		unit = 1;
	else if (strcmp(e, "s") == 0)
		unit = 1000;
	else if (strcmp(e, "m") == 0)
		unit = 60000;
	else
		return -EINVAL;
	for (i = 0; i < scale; i++)
		pow10 *= 10;
	/* mant < 10^15 and unit <= 6*10^4: no overflow */
	if ((mant * unit) % pow10)
		return -EDOM;
	ms = mant * unit / pow10;
	if (ms > CR_DUR_MAX_MS)
		return -ERANGE;
	*out = (long)ms;
	return 0;
}

long cr_parse_duration_ms(const char *s)
{
	long ms;

	if (!s || duration_ms(s, &ms) < 0)
		return -1;
	return ms;
}

/* Optimal string alignment distance (a transposition counts 1), ASCII case
 * folded; for "did you mean" only, so long inputs are simply not compared. */
static int edit_distance(const char *a, const char *b)
{
	int d[3][65], la = (int)strlen(a), lb = (int)strlen(b), i, j, v, *row, *prev, *prev2;

	if (la > 64 || lb > 64)
		return 99;
	for (j = 0; j <= lb; j++)
		d[0][j] = j;
	for (i = 1; i <= la; i++) {
		row = d[i % 3];
		prev = d[(i - 1) % 3];
		prev2 = d[(i + 1) % 3]; /* i-2 */
		row[0] = i;
		for (j = 1; j <= lb; j++) {
			int ca = lower((unsigned char)a[i - 1]), cb = lower((unsigned char)b[j - 1]);

			v = prev[j - 1] + (ca != cb);
			if (prev[j] + 1 < v)
				v = prev[j] + 1;
			if (row[j - 1] + 1 < v)
				v = row[j - 1] + 1;
			if (i > 1 && j > 1 && ca == lower((unsigned char)b[j - 2]) &&
			    lower((unsigned char)a[i - 2]) == cb && prev2[j - 2] + 1 < v)
				v = prev2[j - 2] + 1;
			row[j] = v;
		}
	}
	return d[la % 3][lb];
}

/* ------------------------------------------------------------------------ */
/* lane defaults */

static void lane_common(struct cr_lane *l)
{
	memset(l, 0, sizeof(*l));
	l->max_idle_per_host = 8;
	l->idle_timeout_ms = 90000;
	l->keepalive_idle_s = -1;
	l->keepalive_interval_s = -1;
	l->keepalive_count = -1;
	l->tos = -1;
	l->priority = -1;
	l->mark = -1;
	l->retry_budget_ratio = 0.2;
	l->retry_budget_min_per_s = 3;
	memcpy(l->prewarm_method, "HEAD", 5);
	l->warm_max_idle_ms = 15000;
}

/* A lane written in the file: the documented defaults. */
static void lane_defaults(struct cr_lane *l)
{
	lane_common(l);
	l->connect_timeout_ms = 5000;
	l->queue_timeout_ms = -1; /* resolved to connect_timeout at section end */
	l->nodelay = 1;
	l->min_tls = 12;
}

/* The default lane nobody wrote: it must not change any behaviour the
 * application did not ask for, so everything that touches a socket or curl's
 * own defaults stays unset. */
static void lane_implicit(struct cr_lane *l)
{
	lane_common(l);
	memcpy(l->name, "default", 8);
	l->implicit = 1;
	l->nodelay = -1;
	l->connect_timeout_ms = 0;
	l->queue_timeout_ms = 0;
	l->min_tls = 0;
}

static void config_init(struct cr_config *cfg)
{
	/* only the header; the lane table is large and filled lane by lane */
	memset(cfg, 0, offsetof(struct cr_config, lanes));
	cfg->log_level = -1;
	cfg->nlanes = 0;
	cfg->default_lane = -1;
	cfg->nthreads = 0;
}

/* Derives what the hooks want precomputed. Not static, so that code which
 * builds or edits a cr_config itself can call it once config.h declares it. */
void cr_config_finish(struct cr_config *cfg);

void cr_config_finish(struct cr_config *cfg)
{
	int i;

	cfg->default_lane = -1;
	for (i = 0; i < cfg->nlanes; i++) {
		struct cr_lane *l = &cfg->lanes[i];

		l->index = i;
		l->passthrough = l->keepalive_idle_s < 0 && l->keepalive_interval_s < 0 &&
				 l->keepalive_count < 0 && l->nodelay < 0 && l->tos < 0 &&
				 l->priority < 0 && l->mark < 0 && !l->bind_set &&
				 l->connect_timeout_ms == 0 && l->max_conns_per_host == 0;
		if (cfg->default_lane < 0 && strcmp(l->name, "default") == 0)
			cfg->default_lane = i;
	}
}

void cr_config_builtin(struct cr_config *cfg)
{
	config_init(cfg);
	lane_implicit(&cfg->lanes[0]);
	cfg->nlanes = 1;
	cr_config_finish(cfg);
}

int cr_config_find_lane(const struct cr_config *cfg, const char *name)
{
	int i;

	for (i = 0; i < cfg->nlanes; i++)
		if (strcmp(cfg->lanes[i].name, name) == 0)
			return i;
	return -1;
}

/* ------------------------------------------------------------------------ */
/* value parsers for lane keys */

#define FIELD(l, k, T) ((T *)(void *)((char *)(l) + (k)->off))

static void store_int(struct cr_lane *l, const struct lane_key *k, long long v)
{
	switch (k->type) {
	case F_INT:
		*FIELD(l, k, int) = (int)v;
		break;
	case F_LONG:
		*FIELD(l, k, long) = (long)v;
		break;
	case F_LLONG:
		*FIELD(l, k, long long) = v;
		break;
	}
}

static int set_int(struct parse *p, struct cr_lane *l, const struct lane_key *k, const char *v)
{
	unsigned long long n;
	char qb[QMAX + 4];
	int rc = parse_uint(v, (k->flags & KEY_HEX) != 0, (unsigned long long)k->max, &n);

	if (rc == 0 && n < (unsigned long long)k->min)
		rc = -ERANGE;
	if (rc == -ERANGE) {
		diag_add(p, p->line, "%s = %s is out of range; use %lld to %lld", k->name, q(qb, v),
			 k->min, k->max);
		return -1;
	}
	if (rc < 0) {
		diag_add(p, p->line, "bad value '%s' for %s; use a whole number from %lld to %lld%s",
			 q(qb, v), k->name, k->min, k->max,
			 (k->flags & KEY_HEX) ? " (decimal or 0x hex)" : "");
		return -1;
	}
	store_int(l, k, (long long)n);
	return 0;
}

static int dur_check(struct parse *p, const struct lane_key *k, const char *v, long *ms)
{
	char qb[QMAX + 4];

	switch (duration_ms(v, ms)) {
	case 0:
		return 0;
	case -ENOMSG:
		q(qb, v);
		if (strchr(v, '.')) /* 0.5ms would be rejected: do not suggest it */
			diag_add(p, p->line, "duration '%s' for %s has no unit; write %ss", qb,
				 k->name, qb);
		else
			diag_add(p, p->line, "duration '%s' for %s has no unit; write %ss or %sms",
				 qb, k->name, qb, qb);
		break;
	case -ERANGE:
		diag_add(p, p->line, "duration '%s' for %s is too long; the maximum is %dm",
			 q(qb, v), k->name, CR_DUR_MAX_MS / 60000);
		break;
	case -EDOM:
		diag_add(p, p->line, "duration '%s' for %s is finer than 1ms; round it to whole ms",
			 q(qb, v), k->name);
		break;
	default:
		diag_add(p, p->line,
			 "bad duration '%s' for %s; use a number with ms, s or m (e.g. 500ms, 5s)",
			 q(qb, v), k->name);
		break;
	}
	return -1;
}

static int set_dur(struct parse *p, struct cr_lane *l, const struct lane_key *k, const char *v)
{
	long ms;

	if (dur_check(p, k, v, &ms) < 0)
		return -1;
	*FIELD(l, k, long) = ms;
	return 0;
}

/* TCP_KEEPIDLE and TCP_KEEPINTVL take whole seconds, at least one; silently
 * rounding 1500ms would apply something the file does not say. */
static int set_dursec(struct parse *p, struct cr_lane *l, const struct lane_key *k, const char *v)
{
	char qb[QMAX + 4];
	long ms;

	if (dur_check(p, k, v, &ms) < 0)
		return -1;
	if (ms < 1000 || ms % 1000 || ms / 1000 > CR_KEEPALIVE_MAX_S) {
		diag_add(p, p->line,
			 "%s = %s: it sets TCP_%s, whole seconds from 1s to %ds; e.g. %s = %s",
			 k->name, q(qb, v), k->off == offsetof(struct cr_lane, keepalive_idle_s)
				 ? "KEEPIDLE" : "KEEPINTVL",
			 CR_KEEPALIVE_MAX_S, k->name, k->example);
		return -1;
	}
	*FIELD(l, k, int) = (int)(ms / 1000);
	return 0;
}

static int parse_bool(const char *v)
{
	static const char *const yes[] = { "on", "yes", "true", "1" };
	static const char *const no[] = { "off", "no", "false", "0" };
	size_t i;

	for (i = 0; i < ARRAY_SIZE(yes); i++) {
		if (str_ieq(v, yes[i]))
			return 1;
		if (str_ieq(v, no[i]))
			return 0;
	}
	return -1;
}

static int set_bool(struct parse *p, struct cr_lane *l, const struct lane_key *k, const char *v)
{
	char qb[QMAX + 4];
	int b = parse_bool(v);

	if (b < 0) {
		diag_add(p, p->line, "bad value '%s' for %s; use on or off", q(qb, v), k->name);
		return -1;
	}
	*FIELD(l, k, int) = b;
	return 0;
}

static int set_dscp(struct parse *p, struct cr_lane *l, const struct lane_key *k, const char *v)
{
	unsigned long long n;
	char qb[QMAX + 4];
	int dscp = -1;

	if (str_ieq(v, "ef"))
		dscp = 46;
	else if (lower(v[0]) == 'a' && lower(v[1]) == 'f' && v[2] >= '1' && v[2] <= '4' &&
		 v[3] >= '1' && v[3] <= '3' && !v[4])
		dscp = 8 * (v[2] - '0') + 2 * (v[3] - '0');
	else if (lower(v[0]) == 'c' && lower(v[1]) == 's' && v[2] >= '0' && v[2] <= '7' && !v[3])
		dscp = 8 * (v[2] - '0');
	else if (parse_uint(v, 1, 63, &n) == 0)
		dscp = (int)n;
	if (dscp < 0) {
		diag_add(p, p->line,
			 "bad dscp '%s'; use ef, af11..af43, cs0..cs7 or a number from 0 to 63",
			 q(qb, v));
		return -1;
	}
	l->tos = dscp << 2; /* DSCP is the upper six bits of the TOS / traffic class byte */
	return 0;
}

static int set_bind(struct parse *p, struct cr_lane *l, const struct lane_key *k, const char *v)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&l->bind_addr;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&l->bind_addr;
	char buf[INET6_ADDRSTRLEN + 2], qb[QMAX + 4];
	size_t n = strlen(v);

	memset(&l->bind_addr, 0, sizeof(l->bind_addr));
	if (inet_pton(AF_INET, v, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		l->bind_len = sizeof(*sin);
		l->bind_set = 1;
		return 0;
	}
	if (n > 2 && v[0] == '[' && v[n - 1] == ']' && n - 2 < sizeof(buf)) {
		memcpy(buf, v + 1, n - 2);
		buf[n - 2] = '\0';
		v = buf;
	}
	if (inet_pton(AF_INET6, v, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		l->bind_len = sizeof(*sin6);
		l->bind_set = 1;
		return 0;
	}
	diag_add(p, p->line,
		 "bad bind address '%s'; use an IPv4 or IPv6 address without a port "
		 "(e.g. 127.0.0.2 or ::1)", q(qb, v));
	return -1;
}

static int set_min_tls(struct parse *p, struct cr_lane *l, const struct lane_key *k,
		       const char *v)
{
	char qb[QMAX + 4];

	if (v[0] == '1' && v[1] == '.' && v[2] >= '0' && v[2] <= '3' && !v[3]) {
		l->min_tls = 10 + (v[2] - '0');
		return 0;
	}
	diag_add(p, p->line, "bad min_tls '%s'; use 1.0, 1.1, 1.2 or 1.3", q(qb, v));
	return -1;
}

/* A ratio written "20%" or "0.2", at most MAX (as a fraction). */
static int parse_ratio(const char *v, int percent_ok, double max, double *out)
{
	unsigned long long mant;
	const char *e;
	int scale;
	double d;

	if (parse_decimal(v, &mant, &scale, &e) < 0)
		return -EINVAL;
	d = decimal_value(mant, scale);
	if (percent_ok && e[0] == '%' && !e[1])
		d /= 100;
	else if (*e)
		return -EINVAL;
	if (d > max)
		return -ERANGE;
	*out = d;
	return 0;
}

static int set_retry_budget(struct parse *p, struct cr_lane *l, const struct lane_key *k,
			    const char *v)
{
	char qb[QMAX + 4];
	int rc = parse_ratio(v, 1, 1.0, &l->retry_budget_ratio);

	if (rc == -ERANGE && !strchr(v, '%'))
		diag_add(p, p->line, "retry_budget %s is above 1; write a percentage (%s%%) "
			 "or a fraction of 1 (e.g. 0.2)", q(qb, v), v);
	else if (rc == -ERANGE)
		diag_add(p, p->line, "retry_budget %s is above 100%%; use 0%% to 100%%", q(qb, v));
	else if (rc < 0)
		diag_add(p, p->line, "bad retry_budget '%s'; use a percentage or a fraction "
			 "(e.g. 20%% or 0.2)", q(qb, v));
	return rc < 0 ? -1 : 0;
}

static int set_preconnect(struct parse *p, struct cr_lane *l, const struct lane_key *k,
			  const char *v)
{
	char qb[QMAX + 4];

	if (parse_ratio(v, 0, 3.0, &l->preconnect_ratio) < 0) {
		diag_add(p, p->line, "bad preconnect_ratio '%s'; use a number from 0 (off) to 3 "
			 "(e.g. 0.5)", q(qb, v));
		return -1;
	}
	return 0;
}

static int set_prewarm_url(struct parse *p, struct cr_lane *l, const struct lane_key *k,
			   const char *v)
{
	char qb[QMAX + 4];
	const char *s = v;
	size_t n;

	if (strncmp(s, "http://", 7) == 0)
		s += 7;
	else if (strncmp(s, "https://", 8) == 0)
		s += 8;
	else
		s = NULL;
	for (n = 0; s && s[n]; n++)
		if (s[n] <= 0x20 || s[n] >= 0x7f)
			s = NULL;
	if (!s || !*s || s[0] == '/') {
		diag_add(p, p->line, "bad prewarm_url '%s'; use an http:// or https:// URL "
			 "without spaces (e.g. https://api.internal/healthz)", q(qb, v));
		return -1;
	}
	if (str_copy(l->prewarm_url, sizeof(l->prewarm_url), v, strlen(v)) < 0) {
		diag_add(p, p->line, "prewarm_url is too long; at most %zu characters",
			 sizeof(l->prewarm_url) - 1);
		return -1;
	}
	return 0;
}

static int set_prewarm_method(struct parse *p, struct cr_lane *l, const struct lane_key *k,
			      const char *v)
{
	static const char *const methods[] = { "HEAD", "GET", "OPTIONS" };
	char qb[QMAX + 4];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(methods); i++) {
		if (str_ieq(v, methods[i])) {
			strcpy(l->prewarm_method, methods[i]);
			return 0;
		}
	}
	diag_add(p, p->line, "bad prewarm_method '%s'; use HEAD, GET or OPTIONS", q(qb, v));
	return -1;
}

/* ------------------------------------------------------------------------ */
/* lists: match, hosts, prewarm */

/* Calls FN on each comma-separated, trimmed item of V. Returns the number of
 * errors; reports an empty list or an empty item. */
typedef int (*item_fn)(struct parse *p, struct cr_lane *l, const char *item);

static int each_item(struct parse *p, struct cr_lane *l, const struct lane_key *k, const char *v,
		     item_fn fn)
{
	char item[CR_HOST_MAX + 32], qb[QMAX + 4];
	const char *s = v, *e, *t;
	int errors = 0, items = 0;

	for (;;) {
		while (is_space(*s))
			s++;
		e = strchr(s, ',');
		if (!e)
			e = s + strlen(s);
		t = e;
		while (t > s && is_space(t[-1]))
			t--;
		if (t == s) {
			if (*e || items) {
				diag_add(p, p->line, "empty entry in %s list '%s'; check the commas",
					 k->name, q(qb, v));
				return errors + 1;
			}
			if (!*e)
				break;
		} else if (str_copy(item, sizeof(item), s, (size_t)(t - s)) < 0) {
			memcpy(item, s, sizeof(item) - 1);
			item[sizeof(item) - 1] = '\0';
			diag_add(p, p->line, "%s entry '%s' is too long", k->name, q(qb, item));
			errors++;
		} else {
			items++;
			if (fn(p, l, item) < 0)
				errors++;
		}
		if (!*e)
			break;
		s = e + 1;
	}
	if (!items && !errors) {
		diag_add(p, p->line, "empty %s list in [lane %s]; e.g. %s = %s", k->name, l->name,
			 k->name, k->example);
		errors++;
	}
	return errors;
}

static int match_item(struct parse *p, struct cr_lane *l, const char *g)
{
	char qb[QMAX + 4];
	size_t i, n = strlen(g);
	int j;

	for (i = 0; i < n; i++) {
		if (!is_alnum(g[i]) && !strchr("._~:/@=*?-", g[i])) {
			diag_add(p, p->line, "bad key glob '%s' in match: '%c' is not allowed; use "
				 "A-Z a-z 0-9 . _ ~ : / @ = - and the wildcards * ?", q(qb, g),
				 (g[i] >= 0x20 && g[i] < 0x7f) ? g[i] : '?');
			return -1;
		}
	}
	if (n >= CR_KEY_MAX) {
		diag_add(p, p->line, "key glob '%s' is %zu characters; at most %d", q(qb, g), n,
			 CR_KEY_MAX - 1);
		return -1;
	}
	for (j = 0; j < l->nmatch; j++) {
		if (strcmp(l->match[j], g) == 0) {
			diag_add(p, p->line, "key glob '%s' is listed twice in [lane %s]; keep one",
				 q(qb, g), l->name);
			return -1;
		}
	}
	if (l->nmatch == CR_MAX_MATCH) {
		diag_add(p, p->line, "too many match globs in [lane %s] (at most %d); "
			 "use a wider glob", l->name, CR_MAX_MATCH);
		return -1;
	}
	memcpy(l->match[l->nmatch++], g, n + 1);
	return 0;
}

/* "443" -> 443; ports are 1..65535, "any port" is written by omitting it. */
static int parse_port(const char *s, int *port)
{
	unsigned long long n;

	if (parse_uint(s, 0, 65535, &n) < 0 || n == 0)
		return -1;
	*port = (int)n;
	return 0;
}

static int prefix_ok(const uint8_t *a, int alen, int prefix)
{
	int i;

	for (i = prefix; i < alen * 8; i++)
		if (a[i / 8] & (0x80 >> (i % 8)))
			return 0;
	return 1;
}

static int looks_ipv4(const char *s)
{
	if (!is_digit(*s))
		return 0;
	for (; *s && *s != '/'; s++)
		if (!is_digit(*s) && *s != '.')
			return 0;
	return 1;
}

static int name_chars_ok(const char *s, int glob)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (!is_alnum(*s) && !strchr("._-", *s) && !(glob && strchr("*?", *s)))
			return 0;
	return 1;
}

/* Splits "[v6]:port", "[v6]", "v4:port", "name:port" into HOST and PORT
 * (PORT NULL when absent); brackets removed. V6 gets 1 when bracketed.
 * Works in place on S. */
static int split_hostport(char *s, char **host, char **port, int *v6)
{
	char *c;

	*v6 = 0;
	*port = NULL;
	if (s[0] == '[') {
		c = strchr(s, ']');
		if (!c)
			return -1;
		*c = '\0';
		*host = s + 1;
		*v6 = 1;
		c++;
		if (*c == '/') { /* "[fd00::]/8:443": move the prefix inside */
			char *pc = strchr(c, ':');

			if (pc)
				*pc = '\0';
			memmove(c - 1, c, strlen(c) + 1);
			if (pc) {
				*port = pc + 1;
				return **port ? 0 : -1;
			}
			return 0;
		}
		if (*c == ':') {
			*port = c + 1;
			return 0;
		}
		return *c ? -1 : 0;
	}
	*host = s;
	c = strchr(s, ':');
	if (c) {
		if (strchr(c + 1, ':'))
			return -2; /* an unbracketed IPv6 address */
		*c = '\0';
		*port = c + 1;
	}
	return 0;
}

static int host_item(struct parse *p, struct cr_lane *l, const char *item)
{
	struct cr_hostrule r;
	char buf[CR_HOST_MAX + 32], qb[QMAX + 4], *host, *port, *slash;
	unsigned long long n;
	int v6, rc, alen;

	memset(&r, 0, sizeof(r));
	strcpy(buf, item); /* each_item bounds ITEM to sizeof(buf) */
	rc = split_hostport(buf, &host, &port, &v6);
	if (rc == -2) {
		diag_add(p, p->line, "host rule '%s': put IPv6 addresses in brackets, e.g. [::1] or "
			 "[::1]:443", q(qb, item));
		return -1;
	}
	if (rc < 0 || (port && parse_port(port, &r.port) < 0)) {
		diag_add(p, p->line, "bad host rule '%s'; use ADDR[/BITS][:PORT], [V6][/BITS][:PORT], "
			 "a name glob[:PORT] or *:PORT, with a port from 1 to 65535", q(qb, item));
		return -1;
	}
	if (!*host) {
		diag_add(p, p->line, "host rule '%s' has no host; write *:%s for any host",
			 q(qb, item), port ? port : "PORT");
		return -1;
	}
	if (v6 || looks_ipv4(host)) {
		r.family = v6 ? AF_INET6 : AF_INET;
		alen = v6 ? 16 : 4;
		r.prefix = alen * 8;
		slash = strchr(host, '/');
		if (slash) {
			*slash++ = '\0';
			if (parse_uint(slash, 0, (unsigned long long)alen * 8, &n) < 0) {
				diag_add(p, p->line, "bad prefix length in host rule '%s'; use /0 to /%d",
					 q(qb, item), alen * 8);
				return -1;
			}
			r.prefix = (int)n;
		}
		if (inet_pton(r.family, host, r.addr) != 1) {
			diag_add(p, p->line, "bad %s address in host rule '%s'", v6 ? "IPv6" : "IPv4",
				 q(qb, item));
			return -1;
		}
		if (!prefix_ok(r.addr, alen, r.prefix)) {
			diag_add(p, p->line, "host rule '%s' has bits set beyond /%d; write the "
				 "network address", q(qb, item), r.prefix);
			return -1;
		}
	} else {
		r.family = AF_UNSPEC;
		if (!name_chars_ok(host, 1)) {
			diag_add(p, p->line, "bad host name glob in host rule '%s'; use A-Z a-z 0-9 . _ "
				 "- and the wildcards * ?", q(qb, item));
			return -1;
		}
		if (str_copy(r.name, sizeof(r.name), host, strlen(host)) < 0) {
			diag_add(p, p->line, "host name in rule '%s' is too long", q(qb, item));
			return -1;
		}
	}
	if (l->nhosts == CR_MAX_HOSTS) {
		diag_add(p, p->line, "too many host rules in [lane %s] (at most %d); use CIDRs or "
			 "name globs", l->name, CR_MAX_HOSTS);
		return -1;
	}
	l->hosts[l->nhosts++] = r;
	return 0;
}

static int prewarm_item(struct parse *p, struct cr_lane *l, const char *item)
{
	struct cr_prewarm w;
	char buf[CR_HOST_MAX + 32], qb[QMAX + 4], qb2[QMAX + 4], *host, *port, *star;
	unsigned long long n = 1;
	uint8_t addr[16];
	int v6, i;

	memset(&w, 0, sizeof(w));
	strcpy(buf, item);
	star = strchr(buf, '*');
	if (star) {
		char *t = star;

		*star++ = '\0';
		while (t > buf && is_space(t[-1]))
			*--t = '\0';
		while (is_space(*star))
			star++;
		if (parse_uint(star, 0, CR_PREWARM_COUNT_MAX, &n) < 0 || n == 0) {
			diag_add(p, p->line, "bad count in prewarm target '%s'; use HOST:PORT*N with N "
				 "from 1 to %d", q(qb, item), CR_PREWARM_COUNT_MAX);
			return -1;
		}
	}
	if (split_hostport(buf, &host, &port, &v6) != 0 || !*host || strchr(host, '/')) {
		diag_add(p, p->line, "bad prewarm target '%s'; use HOST:PORT*N, [V6]:PORT*N "
			 "(e.g. api.internal:443*4)", q(qb, item));
		return -1;
	}
	if (!port) {
		diag_add(p, p->line, "prewarm target '%s' needs a port, e.g. %s:443", q(qb, item),
			 q(qb2, host));
		return -1;
	}
	if (parse_port(port, &w.port) < 0) {
		diag_add(p, p->line, "bad port in prewarm target '%s'; use 1 to 65535", q(qb, item));
		return -1;
	}
	if (v6 ? inet_pton(AF_INET6, host, addr) != 1
	       : (looks_ipv4(host) ? inet_pton(AF_INET, host, addr) != 1
				   : !name_chars_ok(host, 0))) {
		diag_add(p, p->line, "bad host in prewarm target '%s'; use a host name, an IPv4 "
			 "address or [IPv6] (no wildcards)", q(qb, item));
		return -1;
	}
	if (str_copy(w.host, sizeof(w.host), host, strlen(host)) < 0) {
		diag_add(p, p->line, "host in prewarm target '%s' is too long", q(qb, item));
		return -1;
	}
	w.count = (int)n;
	for (i = 0; i < l->nprewarm; i++) {
		if (l->prewarm[i].port == w.port && strcmp(l->prewarm[i].host, w.host) == 0) {
			diag_add(p, p->line, "prewarm target '%s' is listed twice; raise its count "
				 "instead (HOST:PORT*N)", q(qb, item));
			return -1;
		}
	}
	if (l->nprewarm == CR_MAX_PREWARM) {
		diag_add(p, p->line, "too many prewarm targets in [lane %s] (at most %d)", l->name,
			 CR_MAX_PREWARM);
		return -1;
	}
	l->prewarm[l->nprewarm++] = w;
	return 0;
}

static int set_match(struct parse *p, struct cr_lane *l, const struct lane_key *k, const char *v)
{
	if (strcmp(l->name, "default") == 0) {
		diag_add(p, p->line, "match in [lane default]: the default lane is the fallback for "
			 "keys no other lane matches; remove match, or rename the lane");
		return -1;
	}
	return each_item(p, l, k, v, match_item) ? -1 : 0;
}

static int set_hosts(struct parse *p, struct cr_lane *l, const struct lane_key *k, const char *v)
{
	if (strcmp(l->name, "default") == 0) {
		diag_add(p, p->line, "hosts in [lane default]: the default lane is the fallback for "
			 "every destination; remove hosts, or rename the lane");
		return -1;
	}
	return each_item(p, l, k, v, host_item) ? -1 : 0;
}

static int set_prewarm(struct parse *p, struct cr_lane *l, const struct lane_key *k,
		       const char *v)
{
	return each_item(p, l, k, v, prewarm_item) ? -1 : 0;
}

/* ------------------------------------------------------------------------ */
/* key tables */

#define LOFF(f) offsetof(struct cr_lane, f)

static const struct lane_key lane_keys[LK__COUNT] = {
	[LK_MATCH] = { "match", set_match, 0, F_INT, 0, 0, KEY_LIST, "payment-gateway/*" },
	[LK_HOSTS] = { "hosts", set_hosts, 0, F_INT, 0, 0, KEY_LIST, "10.0.0.0/8:443" },
	[LK_MAX_CONNS_PER_HOST] = { "max_conns_per_host", set_int, LOFF(max_conns_per_host),
				    F_LONG, 0, 1000000, 0, "100" },
	[LK_MAX_IDLE_PER_HOST] = { "max_idle_per_host", set_int, LOFF(max_idle_per_host), F_LONG,
				   0, 1000000, 0, "8" },
	[LK_IDLE_TIMEOUT] = { "idle_timeout", set_dur, LOFF(idle_timeout_ms), F_LONG, 0, 0, 0,
			      "90s" },
	[LK_MAX_LIFETIME] = { "max_lifetime", set_dur, LOFF(max_lifetime_ms), F_LONG, 0, 0, 0,
			      "10m" },
	[LK_CONNECT_TIMEOUT] = { "connect_timeout", set_dur, LOFF(connect_timeout_ms), F_LONG, 0,
				 0, 0, "5s" },
	[LK_RESPONSE_HEADER_TIMEOUT] = { "response_header_timeout", set_dur,
					 LOFF(response_header_timeout_ms), F_LONG, 0, 0, 0, "10s" },
	[LK_REQUEST_TIMEOUT] = { "request_timeout", set_dur, LOFF(request_timeout_ms), F_LONG, 0,
				 0, 0, "30s" },
	[LK_QUEUE_TIMEOUT] = { "queue_timeout", set_dur, LOFF(queue_timeout_ms), F_LONG, 0, 0, 0,
			       "500ms" },
	[LK_KEEPALIVE] = { "keepalive", set_dursec, LOFF(keepalive_idle_s), F_INT, 0, 0, 0,
			   "30s" },
	[LK_KEEPALIVE_INTERVAL] = { "keepalive_interval", set_dursec,
				    LOFF(keepalive_interval_s), F_INT, 0, 0, 0, "10s" },
	[LK_KEEPALIVE_COUNT] = { "keepalive_count", set_int, LOFF(keepalive_count), F_INT, 1,
				 CR_KEEPCNT_MAX, 0, "3" },
	[LK_NODELAY] = { "nodelay", set_bool, LOFF(nodelay), F_INT, 0, 0, 0, "on" },
	[LK_TOS] = { "tos", set_int, LOFF(tos), F_INT, 0, 255, KEY_HEX, "0xb8" },
	[LK_DSCP] = { "dscp", set_dscp, 0, F_INT, 0, 0, 0, "ef" },
	[LK_PRIORITY] = { "priority", set_int, LOFF(priority), F_LONG, 0, INT_MAX, 0, "6" },
	[LK_MARK] = { "mark", set_int, LOFF(mark), F_LLONG, 0, UINT32_MAX, KEY_HEX, "7" },
	[LK_BIND] = { "bind", set_bind, 0, F_INT, 0, 0, 0, "127.0.0.2" },
	[LK_MIN_TLS] = { "min_tls", set_min_tls, 0, F_INT, 0, 0, 0, "1.2" },
	[LK_RETRIES] = { "retries", set_int, LOFF(retries), F_INT, 0, 10, 0, "2" },
	[LK_RETRY_BUDGET] = { "retry_budget", set_retry_budget, 0, F_INT, 0, 0, 0, "20%" },
	[LK_RETRY_BUDGET_MIN] = { "retry_budget_min", set_int, LOFF(retry_budget_min_per_s),
				  F_INT, 0, 1000000, 0, "3" },
	[LK_PREWARM] = { "prewarm", set_prewarm, 0, F_INT, 0, 0, KEY_LIST, "api.internal:443*4" },
	[LK_PREWARM_URL] = { "prewarm_url", set_prewarm_url, 0, F_INT, 0, 0, 0,
			     "https://api.internal/healthz" },
	[LK_PREWARM_METHOD] = { "prewarm_method", set_prewarm_method, 0, F_INT, 0, 0, 0,
				"HEAD" },
	[LK_PRECONNECT_RATIO] = { "preconnect_ratio", set_preconnect, 0, F_INT, 0, 0, 0, "0.5" },
	[LK_WARM_MAX_IDLE] = { "warm_max_idle", set_dur, LOFF(warm_max_idle_ms), F_LONG, 0, 0, 0,
			       "15s" },
};

static const char *const global_keys[GK__COUNT] = { [GK_LOG] = "log", [GK_METRICS] = "metrics" };

/* The closest of N names to NAME within edit distance 2, or NULL. */
static const char *closest(const char *name, const char *const *names, size_t n, size_t stride)
{
	const char *best = NULL;
	int bestd = 3, d;
	size_t i;

	for (i = 0; i < n; i++) {
		const char *c = *(const char *const *)(const void *)((const char *)names + i * stride);

		d = edit_distance(name, c);
		if (d < bestd) {
			bestd = d;
			best = c;
		}
	}
	return best;
}

static const struct lane_key *find_lane_key(const char *name)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(lane_keys); i++)
		if (strcmp(lane_keys[i].name, name) == 0)
			return &lane_keys[i];
	return NULL;
}

static int find_global_key(const char *name)
{
	int i;

	for (i = 0; i < GK__COUNT; i++)
		if (strcmp(global_keys[i], name) == 0)
			return i;
	return -1;
}

static void unknown_key(struct parse *p, const char *name, const char *where, int in_lane)
{
	char qb[QMAX + 4];
	const char *s;

	if (in_lane && find_global_key(name) >= 0) {
		diag_add(p, p->line, "'%s' in %s belongs in [global]; move it there", name, where);
		return;
	}
	if (!in_lane && find_lane_key(name)) {
		diag_add(p, p->line, "'%s' in %s is a lane setting; put it in a [lane NAME] section",
			 name, where);
		return;
	}
	if (in_lane)
		s = closest(name, &lane_keys[0].name, ARRAY_SIZE(lane_keys), sizeof(lane_keys[0]));
	else
		s = closest(name, global_keys, GK__COUNT, sizeof(global_keys[0]));
	if (s)
		diag_add(p, p->line, "unknown key '%s' in %s; did you mean '%s'?", q(qb, name),
			 where, s);
	else
		diag_add(p, p->line, "unknown key '%s' in %s; see docs/config.md for the keys",
			 q(qb, name), where);
}

/* ------------------------------------------------------------------------ */
/* sections */

static void section_end(struct parse *p)
{
	struct cr_lane *l = p->lane;

	if (p->sec == SEC_LANE && l) {
		/* queue_timeout follows connect_timeout wherever in the section that was set */
		if (l->queue_timeout_ms < 0)
			l->queue_timeout_ms = l->connect_timeout_ms;
	}
	p->sec = SEC_NONE;
	p->lane = NULL;
}

static int lane_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= CR_NAME_MAX)
		return 0;
	for (; *s; s++)
		if (!is_alnum(*s) && !strchr("_.-", *s))
			return 0;
	return 1;
}

static void lane_begin(struct parse *p, const char *name)
{
	struct cr_config *cfg = p->cfg;
	struct cr_lane *l;
	char qb[QMAX + 4];
	int i;

	p->sec = SEC_SKIP; /* until the lane is known to be good: no cascade of errors */
	if (!lane_name_ok(name)) {
		diag_add(p, p->line, "bad lane name '%s'; use 1 to %d of A-Z a-z 0-9 _ . -",
			 q(qb, name), CR_NAME_MAX - 1);
		return;
	}
	i = cr_config_find_lane(cfg, name);
	if (i >= 0) {
		diag_add(p, p->line, "duplicate [lane %s] (first on line %d); rename or merge them",
			 name, cfg->lanes[i].line);
		return;
	}
	/* keep a slot for the implicit default lane */
	if (cfg->nlanes == CR_MAX_LANES ||
	    (cfg->nlanes == CR_MAX_LANES - 1 && !p->have_default && strcmp(name, "default"))) {
		diag_add(p, p->line, "too many lanes (at most %d, [lane default] included); merge "
			 "lanes with match globs", CR_MAX_LANES);
		return;
	}
	l = &cfg->lanes[cfg->nlanes++];
	lane_defaults(l);
	strcpy(l->name, name);
	l->line = p->line;
	if (strcmp(name, "default") == 0)
		p->have_default = 1;
	memset(p->seen, 0, sizeof(p->seen));
	p->lane = l;
	p->sec = SEC_LANE;
}

/* INNER is the header between the brackets, trimmed. */
static void section_begin(struct parse *p, char *inner)
{
	static const char *const names[] = { "global", "threads", "lane" };
	char qb[QMAX + 4], qb2[QMAX + 4];
	const char *s;
	char *rest;

	section_end(p);
	p->sec = SEC_SKIP;
	rest = inner;
	while (*rest && !is_space(*rest))
		rest++;
	if (*rest) {
		*rest++ = '\0';
		while (is_space(*rest))
			rest++;
	}
	if (strcmp(inner, "lane") == 0) {
		if (!*rest)
			diag_add(p, p->line, "[lane] needs a name: [lane NAME]");
		else
			lane_begin(p, rest);
		return;
	}
	if ((strcmp(inner, "global") == 0 || strcmp(inner, "threads") == 0)) {
		if (*rest)
			diag_add(p, p->line, "[%s] takes no name; remove '%s'", inner, q(qb, rest));
		else
			p->sec = inner[0] == 'g' ? SEC_GLOBAL : SEC_THREADS;
		return;
	}
	s = closest(inner, names, ARRAY_SIZE(names), sizeof(names[0]));
	if (s)
		diag_add(p, p->line, "unknown section [%s%s%s]; did you mean [%s%s%s]?", q(qb, inner),
			 *rest ? " " : "", q(qb2, rest), s, *rest ? " " : "", q(qb2, rest));
	else
		diag_add(p, p->line, "unknown section [%s%s%s]; use [global], [threads] or "
			 "[lane NAME]", q(qb, inner), *rest ? " " : "", q(qb2, rest));
}

/* ------------------------------------------------------------------------ */
/* pairs */

static void lane_pair(struct parse *p, const char *name, const char *v)
{
	const struct lane_key *k = find_lane_key(name);
	char where[CR_NAME_MAX + 8];
	int id;

	snprintf(where, sizeof(where), "[lane %s]", p->lane->name);
	if (!k) {
		unknown_key(p, name, where, 1);
		return;
	}
	id = (int)(k - lane_keys);
	if (!(k->flags & KEY_LIST) && p->seen[id]) {
		diag_add(p, p->line, "%s set twice in %s (first on line %d); keep one", name, where,
			 p->seen[id]);
		return;
	}
	if (!p->seen[id])
		p->seen[id] = p->line;
	if (id == LK_TOS || id == LK_DSCP) {
		int other = id == LK_TOS ? LK_DSCP : LK_TOS;

		if (p->seen[other]) {
			diag_add(p, p->line, "tos and dscp both set; keep one");
			return;
		}
	}
	if (!*v && !(k->flags & KEY_LIST)) {
		diag_add(p, p->line, "%s has no value; e.g. %s = %s", name, name, k->example);
		return;
	}
	k->set(p, p->lane, k, v);
}

static int ip_literal_port(const char *s)
{
	char buf[INET6_ADDRSTRLEN + 16], *host, *port;
	uint8_t a[16];
	int v6, pt;

	if (str_copy(buf, sizeof(buf), s, strlen(s)) < 0)
		return -1;
	if (split_hostport(buf, &host, &port, &v6) < 0 || !port || parse_port(port, &pt) < 0)
		return -1;
	return inet_pton(v6 ? AF_INET6 : AF_INET, host, a) == 1 ? 0 : -1;
}

static void global_pair(struct parse *p, const char *name, const char *v)
{
	static const char *const levels[] = { "error", "warn", "info", "debug" };
	struct cr_config *cfg = p->cfg;
	char qb[QMAX + 4];
	int id = find_global_key(name), i;

	if (id < 0) {
		unknown_key(p, name, "[global]", 0);
		return;
	}
	if (p->gseen[id]) {
		diag_add(p, p->line, "%s set twice in [global] (first on line %d); keep one", name,
			 p->gseen[id]);
		return;
	}
	p->gseen[id] = p->line;
	if (id == GK_LOG) {
		for (i = 0; i < (int)ARRAY_SIZE(levels); i++) {
			if (str_ieq(v, levels[i])) {
				cfg->log_level = CR_LL_ERROR + i;
				return;
			}
		}
		diag_add(p, p->line, "bad log level '%s'; use error, warn, info or debug", q(qb, v));
		return;
	}
	/* metrics */
	if (str_ieq(v, "off")) {
		cfg->metrics[0] = '\0';
		return;
	}
	if (strncmp(v, "unix:", 5) == 0) {
		const char *path = v + 5, *c;
		size_t len = strlen(path);

		for (c = path; *c; c++) {
			if (*c == '%' && c[1] != 'p') {
				diag_add(p, p->line, "metrics path '%s': only %%p (the process id) is "
					 "expanded; remove the other '%%'", q(qb, path));
				return;
			}
			if (*c == '%')
				len += CR_PID_DIGITS - 2, c++;
		}
		if (path[0] != '/' && path[0] != '@') {
			diag_add(p, p->line, "metrics socket '%s' is not an absolute path; use "
				 "unix:/run/connroute/%%p.sock", q(qb, path));
			return;
		}
		if (len > CR_SUN_PATH_MAX) {
			diag_add(p, p->line, "metrics socket path is too long for a unix socket (at "
				 "most %d bytes with %%p expanded); use a shorter path",
				 CR_SUN_PATH_MAX);
			return;
		}
	} else if (ip_literal_port(v) < 0) {
		diag_add(p, p->line, "bad metrics address '%s'; use IP:PORT, [IPv6]:PORT or "
			 "unix:/PATH (e.g. 127.0.0.1:9464)", q(qb, v));
		return;
	}
	if (str_copy(cfg->metrics, sizeof(cfg->metrics), v, strlen(v)) < 0)
		diag_add(p, p->line, "metrics value is too long; at most %zu characters",
			 sizeof(cfg->metrics) - 1);
}

/* A routing key: [A-Za-z0-9._~:/@=-] and optional "+idempotent" (key.h). */
static int routing_key_ok(const char *k)
{
	const char *plus = strchr(k, '+');
	size_t n = plus ? (size_t)(plus - k) : strlen(k), i;

	if (n == 0 || strlen(k) >= CR_KEY_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if (!is_alnum(k[i]) && !strchr("._~:/@=-", k[i]))
			return 0;
	while (plus) {
		const char *next = strchr(plus + 1, '+');
		size_t fl = next ? (size_t)(next - plus - 1) : strlen(plus + 1);

		if (fl != 10 || strncmp(plus + 1, "idempotent", 10) != 0)
			return 0;
		plus = next;
	}
	return 1;
}

static void thread_pair(struct parse *p, const char *name, const char *v)
{
	struct cr_config *cfg = p->cfg;
	struct cr_threadrule *t;
	char qb[QMAX + 4], qb2[QMAX + 4];
	size_t n = strlen(name), i;
	int j;

	if (n >= sizeof(t->glob)) {
		diag_add(p, p->line, "thread-name glob '%s' is %zu characters; thread names have at "
			 "most 15, shorten it", q(qb, name), n);
		return;
	}
	for (i = 0; i < n; i++) {
		if (name[i] < 0x20 || name[i] >= 0x7f) {
			diag_add(p, p->line, "thread-name glob '%s' has a control or non-ASCII byte",
				 q(qb, name));
			return;
		}
	}
	if (!routing_key_ok(v)) {
		diag_add(p, p->line, "bad routing key '%s' for thread rule '%s'; use 1 to %d of "
			 "A-Z a-z 0-9 . _ ~ : / @ = - (e.g. reports/batch), optionally +idempotent",
			 q(qb, v), q(qb2, name), CR_KEY_MAX - 1);
		return;
	}
	for (j = 0; j < cfg->nthreads; j++) {
		if (strcmp(cfg->threads[j].glob, name) == 0) {
			diag_add(p, p->line, "thread rule '%s' repeated (first on line %d); keep one",
				 name, cfg->threads[j].line);
			return;
		}
	}
	if (cfg->nthreads == CR_MAX_THREADS) {
		diag_add(p, p->line, "too many thread rules (at most %d); use wider globs",
			 CR_MAX_THREADS);
		return;
	}
	t = &cfg->threads[cfg->nthreads++];
	memcpy(t->glob, name, n + 1);
	strcpy(t->key, v);
	t->line = p->line;
}

static int on_pair(void *user, const char *section, const char *name, const char *value)
{
	struct parse *p = user;
	char qb[QMAX + 4];

	(void)section; /* sections are tracked by read_line; inih only sees "[s]" */
	if (!name || !value)
		return 1; /* a build calling back on new sections, or with no-value keys */
	if (!*name) {
		diag_add(p, p->line, "missing key name before '='");
		return 1;
	}
	switch (p->sec) {
	case SEC_NONE:
		diag_add(p, p->line, "key '%s' is outside any section; put it under [global], "
			 "[threads] or [lane NAME]", q(qb, name));
		break;
	case SEC_GLOBAL:
		global_pair(p, name, value);
		break;
	case SEC_THREADS:
		thread_pair(p, name, value);
		break;
	case SEC_LANE:
		lane_pair(p, name, value);
		break;
	case SEC_SKIP:
		break;
	}
	/* errors are in *diag; a 0 here would only change inih's return value */
	return 1;
}

/* ------------------------------------------------------------------------ */
/* the reader: one physical line per call (see the top of this file) */

/* Length of S before an inline comment, by inih's rule (a ';' after
 * whitespace), trailing whitespace dropped. */
static size_t content_len(const char *s, size_t n)
{
	size_t i;

	for (i = 1; i < n; i++)
		if (s[i] == ';' && is_space(s[i - 1]))
			break;
	while (i > 0 && is_space(s[i - 1]))
		i--;
	return i;
}

static void header_line(struct parse *p, const char *s, size_t n)
{
	char inner[256], qb[QMAX + 4];
	size_t i, j, b, e;

	/* ']' or an inline comment, whichever comes first */
	for (i = 1; i < n && s[i] != ']' && !(s[i] == ';' && is_space(s[i - 1])); i++)
		;
	if (i == n || s[i] != ']') {
		section_end(p);
		p->sec = SEC_SKIP;
		diag_add(p, p->line, "section header without ']'; write [global], [threads] or "
			 "[lane NAME]");
		return;
	}
	for (j = i + 1; j < n && is_space(s[j]); j++)
		;
	if (j < n && s[j] != ';' && s[j] != '#') {
		section_end(p);
		p->sec = SEC_SKIP;
		memcpy(inner, s + j, n - j < sizeof(inner) ? n - j : sizeof(inner) - 1);
		inner[n - j < sizeof(inner) ? n - j : sizeof(inner) - 1] = '\0';
		diag_add(p, p->line, "unexpected '%s' after the section header; remove it or make it "
			 "a comment with ';'", q(qb, inner));
		return;
	}
	for (b = 1; b < i && is_space(s[b]); b++)
		;
	for (e = i; e > b && is_space(s[e - 1]); e--)
		;
	if (e - b >= sizeof(inner)) {
		section_end(p);
		p->sec = SEC_SKIP;
		diag_add(p, p->line, "section header is too long; lane names have at most %d "
			 "characters", CR_NAME_MAX - 1);
		return;
	}
	memcpy(inner, s + b, e - b);
	inner[e - b] = '\0';
	section_begin(p, inner);
}

static char *read_line(char *buf, int num, void *stream)
{
	struct parse *p = stream;
	const char *s, *e, *nl;
	size_t n;

	if (p->p >= p->end || num < 8)
		return NULL;
	s = p->p;
	nl = memchr(s, '\n', (size_t)(p->end - s));
	e = nl ? nl : p->end;
	p->p = nl ? nl + 1 : p->end;
	p->line++;
	buf[0] = '\0';

	if (e > s && e[-1] == '\r')
		e--;
	if (p->line == 1 && e - s >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
		s += 3;
	while (s < e && is_space(*s))
		s++;
	if (memchr(s, '\0', (size_t)(e - s))) {
		diag_add(p, p->line, "line contains a NUL byte; is this a text file?");
		return buf;
	}
	/* comments never reach inih, so they may be as long as they like */
	if (s == e || *s == ';' || *s == '#')
		return buf;
	n = content_len(s, (size_t)(e - s));
	if (n > (size_t)num - 1) {
		diag_add(p, p->line, "line is too long (%zu characters before any comment, at most "
			 "%d); split a long list over several lines with the same key", n, num - 1);
		if (*s == '[') {
			section_end(p);
			p->sec = SEC_SKIP;
		}
		return buf;
	}
	if (*s == '[') {
		header_line(p, s, n);
		memcpy(buf, "[s]", 4); /* resets inih's section state, see top of file */
		return buf;
	}
	if (!memchr(s, '=', n) && !memchr(s, ':', n)) {
		char line[QMAX + 4];

		memcpy(line, s, n < QMAX ? n : QMAX);
		line[n < QMAX ? n : QMAX] = '\0';
		diag_add(p, p->line, "expected 'key = value', got '%s'%s", q(line, line),
			 n > QMAX ? "..." : "");
		return buf;
	}
	memcpy(buf, s, n);
	buf[n] = '\0';
	return buf;
}

/* ------------------------------------------------------------------------ */
/* entry points */

static int parse_text(struct parse *p, const char *text, size_t len)
{
	struct cr_config *cfg = p->cfg;
	int rc, errors_before = p->diag->n;

	p->p = text;
	p->end = text + len;
	rc = ini_parse_stream(read_line, p, on_pair, p);
	section_end(p);
	if (rc == -2)
		diag_add(p, 0, "out of memory while parsing");
	else if (rc != 0 && p->diag->n == errors_before)
		diag_add(p, rc > 0 ? rc : 0, "syntax error"); /* not expected: read_line pre-checks */

	if (!p->have_default) {
		if (cfg->nlanes < CR_MAX_LANES) {
			lane_implicit(&cfg->lanes[cfg->nlanes++]);
		} else {
			diag_add(p, 0, "no room for the implicit [lane default] (at most %d lanes)",
				 CR_MAX_LANES);
		}
	}
	cr_config_finish(cfg);
	return p->diag->n ? -1 : 0;
}

static void parse_init(struct parse *p, struct cr_config *cfg, struct cr_diag *diag,
		       const char *file)
{
	memset(p, 0, sizeof(*p));
	p->cfg = cfg;
	p->diag = diag;
	p->file = file;
	p->sec = SEC_NONE;
	diag->n = 0;
	config_init(cfg);
}

int cr_config_load_string(const char *text, const char *name, struct cr_config *cfg,
			  struct cr_diag *diag)
{
	struct cr_diag scratch;
	struct parse p;

	parse_init(&p, cfg, diag ? diag : &scratch, name ? name : "<string>");
	return parse_text(&p, text ? text : "", text ? strlen(text) : 0);
}

int cr_config_load_file(const char *path, struct cr_config *cfg, struct cr_diag *diag)
{
	struct cr_diag scratch;
	struct parse p;
	char *buf = NULL, *nb, eb[128];
	size_t len = 0, cap = 0, got;
	FILE *f;
	int rc;

	parse_init(&p, cfg, diag ? diag : &scratch, path ? path : "(null)");
	if (!path || !*path) {
		diag_add(&p, 0, "no config file given; set CONNROUTE_CONFIG");
		return -1;
	}
	if (str_copy(cfg->path, sizeof(cfg->path), path, strlen(path)) < 0) {
		diag_add(&p, 0, "path is too long (at most %zu bytes)", sizeof(cfg->path) - 1);
		return -1;
	}
	/* O_CLOEXEC: the host process may fork+exec while we read. O_NONBLOCK:
	 * a FIFO (or a device) must never block the host's start-up; only a
	 * regular file is read. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		diag_add(&p, 0, "cannot open: %s; check CONNROUTE_CONFIG",
			 strerror_r(errno, eb, sizeof(eb)));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		cr_sys_close(fd);
		diag_add(&p, 0, "not a regular file; point CONNROUTE_CONFIG at a config file");
		return -1;
	}
	f = fdopen(fd, "r");
	if (!f) {
		cr_sys_close(fd);
		diag_add(&p, 0, "cannot open: %s; check CONNROUTE_CONFIG",
			 strerror_r(errno, eb, sizeof(eb)));
		return -1;
	}
	for (;;) {
		if (len == cap) {
			cap = cap ? cap * 2 : 4096;
			if (cap > CR_FILE_MAX + 1)
				cap = CR_FILE_MAX + 1;
			if (len == cap) {
				fclose(f);
				free(buf);
				diag_add(&p, 0, "larger than %d KiB; a connroute config is a few KB, "
					 "check the path", CR_FILE_MAX / 1024);
				return -1;
			}
			nb = realloc(buf, cap);
			if (!nb) {
				fclose(f);
				free(buf);
				diag_add(&p, 0, "out of memory reading the file");
				return -1;
			}
			buf = nb;
		}
		got = fread(buf + len, 1, cap - len, f);
		len += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		int err = errno;

		fclose(f);
		free(buf);
		diag_add(&p, 0, "cannot read: %s; check CONNROUTE_CONFIG",
			 strerror_r(err, eb, sizeof(eb)));
		return -1;
	}
	fclose(f);
	rc = parse_text(&p, buf ? buf : "", len);
	free(buf);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* dump */

static const char *fmt_dur(char *b, size_t n, long ms)
{
	if (ms == 0)
		snprintf(b, n, "0");
	else if (ms % 60000 == 0)
		snprintf(b, n, "%ldm", ms / 60000);
	else if (ms % 1000 == 0)
		snprintf(b, n, "%lds", ms / 1000);
	else
		snprintf(b, n, "%ldms", ms);
	return b;
}

/* x.yy without printf's locale-dependent decimal point */
static const char *fmt_fixed(char *b, size_t n, double v, const char *suffix)
{
	long c = (long)(v * 100 + 0.5);

	if (c % 100 == 0)
		snprintf(b, n, "%ld%s", c / 100, suffix);
	else if (c % 10 == 0)
		snprintf(b, n, "%ld.%ld%s", c / 100, (c / 10) % 10, suffix);
	else
		snprintf(b, n, "%ld.%02ld%s", c / 100, c % 100, suffix);
	return b;
}

static void dump_hostrule(const struct cr_hostrule *r, FILE *out)
{
	char a[INET6_ADDRSTRLEN];

	if (r->family == AF_UNSPEC) {
		fputs(r->name, out);
	} else {
		inet_ntop(r->family, r->addr, a, sizeof(a));
		fprintf(out, "%s%s", r->family == AF_INET6 ? "[" : "", a);
		if (r->prefix != (r->family == AF_INET6 ? 128 : 32))
			fprintf(out, "/%d", r->prefix);
		if (r->family == AF_INET6)
			fputc(']', out);
	}
	if (r->port)
		fprintf(out, ":%d", r->port);
}

static void dump_lane(const struct cr_lane *l, FILE *out)
{
	char b[64], a[INET6_ADDRSTRLEN];
	int i;

	fprintf(out, "\n[lane %s]", l->name);
	if (l->implicit)
		fputs("  ; implicit: not in the file", out);
	else
		fprintf(out, "  ; line %d", l->line);
	if (l->passthrough)
		fputs(", pass-through for connect()", out);
	fputc('\n', out);

	fputs("match = ", out);
	if (l->implicit || strcmp(l->name, "default") == 0)
		fputs("(fallback for unmatched keys)", out);
	else if (!l->nmatch)
		fprintf(out, "%s  ; the lane's name", l->name);
	for (i = 0; i < l->nmatch; i++)
		fprintf(out, "%s%s", i ? ", " : "", l->match[i]);
	fputs("\nhosts = ", out);
	if (!l->nhosts)
		fputs("*", out);
	for (i = 0; i < l->nhosts; i++) {
		if (i)
			fputs(", ", out);
		dump_hostrule(&l->hosts[i], out);
	}
	fputc('\n', out);

	if (l->max_conns_per_host)
		fprintf(out, "max_conns_per_host = %ld\n", l->max_conns_per_host);
	else
		fputs("max_conns_per_host = 0  ; unlimited\n", out);
	fprintf(out, "max_idle_per_host = %ld\n", l->max_idle_per_host);
	fprintf(out, "idle_timeout = %s\n", fmt_dur(b, sizeof(b), l->idle_timeout_ms));
	fprintf(out, "max_lifetime = %s%s\n", fmt_dur(b, sizeof(b), l->max_lifetime_ms),
		l->max_lifetime_ms ? "" : "  ; none");
	fprintf(out, "connect_timeout = %s%s\n", fmt_dur(b, sizeof(b), l->connect_timeout_ms),
		l->connect_timeout_ms ? "" : "  ; (app)");
	fprintf(out, "response_header_timeout = %s%s\n",
		fmt_dur(b, sizeof(b), l->response_header_timeout_ms),
		l->response_header_timeout_ms ? "" : "  ; none");
	fprintf(out, "request_timeout = %s%s\n", fmt_dur(b, sizeof(b), l->request_timeout_ms),
		l->request_timeout_ms ? "" : "  ; none");
	fprintf(out, "queue_timeout = %s%s\n", fmt_dur(b, sizeof(b), l->queue_timeout_ms),
		l->queue_timeout_ms ? "" : "  ; do not wait");

	if (l->keepalive_idle_s >= 0)
		fprintf(out, "keepalive = %s\n", fmt_dur(b, sizeof(b), l->keepalive_idle_s * 1000L));
	else
		fputs("keepalive = (app)\n", out);
	if (l->keepalive_interval_s >= 0)
		fprintf(out, "keepalive_interval = %s\n",
			fmt_dur(b, sizeof(b), l->keepalive_interval_s * 1000L));
	else
		fputs("keepalive_interval = (app)\n", out);
	if (l->keepalive_count >= 0)
		fprintf(out, "keepalive_count = %d\n", l->keepalive_count);
	else
		fputs("keepalive_count = (app)\n", out);
	fprintf(out, "nodelay = %s\n", l->nodelay < 0 ? "(app)" : l->nodelay ? "on" : "off");
	if (l->tos >= 0)
		fprintf(out, "tos = 0x%02x  ; dscp %d\n", l->tos, l->tos >> 2);
	else
		fputs("tos = (app)\n", out);
	if (l->priority >= 0)
		fprintf(out, "priority = %ld\n", l->priority);
	else
		fputs("priority = (app)\n", out);
	if (l->mark >= 0)
		fprintf(out, "mark = %lld\n", l->mark);
	else
		fputs("mark = (app)\n", out);
	if (l->bind_set) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&l->bind_addr;
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&l->bind_addr;

		if (l->bind_addr.ss_family == AF_INET)
			inet_ntop(AF_INET, &sin->sin_addr, a, sizeof(a));
		else
			inet_ntop(AF_INET6, &sin6->sin6_addr, a, sizeof(a));
		fprintf(out, "bind = %s\n", a);
	} else {
		fputs("bind = (app)\n", out);
	}

	if (l->min_tls)
		fprintf(out, "min_tls = 1.%d\n", l->min_tls - 10);
	else
		fputs("min_tls = (app)  ; libcurl's default\n", out);
	fprintf(out, "retries = %d\n", l->retries);
	fprintf(out, "retry_budget = %s\n", fmt_fixed(b, sizeof(b), l->retry_budget_ratio * 100, "%"));
	fprintf(out, "retry_budget_min = %d  ; per second\n", l->retry_budget_min_per_s);

	fputs("prewarm = ", out);
	if (!l->nprewarm)
		fputc('-', out);
	for (i = 0; i < l->nprewarm; i++) {
		const struct cr_prewarm *w = &l->prewarm[i];
		int v6 = strchr(w->host, ':') != NULL;

		fprintf(out, "%s%s%s%s:%d*%d", i ? ", " : "", v6 ? "[" : "", w->host, v6 ? "]" : "",
			w->port, w->count);
	}
	fprintf(out, "\nprewarm_url = %s\n", l->prewarm_url[0] ? l->prewarm_url : "-");
	fprintf(out, "prewarm_method = %s\n", l->prewarm_method);
	fprintf(out, "preconnect_ratio = %s%s\n", fmt_fixed(b, sizeof(b), l->preconnect_ratio, ""),
		l->preconnect_ratio > 0 ? "" : "  ; off");
	fprintf(out, "warm_max_idle = %s\n", fmt_dur(b, sizeof(b), l->warm_max_idle_ms));
}

void cr_config_dump(const struct cr_config *cfg, FILE *out)
{
	static const char *const levels[] = { "error", "warn", "info", "debug" };
	int i;

	fprintf(out, "; connroute configuration: %s\n", cfg->path[0] ? cfg->path : "(not a file)");
	fprintf(out, "; %d lane%s, %d thread rule%s; (app) = left as the application sets it\n",
		cfg->nlanes, cfg->nlanes == 1 ? "" : "s", cfg->nthreads,
		cfg->nthreads == 1 ? "" : "s");
	fputs("\n[global]\n", out);
	if (cfg->log_level >= CR_LL_ERROR && cfg->log_level <= CR_LL_DEBUG)
		fprintf(out, "log = %s\n", levels[cfg->log_level]);
	else
		fputs("log = -  ; CONNROUTE_LOG or the built-in level\n", out);
	fprintf(out, "metrics = %s\n", cfg->metrics[0] ? cfg->metrics : "-  ; off");

	fputs("\n[threads]\n", out);
	for (i = 0; i < cfg->nthreads; i++)
		fprintf(out, "%s = %s\n", cfg->threads[i].glob, cfg->threads[i].key);

	for (i = 0; i < cfg->nlanes; i++)
		dump_lane(&cfg->lanes[i], out);
}
