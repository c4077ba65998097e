/* connroute: config value parsers. Each lane key's setter (named in the key
 * table, config_keys.c) parses one value, checks it and stores it, or
 * records a diagnostic saying how to fix it.
 *
 * Numbers are parsed by hand rather than with strtod, whose decimal point
 * follows the host application's LC_NUMERIC; character classes are ASCII
 * (lib/base.h), never the locale's. */
#include "config_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* lexical helpers */

int cr_cfg_str_copy(char *dst, size_t size, const char *src, size_t n)
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
		if (cr_isdigit(*s))
			d = (unsigned)(*s - '0');
		else if (base == 16 && cr_lower(*s) >= 'a' && cr_lower(*s) <= 'f')
			d = (unsigned)(cr_lower(*s) - 'a' + 10);
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
		if (cr_isdigit(*s)) {
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
	while (cr_cfg_isspace(*e))
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

/* ------------------------------------------------------------------------ */
/* scalar values */

int cr_cfg_set_int(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k, const char *v)
{
	unsigned long long n;
	char qb[QMAX + 4];
	int rc = parse_uint(v, (k->flags & KEY_HEX) != 0, (unsigned long long)k->max, &n);

	if (rc == 0 && n < (unsigned long long)k->min)
		rc = -ERANGE;
	if (rc == -ERANGE) {
		cr_cfg_diag(p, p->line, "%s = %s is out of range; use %lld to %lld", k->name,
			    cr_cfg_q(qb, v), k->min, k->max);
		return -1;
	}
	if (rc < 0) {
		cr_cfg_diag(p, p->line,
			    "bad value '%s' for %s; use a whole number from %lld to %lld%s",
			    cr_cfg_q(qb, v), k->name, k->min, k->max,
			    (k->flags & KEY_HEX) ? " (decimal or 0x hex)" : "");
		return -1;
	}
	cr_cfg_field_put(l, k, (long long)n);
	return 0;
}

static int dur_check(struct parse *p, const struct cr_lane_key *k, const char *v, long *ms)
{
	char qb[QMAX + 4];

	switch (duration_ms(v, ms)) {
	case 0: return 0;
	case -ENOMSG:
		cr_cfg_q(qb, v);
		if (strchr(v, '.')) /* 0.5ms would be rejected: do not suggest it */
			cr_cfg_diag(p, p->line, "duration '%s' for %s has no unit; write %ss", qb,
				    k->name, qb);
		else
			cr_cfg_diag(p, p->line,
				    "duration '%s' for %s has no unit; write %ss or %sms", qb,
				    k->name, qb, qb);
		break;
	case -ERANGE:
		cr_cfg_diag(p, p->line, "duration '%s' for %s is too long; the maximum is %dm",
			    cr_cfg_q(qb, v), k->name, CR_DUR_MAX_MS / 60000);
		break;
	case -EDOM:
		cr_cfg_diag(p, p->line,
			    "duration '%s' for %s is finer than 1ms; round it to whole ms",
			    cr_cfg_q(qb, v), k->name);
		break;
	default:
		cr_cfg_diag(
			p, p->line,
			"bad duration '%s' for %s; use a number with ms, s or m (e.g. 500ms, 5s)",
			cr_cfg_q(qb, v), k->name);
		break;
	}
	return -1;
}

int cr_cfg_set_dur(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k, const char *v)
{
	long ms;

	if (dur_check(p, k, v, &ms) < 0)
		return -1;
	*CR_FIELD(l, k, long) = ms;
	return 0;
}

/* A duration that must not be 0 (eject_time, breaker_window, breaker_open). */
int cr_cfg_set_dur_pos(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k,
		       const char *v)
{
	char qb[QMAX + 4];
	long ms;

	if (dur_check(p, k, v, &ms) < 0)
		return -1;
	if (ms <= 0) {
		cr_cfg_diag(p, p->line, "%s = %s must be longer than 0 (e.g. %s)", k->name,
			    cr_cfg_q(qb, v), k->example);
		return -1;
	}
	*CR_FIELD(l, k, long) = ms;
	return 0;
}

/* TCP_KEEPIDLE and TCP_KEEPINTVL take whole seconds, at least one; silently
 * rounding 1500ms would apply something the file does not say. */
int cr_cfg_set_dursec(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k,
		      const char *v)
{
	char qb[QMAX + 4];
	long ms;

	if (dur_check(p, k, v, &ms) < 0)
		return -1;
	if (ms % 1000 || ms / 1000 < k->min || ms / 1000 > k->max) {
		cr_cfg_diag(
			p, p->line,
			"%s = %s: it sets TCP_%s, whole seconds from %llds to %llds; e.g. %s = %s",
			k->name, cr_cfg_q(qb, v),
			k->off == offsetof(struct cr_lane, keepalive_idle_s) ? "KEEPIDLE"
									     : "KEEPINTVL",
			k->min, k->max, k->name, k->example);
		return -1;
	}
	*CR_FIELD(l, k, int) = (int)(ms / 1000);
	return 0;
}

static int parse_bool(const char *v)
{
	static const char *const yes[] = {"on", "yes", "true", "1"};
	static const char *const no[] = {"off", "no", "false", "0"};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(yes); i++) {
		if (cr_strieq(v, yes[i]))
			return 1;
		if (cr_strieq(v, no[i]))
			return 0;
	}
	return -1;
}

