/* connroute: the access-log keys (docs/access-log.md, docs/config.md).
 *
 * Each lane key may be left unset in a lane ("" or -1): cr_cfg_alog_finish
 * then gives it the [global] value, after the whole file is read ([global]
 * may come after the lanes). `access_log = off` in a lane stays "off", so
 * a lane can opt out of a [global] log, and a second finish changes
 * nothing. Values are checked for their form only: the file system is
 * looked at when the log is opened (lib/alog_writer.c), where a path that
 * cannot be opened is one warning and that lane unlogged, never an error
 * that would reject the whole config. */
#include "config_alog.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ values */

/* The form of an output: off | stderr | unix:/PATH | unix:@NAME | /PATH,
 * with %p (the pid) the only '%' sequence. 0, or -1 with a message. */
static int spec_check(struct parse *p, const char *name, const char *v)
{
	char qb[QMAX + 4];
	const char *path = v;
	size_t len = strlen(v), grow = 0;
	int unix_sock = strncmp(v, "unix:", 5) == 0;

	if (cr_strieq(v, "off") || strcmp(v, "stderr") == 0)
		return 0;
	if (len >= CR_ALOG_SPEC_MAX) {
		cr_cfg_diag(p, p->line, "%s value is too long; at most %d characters", name,
			    CR_ALOG_SPEC_MAX - 1);
		return -1;
	}
	if (unix_sock)
		path = v + 5;
	for (const char *c = path; *c; c++) {
		unsigned char u = (unsigned char)*c;
		if (u < 0x20 || u == 0x7f) {
			cr_cfg_diag(p, p->line, "%s '%s' contains a control character; remove it",
				    name, cr_cfg_q(qb, v));
			return -1;
		}
		if (*c != '%')
			continue;
		if (c[1] != 'p') {
			cr_cfg_diag(p, p->line,
				    "%s path '%s': only %%p (the process id) is expanded; "
				    "remove the other '%%'",
				    name, cr_cfg_q(qb, path));
			return -1;
		}
		grow += CR_PID_DIGITS - 2;
		c++;
	}
	if (unix_sock) {
		if (path[0] != '/' && path[0] != '@') {
			cr_cfg_diag(p, p->line,
				    "%s socket '%s' is not an absolute path; use "
				    "unix:/run/collector.sock",
				    name, cr_cfg_q(qb, path));
			return -1;
		}
		if (strlen(path) + grow > CR_SUN_PATH_MAX || !path[1]) {
			cr_cfg_diag(p, p->line,
				    "%s socket path is too long for a unix socket (at most "
				    "%d bytes with %%p expanded); use a shorter path",
				    name, CR_SUN_PATH_MAX);
			return -1;
		}
		return 0;
	}
	if (path[0] != '/') {
		cr_cfg_diag(p, p->line,
			    "%s '%s' is not an absolute path; use /var/log/connroute/"
			    "access.log, stderr, unix:/PATH or off",
			    name, cr_cfg_q(qb, v));
		return -1;
	}
	if (path[len - 1] == '/') {
		cr_cfg_diag(p, p->line,
			    "%s '%s' names a directory; add a file name (e.g. "
			    "%saccess.log)",
			    name, cr_cfg_q(qb, v), cr_cfg_q(qb, v));
		return -1;
	}
	return 0;
}

/* A fraction 0..1 with up to 6 decimals ("0.25", "1", ".5"), or a
 * percentage ("25%"); locale-independent. -1 if not one. */
static int parse_fraction(const char *v, double *out)
{
	long whole = 0, frac = 0, scale = 1;
	int digits = 0, fdigits = 0;
	const char *c = v;

	for (; cr_isdigit((unsigned char)*c) && digits < 9; c++, digits++)
		whole = whole * 10 + (*c - '0');
	if (*c == '.') {
		for (c++; cr_isdigit((unsigned char)*c); c++, fdigits++) {
			if (fdigits >= 6)
				return -1;
			frac = frac * 10 + (*c - '0');
			scale *= 10;
		}
	}
	if (digits + fdigits == 0)
		return -1;
	double x = (double)whole + (double)frac / (double)scale;
	if (*c == '%') {
		x /= 100;
		c++;
	}
	if (*c || x > 1)
		return -1;
	*out = x;
	return 0;
}