int cr_cfg_set_bool(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k, const char *v)
{
	char qb[QMAX + 4];
	int b = parse_bool(v);

	if (b < 0) {
		cr_cfg_diag(p, p->line, "bad value '%s' for %s; use on or off", cr_cfg_q(qb, v),
			    k->name);
		return -1;
	}
	*CR_FIELD(l, k, int) = b;
	return 0;
}

int cr_cfg_set_dscp(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k, const char *v)
{
	unsigned long long n;
	char qb[QMAX + 4];
	int dscp = -1;

	if (cr_strieq(v, "ef"))
		dscp = 46;
	else if (cr_lower(v[0]) == 'a' && cr_lower(v[1]) == 'f' && v[2] >= '1' && v[2] <= '4' &&
		 v[3] >= '1' && v[3] <= '3' && !v[4])
		dscp = 8 * (v[2] - '0') + 2 * (v[3] - '0');
	else if (cr_lower(v[0]) == 'c' && cr_lower(v[1]) == 's' && v[2] >= '0' && v[2] <= '7' &&
		 !v[3])
		dscp = 8 * (v[2] - '0');
	else if (parse_uint(v, 1, 63, &n) == 0)
		dscp = (int)n;
	if (dscp < 0) {
		cr_cfg_diag(p, p->line,
			    "bad dscp '%s'; use ef, af11..af43, cs0..cs7 or a number from 0 to 63",
			    cr_cfg_q(qb, v));
		return -1;
	}
	l->tos = dscp << 2; /* DSCP is the upper six bits of the TOS / traffic class byte */
	return 0;
}

int cr_cfg_set_bind(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k, const char *v)
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
	cr_cfg_diag(p, p->line,
		    "bad bind address '%s'; use an IPv4 or IPv6 address without a port "
		    "(e.g. 127.0.0.2 or ::1)",
		    cr_cfg_q(qb, v));
	return -1;
}

/* URL schemes by bit (config.h): what libcurl 7.x and 8.x know. */
const char *const cr_scheme_names[] = {
	"http", "https", "ftp",  "ftps",  "sftp",   "scp",     "smtp",   "smtps",
	"imap", "imaps", "pop3", "pop3s", "ldap",   "ldaps",   "telnet", "dict",
	"rtsp", "smb",   "smbs", "mqtt",  "gopher", "gophers", "file",   "tftp",
	"ws",   "wss",   "rtmp", "rtmps", "rtmpe",  "rtmpt",   "rtmpte", "rtmpts",
};
const int cr_nschemes = (int)ARRAY_SIZE(cr_scheme_names);
_Static_assert(ARRAY_SIZE(cr_scheme_names) < CR_SCHEME_OTHER, "scheme bits");

int cr_scheme_bit(const char *s, size_t n)
{
	/* http and https first: the common case costs one or two compares. */
	for (int i = 0; i < cr_nschemes; i++) {
		const char *c = cr_scheme_names[i];
		size_t j = 0;
		while (j < n && c[j] && cr_lower((unsigned char)s[j]) == c[j])
			j++;
		if (j == n && !c[j])
			return i;
	}
	return CR_SCHEME_OTHER;
}

int cr_cfg_set_pool_schemes(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k,
			    const char *v)
{
	char qb[QMAX + 4];
	long long mask = 0;
	(void)k;

	if (strcmp(v, "*") == 0) {
		l->pool_schemes = CR_POOL_SCHEMES_ALL;
		return 0;
	}
	if (cr_strieq(v, "none")) {
		l->pool_schemes = 0;
		return 0;
	}
	for (const char *s = v;;) {
		while (cr_cfg_isspace(*s))
			s++;
		size_t n = strcspn(s, ",");
		size_t m = n;
		while (m > 0 && cr_cfg_isspace(s[m - 1]))
			m--;
		int b = m ? cr_scheme_bit(s, m) : CR_SCHEME_OTHER;
		if (b == CR_SCHEME_OTHER) {
			char w[QMAX], qw[QMAX + 4];
			size_t c = m < sizeof(w) - 1 ? m : sizeof(w) - 1;
			memcpy(w, s, c);
			w[c] = '\0';
			if (m)
				cr_cfg_diag(
					p, p->line,
					"bad pool_schemes '%s': unknown scheme '%s'; use URL "
					"schemes (e.g. http, https, ftp), * (every scheme) or none",
					cr_cfg_q(qb, v), cr_cfg_q(qw, w));
			else
				cr_cfg_diag(p, p->line,
					    "bad pool_schemes '%s': an empty item; use URL schemes "
					    "(e.g. http, https, ftp), * (every scheme) or none",
					    cr_cfg_q(qb, v));
			return -1;
		}
		mask |= (long long)(1ULL << b);
		if (!s[n])
			break;
		s += n + 1;
	}
	l->pool_schemes = mask;
	return 0;
}