static int sample_check(struct parse *p, const char *name, const char *v, double *out)
{
	char qb[QMAX + 4];

	if (parse_fraction(v, out) == 0)
		return 0;
	cr_cfg_diag(p, p->line,
		    "bad value '%s' for %s; use a fraction from 0 to 1 (0.1 logs one "
		    "call in ten) or a percentage (10%%)",
		    cr_cfg_q(qb, v), name);
	return -1;
}

/* x.xxxxxx with trailing zeros trimmed; no locale. */
static void fmt_fraction(char *b, size_t n, double x)
{
	long u = (long)(x * 1000000 + 0.5);
	int len = snprintf(b, n, "%ld.%06ld", u / 1000000, u % 1000000);

	while (len > 0 && (size_t)len < n && b[len - 1] == '0')
		b[--len] = '\0';
	if (len > 0 && (size_t)len < n && b[len - 1] == '.')
		b[--len] = '\0';
}

/* ------------------------------------------------------------ lane keys */

int cr_cfg_set_access_log(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k,
			  const char *v)
{
	if (spec_check(p, k->name, v) < 0)
		return -1;
	/* "off" is kept as written: unlike "", it is not replaced by [global]'s */
	return cr_cfg_str_copy(CR_FIELD(l, k, char), k->size, cr_strieq(v, "off") ? "off" : v,
			       cr_strieq(v, "off") ? 3 : strlen(v));
}

int cr_cfg_set_alog_sample(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k,
			   const char *v)
{
	return sample_check(p, k->name, v, CR_FIELD(l, k, double));
}

void cr_cfg_dump_access_log(const struct cr_lane *l, const struct cr_lane_key *k, FILE *out)
{
	const char *s = CR_CFIELD(l, k, char);

	fprintf(out, "%s = %s\n", k->name, s[0] && strcmp(s, "off") ? s : "off");
}

void cr_cfg_dump_alog_sample(const struct cr_lane *l, const struct cr_lane_key *k, FILE *out)
{
	char b[32];

	fmt_fraction(b, sizeof(b), *CR_CFIELD(l, k, double));
	fprintf(out, "%s = %s\n", k->name, b);
}

/* ---------------------------------------------------------- [global] keys */

int cr_cfg_set_g_access_log(struct parse *p, const char *v)
{
	struct cr_config *cfg = p->cfg;

	if (spec_check(p, "access_log", v) < 0)
		return -1;
	if (cr_strieq(v, "off"))
		v = "";
	return cr_cfg_str_copy(cfg->access_log, sizeof(cfg->access_log), v, strlen(v));
}

int cr_cfg_set_g_alog_sample(struct parse *p, const char *v)
{
	return sample_check(p, "access_log_sample", v, &p->cfg->access_log_sample);
}

/* The lane key's own parser, on a scratch lane: the same checks and the
 * same messages for the same key in [global]. */
static int via_lane_key(struct parse *p, const char *name, const char *v, struct cr_lane *tmp)
{
	const struct cr_lane_key *k = cr_cfg_lane_key(name);

	return k && k->set(p, tmp, k, v) == 0 ? 0 : -1;
}

int cr_cfg_set_g_alog_slow(struct parse *p, const char *v)
{
	struct cr_lane *tmp = calloc(1, sizeof(*tmp));
	int r = tmp ? via_lane_key(p, "access_log_slow", v, tmp) : -1;

	if (r == 0)
		p->cfg->access_log_slow_ms = tmp->access_log_slow_ms;
	free(tmp);
	return r;
}

int cr_cfg_set_g_alog_query(struct parse *p, const char *v)
{
	struct cr_lane *tmp = calloc(1, sizeof(*tmp));
	int r = tmp ? via_lane_key(p, "access_log_query", v, tmp) : -1;

	if (r == 0)
		p->cfg->access_log_query = tmp->access_log_query;
	free(tmp);
	return r;
}