int cr_cfg_set_min_tls(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k,
		       const char *v)
{
	char qb[QMAX + 4];

	if (v[0] == '1' && v[1] == '.' && v[2] >= '0' && v[2] <= '3' && !v[3]) {
		l->min_tls = 10 + (v[2] - '0');
		return 0;
	}
	cr_cfg_diag(p, p->line, "bad min_tls '%s'; use 1.0, 1.1, 1.2 or 1.3", cr_cfg_q(qb, v));
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

int cr_cfg_set_retry_budget(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k,
			    const char *v)
{
	char qb[QMAX + 4];
	int rc = parse_ratio(v, 1, 1.0, &l->retry_budget_ratio);

	if (rc == -ERANGE && !strchr(v, '%'))
		cr_cfg_diag(p, p->line,
			    "retry_budget %s is above 1; write a percentage (%s%%) "
			    "or a fraction of 1 (e.g. 0.2)",
			    cr_cfg_q(qb, v), v);
	else if (rc == -ERANGE)
		cr_cfg_diag(p, p->line, "retry_budget %s is above 100%%; use 0%% to 100%%",
			    cr_cfg_q(qb, v));
	else if (rc < 0)
		cr_cfg_diag(p, p->line,
			    "bad retry_budget '%s'; use a percentage or a fraction "
			    "(e.g. 20%% or 0.2)",
			    cr_cfg_q(qb, v));
	return rc < 0 ? -1 : 0;
}

/* A fraction of 1, written "50%" or "0.5" (eject_max, breaker_failure_ratio,
 * retry_token_ratio). */
int cr_cfg_set_fraction(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k,
			const char *v)
{
	char qb[QMAX + 4];
	int rc = parse_ratio(v, 1, 1.0, CR_FIELD(l, k, double));

	if (rc == -ERANGE)
		cr_cfg_diag(p, p->line, "%s = %s is above 1; use 0 to 1 or 0%% to 100%%", k->name,
			    cr_cfg_q(qb, v));
	else if (rc < 0)
		cr_cfg_diag(p, p->line,
			    "bad value '%s' for %s; use a fraction or a percentage (e.g. %s)",
			    cr_cfg_q(qb, v), k->name, k->example);
	return rc < 0 ? -1 : 0;
}

int cr_cfg_set_preconnect(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k,
			  const char *v)
{
	char qb[QMAX + 4];

	if (parse_ratio(v, 0, 3.0, &l->preconnect_ratio) < 0) {
		cr_cfg_diag(p, p->line,
			    "bad preconnect_ratio '%s'; use a number from 0 (off) to 3 "
			    "(e.g. 0.5)",
			    cr_cfg_q(qb, v));
		return -1;
	}
	return 0;
}

int cr_cfg_set_prewarm_url(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k,
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
		cr_cfg_diag(p, p->line,
			    "bad prewarm_url '%s'; use an http:// or https:// URL "
			    "without spaces (e.g. https://api.internal/healthz)",
			    cr_cfg_q(qb, v));
		return -1;
	}
	if (cr_cfg_str_copy(l->prewarm_url, sizeof(l->prewarm_url), v, strlen(v)) < 0) {
		cr_cfg_diag(p, p->line, "prewarm_url is too long; at most %zu characters",
			    sizeof(l->prewarm_url) - 1);
		return -1;
	}
	return 0;
}

int cr_cfg_set_prewarm_method(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k,
			      const char *v)
{
	static const char *const methods[] = {"HEAD", "GET", "OPTIONS"};
	char qb[QMAX + 4];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(methods); i++) {
		if (cr_strieq(v, methods[i])) {
			strcpy(l->prewarm_method, methods[i]);
			return 0;
		}
	}
	cr_cfg_diag(p, p->line, "bad prewarm_method '%s'; use HEAD, GET or OPTIONS",
		    cr_cfg_q(qb, v));
	return -1;
}

/* ------------------------------------------------------------------------ */
/* lists: match, hosts, prewarm */

/* Calls FN on each comma-separated, trimmed item of V. Returns the number of
 * errors; reports an empty list or an empty item. */
typedef int (*item_fn)(struct parse *p, struct cr_lane *l, const char *item);

static int each_item(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k, const char *v,
		     item_fn fn)
{
	char item[CR_HOST_MAX + 32], qb[QMAX + 4];
	const char *s = v, *e, *t;
	int errors = 0, items = 0;

	for (;;) {
		while (cr_cfg_isspace(*s))
			s++;
		e = strchr(s, ',');
		if (!e)
			e = s + strlen(s);
		t = e;
		while (t > s && cr_cfg_isspace(t[-1]))
			t--;
		if (t == s) {
			if (*e || items) {
				cr_cfg_diag(p, p->line,
					    "empty entry in %s list '%s'; check the commas",
					    k->name, cr_cfg_q(qb, v));
				return errors + 1;
			}
			if (!*e)
				break;
		} else if (cr_cfg_str_copy(item, sizeof(item), s, (size_t)(t - s)) < 0) {
			memcpy(item, s, sizeof(item) - 1);
			item[sizeof(item) - 1] = '\0';
			cr_cfg_diag(p, p->line, "%s entry '%s' is too long", k->name,
				    cr_cfg_q(qb, item));
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
		cr_cfg_diag(p, p->line, "empty %s list in [lane %s]; e.g. %s = %s", k->name,
			    l->name, k->name, k->example);
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
		if (!cr_cfg_isalnum(g[i]) && !strchr("._~:/@=*?-", g[i])) {
			cr_cfg_diag(p, p->line,
				    "bad key glob '%s' in match: '%c' is not allowed; use "
				    "A-Z a-z 0-9 . _ ~ : / @ = - and the wildcards * ?",
				    cr_cfg_q(qb, g), (g[i] >= 0x20 && g[i] < 0x7f) ? g[i] : '?');
			return -1;
		}
	}
	if (n >= CR_KEY_MAX) {
		cr_cfg_diag(p, p->line, "key glob '%s' is %zu characters; at most %d",
			    cr_cfg_q(qb, g), n, CR_KEY_MAX - 1);
		return -1;
	}
	for (j = 0; j < l->nmatch; j++) {
		if (strcmp(l->match[j], g) == 0) {
			cr_cfg_diag(p, p->line,
				    "key glob '%s' is listed twice in [lane %s]; keep one",
				    cr_cfg_q(qb, g), l->name);
			return -1;
		}
	}
	if (l->nmatch == CR_MAX_MATCH) {
		cr_cfg_diag(p, p->line,
			    "too many match globs in [lane %s] (at most %d); "
			    "use a wider glob",
			    l->name, CR_MAX_MATCH);
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
	if (!cr_isdigit(*s))
		return 0;
	for (; *s && *s != '/'; s++)
		if (!cr_isdigit(*s) && *s != '.')
			return 0;
	return 1;
}

static int name_chars_ok(const char *s, int glob)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (!cr_cfg_isalnum(*s) && !strchr("._-", *s) && !(glob && strchr("*?", *s)))
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
		cr_cfg_diag(p, p->line,
			    "host rule '%s': put IPv6 addresses in brackets, e.g. [::1] or "
			    "[::1]:443",
			    cr_cfg_q(qb, item));
		return -1;
	}
	if (rc < 0 || (port && parse_port(port, &r.port) < 0)) {
		cr_cfg_diag(p, p->line,
			    "bad host rule '%s'; use ADDR[/BITS][:PORT], [V6][/BITS][:PORT], "
			    "a name glob[:PORT] or *:PORT, with a port from 1 to 65535",
			    cr_cfg_q(qb, item));
		return -1;
	}
	if (!*host) {
		cr_cfg_diag(p, p->line, "host rule '%s' has no host; write *:%s for any host",
			    cr_cfg_q(qb, item), port ? port : "PORT");
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
				cr_cfg_diag(p, p->line,
					    "bad prefix length in host rule '%s'; use /0 to /%d",
					    cr_cfg_q(qb, item), alen * 8);
				return -1;
			}
			r.prefix = (int)n;
		}
		if (inet_pton(r.family, host, r.addr) != 1) {
			cr_cfg_diag(p, p->line, "bad %s address in host rule '%s'",
				    v6 ? "IPv6" : "IPv4", cr_cfg_q(qb, item));
			return -1;
		}
		if (!prefix_ok(r.addr, alen, r.prefix)) {
			cr_cfg_diag(p, p->line,
				    "host rule '%s' has bits set beyond /%d; write the "
				    "network address",
				    cr_cfg_q(qb, item), r.prefix);
			return -1;
		}
	} else {
		r.family = AF_UNSPEC;
		if (!name_chars_ok(host, 1)) {
			cr_cfg_diag(p, p->line,
				    "bad host name glob in host rule '%s'; use A-Z a-z 0-9 . _ "
				    "- and the wildcards * ?",
				    cr_cfg_q(qb, item));
			return -1;
		}
		if (cr_cfg_str_copy(r.name, sizeof(r.name), host, strlen(host)) < 0) {
			cr_cfg_diag(p, p->line, "host name in rule '%s' is too long",
				    cr_cfg_q(qb, item));
			return -1;
		}
	}
	if (l->nhosts == CR_MAX_HOSTS) {
		cr_cfg_diag(p, p->line,
			    "too many host rules in [lane %s] (at most %d); use CIDRs or "
			    "name globs",
			    l->name, CR_MAX_HOSTS);
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
		while (t > buf && cr_cfg_isspace(t[-1]))
			*--t = '\0';
		while (cr_cfg_isspace(*star))
			star++;
		if (parse_uint(star, 0, CR_PREWARM_COUNT_MAX, &n) < 0 || n == 0) {
			cr_cfg_diag(p, p->line,
				    "bad count in prewarm target '%s'; use HOST:PORT*N with N "
				    "from 1 to %d",
				    cr_cfg_q(qb, item), CR_PREWARM_COUNT_MAX);
			return -1;
		}
	}
	if (split_hostport(buf, &host, &port, &v6) != 0 || !*host || strchr(host, '/')) {
		cr_cfg_diag(p, p->line,
			    "bad prewarm target '%s'; use HOST:PORT*N, [V6]:PORT*N "
			    "(e.g. api.internal:443*4)",
			    cr_cfg_q(qb, item));
		return -1;
	}
	if (!port) {
		cr_cfg_diag(p, p->line, "prewarm target '%s' needs a port, e.g. %s:443",
			    cr_cfg_q(qb, item), cr_cfg_q(qb2, host));
		return -1;
	}
	if (parse_port(port, &w.port) < 0) {
		cr_cfg_diag(p, p->line, "bad port in prewarm target '%s'; use 1 to 65535",
			    cr_cfg_q(qb, item));
		return -1;
	}
	if (v6 ? inet_pton(AF_INET6, host, addr) != 1
	       : (looks_ipv4(host) ? inet_pton(AF_INET, host, addr) != 1
				   : !name_chars_ok(host, 0))) {
		cr_cfg_diag(p, p->line,
			    "bad host in prewarm target '%s'; use a host name, an IPv4 "
			    "address or [IPv6] (no wildcards)",
			    cr_cfg_q(qb, item));
		return -1;
	}
	if (cr_cfg_str_copy(w.host, sizeof(w.host), host, strlen(host)) < 0) {
		cr_cfg_diag(p, p->line, "host in prewarm target '%s' is too long",
			    cr_cfg_q(qb, item));
		return -1;
	}
	w.count = (int)n;
	for (i = 0; i < l->nprewarm; i++) {
		if (l->prewarm[i].port == w.port && strcmp(l->prewarm[i].host, w.host) == 0) {
			cr_cfg_diag(p, p->line,
				    "prewarm target '%s' is listed twice; raise its count "
				    "instead (HOST:PORT*N)",
				    cr_cfg_q(qb, item));
			return -1;
		}
	}
	if (l->nprewarm == CR_MAX_PREWARM) {
		cr_cfg_diag(p, p->line, "too many prewarm targets in [lane %s] (at most %d)",
			    l->name, CR_MAX_PREWARM);
		return -1;
	}
	l->prewarm[l->nprewarm++] = w;
	return 0;
}