int cr_cfg_set_g_alog_mode(struct parse *p, const char *v)
{
	char qb[QMAX + 4];
	long m = 0;
	const char *c = v;

	for (; *c >= '0' && *c <= '7' && m <= 07777; c++)
		m = m * 8 + (*c - '0');
	if (c == v || *c || (m & ~0666L) || !(m & 0600)) {
		cr_cfg_diag(p, p->line,
			    "bad value '%s' for access_log_mode; use octal permissions "
			    "for a file the owner can read and write, at most 0666 (e.g. 0640)",
			    cr_cfg_q(qb, v));
		return -1;
	}
	p->cfg->access_log_mode = (int)m;
	return 0;
}

int cr_cfg_set_g_alog_buffer(struct parse *p, const char *v)
{
	char qb[QMAX + 4];
	long n = 0;
	const char *c = v;

	for (; cr_isdigit((unsigned char)*c) && n <= CR_ALOG_BUFFER_MAX; c++)
		n = n * 10 + (*c - '0');
	if (c == v || *c || n < CR_ALOG_BUFFER_MIN || n > CR_ALOG_BUFFER_MAX || (n & (n - 1))) {
		cr_cfg_diag(p, p->line,
			    "bad value '%s' for access_log_buffer; use a power of two "
			    "from %d to %d (records)",
			    cr_cfg_q(qb, v), CR_ALOG_BUFFER_MIN, CR_ALOG_BUFFER_MAX);
		return -1;
	}
	p->cfg->access_log_buffer = (int)n;
	return 0;
}

void cr_cfg_dump_g_access_log(const struct cr_config *cfg, FILE *out)
{
	fprintf(out, "access_log = %s\n", cfg->access_log[0] ? cfg->access_log : "off");
}

void cr_cfg_dump_g_alog_sample(const struct cr_config *cfg, FILE *out)
{
	char b[32];

	fmt_fraction(b, sizeof(b), cfg->access_log_sample);
	fprintf(out, "access_log_sample = %s\n", b);
}

void cr_cfg_dump_g_alog_slow(const struct cr_config *cfg, FILE *out)
{
	struct cr_lane *tmp = calloc(1, sizeof(*tmp));
	const struct cr_lane_key *k = cr_cfg_lane_key("access_log_slow");

	if (!tmp || !k) {
		free(tmp);
		return;
	}
	tmp->access_log_slow_ms = cfg->access_log_slow_ms;
	k->dump(tmp, k, out);
	free(tmp);
}

void cr_cfg_dump_g_alog_query(const struct cr_config *cfg, FILE *out)
{
	fprintf(out, "access_log_query = %s\n", cfg->access_log_query > 0 ? "on" : "off");
}

void cr_cfg_dump_g_alog_mode(const struct cr_config *cfg, FILE *out)
{
	fprintf(out, "access_log_mode = %04o\n", (unsigned)cfg->access_log_mode);
}

void cr_cfg_dump_g_alog_buffer(const struct cr_config *cfg, FILE *out)
{
	fprintf(out, "access_log_buffer = %d  ; records\n", cfg->access_log_buffer);
}

/* --------------------------------------------------------- defaults, finish */

void cr_cfg_alog_defaults(struct cr_config *cfg)
{
	cfg->access_log[0] = '\0';
	cfg->access_log_sample = 1;
	cfg->access_log_slow_ms = 0;
	cfg->access_log_query = 0;
	cfg->access_log_mode = 0600;
	cfg->access_log_buffer = CR_ALOG_BUFFER_DEFAULT;
}

void cr_cfg_alog_finish(const struct cr_config *cfg, struct cr_lane *l)
{
	if (!l->access_log[0])
		memcpy(l->access_log, cfg->access_log, sizeof(l->access_log));
	if (l->access_log_sample < 0)
		l->access_log_sample = cfg->access_log_sample;
	if (l->access_log_slow_ms < 0)
		l->access_log_slow_ms = cfg->access_log_slow_ms;
	if (l->access_log_query < 0)
		l->access_log_query = cfg->access_log_query;
	l->alog_on = l->access_log[0] && strcmp(l->access_log, "off") != 0 &&
		     l->access_log_sample > 0;
	/* Its raw connects are logged: the routing path must see them. */
	if (l->alog_on)
		l->passthrough = 0;
}