int cr_cfg_set_match(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k, const char *v)
{
	if (strcmp(l->name, "default") == 0) {
		cr_cfg_diag(p, p->line,
			    "match in [lane default]: the default lane is the fallback for "
			    "keys no other lane matches; remove match, or rename the lane");
		return -1;
	}
	return each_item(p, l, k, v, match_item) ? -1 : 0;
}

int cr_cfg_set_hosts(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k, const char *v)
{
	if (strcmp(l->name, "default") == 0) {
		cr_cfg_diag(p, p->line,
			    "hosts in [lane default]: the default lane is the fallback for "
			    "every destination; remove hosts, or rename the lane");
		return -1;
	}
	return each_item(p, l, k, v, host_item) ? -1 : 0;
}

int cr_cfg_set_prewarm(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k,
		       const char *v)
{
	return each_item(p, l, k, v, prewarm_item) ? -1 : 0;
}

/* ------------------------------------------------------------------------ */
/* [threads] and [global] values */

/* "IP:PORT" or "[IPv6]:PORT", address literals only. */
static int ip_literal_port(const char *s)
{
	char buf[INET6_ADDRSTRLEN + 16], *host, *port;
	uint8_t a[16];
	int v6, pt;

	if (cr_cfg_str_copy(buf, sizeof(buf), s, strlen(s)) < 0)
		return -1;
	if (split_hostport(buf, &host, &port, &v6) < 0 || !port || parse_port(port, &pt) < 0)
		return -1;
	return inet_pton(v6 ? AF_INET6 : AF_INET, host, a) == 1 ? 0 : -1;
}

/* A routing key: [A-Za-z0-9._~:/@=-] and optional "+idempotent" (key.h). */
int cr_cfg_routing_key_ok(const char *k)
{
	const char *plus = strchr(k, '+');
	size_t n = plus ? (size_t)(plus - k) : strlen(k), i;

	if (n == 0 || strlen(k) >= CR_KEY_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if (!cr_cfg_isalnum(k[i]) && !strchr("._~:/@=-", k[i]))
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

const char *const cr_cfg_log_levels[4] = {"error", "warn", "info", "debug"};

int cr_cfg_set_log(struct parse *p, const char *v)
{
	char qb[QMAX + 4];

	for (int i = 0; i < (int)ARRAY_SIZE(cr_cfg_log_levels); i++) {
		if (cr_strieq(v, cr_cfg_log_levels[i])) {
			p->cfg->log_level = CR_LL_ERROR + i;
			return 0;
		}
	}
	cr_cfg_diag(p, p->line, "bad log level '%s'; use error, warn, info or debug",
		    cr_cfg_q(qb, v));
	return -1;
}

int cr_cfg_set_metrics(struct parse *p, const char *v)
{
	struct cr_config *cfg = p->cfg;
	char qb[QMAX + 4];

	if (cr_strieq(v, "off")) {
		cfg->metrics[0] = '\0';
		return 0;
	}
	if (strncmp(v, "unix:", 5) == 0) {
		const char *path = v + 5, *c;
		size_t len = strlen(path);

		for (c = path; *c; c++) {
			if (*c == '%' && c[1] != 'p') {
				cr_cfg_diag(p, p->line,
					    "metrics path '%s': only %%p (the process id) is "
					    "expanded; remove the other '%%'",
					    cr_cfg_q(qb, path));
				return -1;
			}
			if (*c == '%')
				len += CR_PID_DIGITS - 2, c++;
		}
		if (path[0] != '/' && path[0] != '@') {
			cr_cfg_diag(p, p->line,
				    "metrics socket '%s' is not an absolute path; use "
				    "unix:/run/connroute/%%p.sock",
				    cr_cfg_q(qb, path));
			return -1;
		}
		if (len > CR_SUN_PATH_MAX) {
			cr_cfg_diag(p, p->line,
				    "metrics socket path is too long for a unix socket (at "
				    "most %d bytes with %%p expanded); use a shorter path",
				    CR_SUN_PATH_MAX);
			return -1;
		}
	} else if (ip_literal_port(v) < 0) {
		cr_cfg_diag(p, p->line,
			    "bad metrics address '%s'; use IP:PORT, [IPv6]:PORT or "
			    "unix:/PATH (e.g. 127.0.0.1:9464)",
			    cr_cfg_q(qb, v));
		return -1;
	}
	if (cr_cfg_str_copy(cfg->metrics, sizeof(cfg->metrics), v, strlen(v)) < 0) {
		cr_cfg_diag(p, p->line, "metrics value is too long; at most %zu characters",
			    sizeof(cfg->metrics) - 1);
		return -1;
	}
	return 0;
}
