/* connroute: configuration parser, the reading part (the other parts are
 * listed in config_int.h; keys live in config_keys.c).
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
 * The file is read through stdio (fdopen/fclose) and an fd not yet wrapped
 * is closed with cr_sys_close: never through the close() the shim
 * interposes. */
#include "config_alog.h"
#include "config_int.h"
#include "sys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <ini.h>

#define CR_FILE_MAX (1 << 20) /* a config is a few KB; more is a wrong path */

/* ------------------------------------------------------------------------ */
/* diagnostics */

void cr_cfg_diag(struct parse *p, int line, const char *fmt, ...)
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

const char *cr_cfg_q(char buf[QMAX + 4], const char *s)
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
/* the configuration as a whole */

/* The default lane nobody wrote: it must not change any behaviour the
 * application did not ask for, so everything that touches a socket or curl's
 * own defaults stays unset (the keys' implicit defaults). */
static void lane_implicit(struct cr_lane *l)
{
	cr_cfg_lane_defaults(l, 1);
	memcpy(l->name, "default", 8);
	l->implicit = 1;
}

static void config_init(struct cr_config *cfg)
{
	/* only the header; the lane table is large and filled lane by lane */
	memset(cfg, 0, offsetof(struct cr_config, lanes));
	cfg->log_level = -1;
	cr_cfg_alog_defaults(cfg);
	cfg->nlanes = 0;
	cfg->default_lane = -1;
	cfg->nthreads = 0;
}

void cr_config_finish(struct cr_config *cfg)
{
	int i;

	cfg->default_lane = -1;
	for (i = 0; i < cfg->nlanes; i++) {
		struct cr_lane *l = &cfg->lanes[i];

		l->index = i;
		l->passthrough = cr_cfg_lane_passthrough(l);
		l->health = (l->eject_after > 0 ? CR_H_EJECT : 0) |
			    (l->breaker_failure_ratio > 0 ? CR_H_BREAKER : 0) |
			    (l->retry_tokens > 0 ? CR_H_THROTTLE : 0);
		l->health_hash = cr_config_lane_health_hash(l);
		cr_cfg_alog_finish(cfg, l);
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
/* keys */

static void unknown_key(struct parse *p, const char *name, const char *where, int in_lane)
{
	char qb[QMAX + 4];
	const char *s;

	if (in_lane && cr_cfg_global_key(name)) {
		cr_cfg_diag(p, p->line, "'%s' in %s belongs in [global]; move it there", name,
			    where);
		return;
	}
	if (!in_lane && cr_cfg_lane_key(name)) {
		cr_cfg_diag(p, p->line,
			    "'%s' in %s is a lane setting; put it in a [lane NAME] section", name,
			    where);
		return;
	}
	s = in_lane ? cr_cfg_closest_lane_key(name) : cr_cfg_closest_global_key(name);
	if (s)
		cr_cfg_diag(p, p->line, "unknown key '%s' in %s; did you mean '%s'?",
			    cr_cfg_q(qb, name), where, s);
	else
		cr_cfg_diag(p, p->line, "unknown key '%s' in %s; see docs/config.md for the keys",
			    cr_cfg_q(qb, name), where);
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
		/* prewarm_url fills the lane's pool: its scheme must be pooled
		 * (docs/INTERNALS.md, "Pooled schemes"), wherever either was set */
		if (l->prewarm_url[0]) {
			const char *u = l->prewarm_url;
			int b = cr_scheme_bit(u, strcspn(u, ":"));
			if (!(((unsigned long long)l->pool_schemes >> b) & 1u)) {
				size_t ki = (size_t)(cr_cfg_lane_key("prewarm_url") - cr_lane_keys);
				cr_cfg_diag(p, p->seen[ki],
					    "prewarm_url's scheme '%s' is not in this lane's "
					    "pool_schemes: its connections would never be used",
					    cr_scheme_names[b]);
			}
		}
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
		if (!cr_cfg_isalnum(*s) && !strchr("_.-", *s))
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
		cr_cfg_diag(p, p->line, "bad lane name '%s'; use 1 to %d of A-Z a-z 0-9 _ . -",
			    cr_cfg_q(qb, name), CR_NAME_MAX - 1);
		return;
	}
	i = cr_config_find_lane(cfg, name);
	if (i >= 0) {
		cr_cfg_diag(p, p->line,
			    "duplicate [lane %s] (first on line %d); rename or merge them", name,
			    cfg->lanes[i].line);
		return;
	}
	/* keep a slot for the implicit default lane */
	if (cfg->nlanes == CR_MAX_LANES ||
	    (cfg->nlanes == CR_MAX_LANES - 1 && !p->have_default && strcmp(name, "default"))) {
		cr_cfg_diag(p, p->line,
			    "too many lanes (at most %d, [lane default] included); merge "
			    "lanes with match globs",
			    CR_MAX_LANES);
		return;
	}
	l = &cfg->lanes[cfg->nlanes++];
	cr_cfg_lane_defaults(l, 0);
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
	static const char *const names[] = {"global", "threads", "lane"};
	char qb[QMAX + 4], qb2[QMAX + 4];
	const char *s;
	char *rest;

	section_end(p);
	p->sec = SEC_SKIP;
	rest = inner;
	while (*rest && !cr_cfg_isspace(*rest))
		rest++;
	if (*rest) {
		*rest++ = '\0';
		while (cr_cfg_isspace(*rest))
			rest++;
	}
	if (strcmp(inner, "lane") == 0) {
		if (!*rest)
			cr_cfg_diag(p, p->line, "[lane] needs a name: [lane NAME]");
		else
			lane_begin(p, rest);
		return;
	}
	if ((strcmp(inner, "global") == 0 || strcmp(inner, "threads") == 0)) {
		if (*rest)
			cr_cfg_diag(p, p->line, "[%s] takes no name; remove '%s'", inner,
				    cr_cfg_q(qb, rest));
		else
			p->sec = inner[0] == 'g' ? SEC_GLOBAL : SEC_THREADS;
		return;
	}
	s = cr_cfg_closest(inner, names, ARRAY_SIZE(names), sizeof(names[0]));
	if (s)
		cr_cfg_diag(p, p->line, "unknown section [%s%s%s]; did you mean [%s%s%s]?",
			    cr_cfg_q(qb, inner), *rest ? " " : "", cr_cfg_q(qb2, rest), s,
			    *rest ? " " : "", cr_cfg_q(qb2, rest));
	else
		cr_cfg_diag(p, p->line,
			    "unknown section [%s%s%s]; use [global], [threads] or "
			    "[lane NAME]",
			    cr_cfg_q(qb, inner), *rest ? " " : "", cr_cfg_q(qb2, rest));
}

/* ------------------------------------------------------------------------ */
/* pairs */

/* The key sharing K's field: its alias, or the key it is an alias of. */
static const struct cr_lane_key *alias_partner(const struct cr_lane_key *k)
{
	if (k->alias)
		return cr_cfg_lane_key(k->alias);
	for (size_t i = 0; i < cr_nlane_keys; i++)
		if (cr_lane_keys[i].alias && strcmp(cr_lane_keys[i].alias, k->name) == 0)
			return &cr_lane_keys[i];
	return NULL;
}

static void lane_pair(struct parse *p, const char *name, const char *v)
{
	const struct cr_lane_key *k = cr_cfg_lane_key(name), *other;
	char where[CR_NAME_MAX + 8];
	int id;

	snprintf(where, sizeof(where), "[lane %s]", p->lane->name);
	if (!k) {
		unknown_key(p, name, where, 1);
		return;
	}
	id = (int)(k - cr_lane_keys);
	if (!(k->flags & KEY_LIST) && p->seen[id]) {
		cr_cfg_diag(p, p->line, "%s set twice in %s (first on line %d); keep one", name,
			    where, p->seen[id]);
		return;
	}
	if (!p->seen[id])
		p->seen[id] = p->line;
	other = alias_partner(k);
	if (other && p->seen[other - cr_lane_keys]) {
		cr_cfg_diag(p, p->line, "%s and %s both set; keep one",
			    k->alias ? other->name : name, k->alias ? name : other->name);
		return;
	}
	if (!*v && !(k->flags & KEY_LIST)) {
		cr_cfg_diag(p, p->line, "%s has no value; e.g. %s = %s", name, name, k->example);
		return;
	}
	k->set(p, p->lane, k, v);
}

static void global_pair(struct parse *p, const char *name, const char *v)
{
	const struct cr_global_key *g = cr_cfg_global_key(name);
	int id;

	if (!g) {
		unknown_key(p, name, "[global]", 0);
		return;
	}
	id = (int)(g - cr_global_keys);
	if (p->gseen[id]) {
		cr_cfg_diag(p, p->line, "%s set twice in [global] (first on line %d); keep one",
			    name, p->gseen[id]);
		return;
	}
	p->gseen[id] = p->line;
	g->set(p, v);
}

static void thread_pair(struct parse *p, const char *name, const char *v)
{
	struct cr_config *cfg = p->cfg;
	struct cr_threadrule *t;
	char qb[QMAX + 4], qb2[QMAX + 4];
	size_t n = strlen(name), i;
	int j;

	if (n >= sizeof(t->glob)) {
		cr_cfg_diag(p, p->line,
			    "thread-name glob '%s' is %zu characters; thread names have at "
			    "most 15, shorten it",
			    cr_cfg_q(qb, name), n);
		return;
	}
	for (i = 0; i < n; i++) {
		if (name[i] < 0x20 || name[i] >= 0x7f) {
			cr_cfg_diag(p, p->line,
				    "thread-name glob '%s' has a control or non-ASCII byte",
				    cr_cfg_q(qb, name));
			return;
		}
	}
	if (!cr_cfg_routing_key_ok(v)) {
		cr_cfg_diag(
			p, p->line,
			"bad routing key '%s' for thread rule '%s'; use 1 to %d of "
			"A-Z a-z 0-9 . _ ~ : / @ = - (e.g. reports/batch), optionally +idempotent",
			cr_cfg_q(qb, v), cr_cfg_q(qb2, name), CR_KEY_MAX - 1);
		return;
	}
	for (j = 0; j < cfg->nthreads; j++) {
		if (strcmp(cfg->threads[j].glob, name) == 0) {
			cr_cfg_diag(p, p->line,
				    "thread rule '%s' repeated (first on line %d); keep one", name,
				    cfg->threads[j].line);
			return;
		}
	}
	if (cfg->nthreads == CR_MAX_THREADS) {
		cr_cfg_diag(p, p->line, "too many thread rules (at most %d); use wider globs",
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
		cr_cfg_diag(p, p->line, "missing key name before '='");
		return 1;
	}
	switch (p->sec) {
	case SEC_NONE:
		cr_cfg_diag(p, p->line,
			    "key '%s' is outside any section; put it under [global], "
			    "[threads] or [lane NAME]",
			    cr_cfg_q(qb, name));
		break;
	case SEC_GLOBAL: global_pair(p, name, value); break;
	case SEC_THREADS: thread_pair(p, name, value); break;
	case SEC_LANE: lane_pair(p, name, value); break;
	case SEC_SKIP: break;
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
		if (s[i] == ';' && cr_cfg_isspace(s[i - 1]))
			break;
	while (i > 0 && cr_cfg_isspace(s[i - 1]))
		i--;
	return i;
}

static void header_line(struct parse *p, const char *s, size_t n)
{
	char inner[256], qb[QMAX + 4];
	size_t i, j, b, e;

	/* ']' or an inline comment, whichever comes first */
	for (i = 1; i < n && s[i] != ']' && !(s[i] == ';' && cr_cfg_isspace(s[i - 1])); i++)
		;
	if (i == n || s[i] != ']') {
		section_end(p);
		p->sec = SEC_SKIP;
		cr_cfg_diag(p, p->line,
			    "section header without ']'; write [global], [threads] or "
			    "[lane NAME]");
		return;
	}
	for (j = i + 1; j < n && cr_cfg_isspace(s[j]); j++)
		;
	if (j < n && s[j] != ';' && s[j] != '#') {
		section_end(p);
		p->sec = SEC_SKIP;
		memcpy(inner, s + j, n - j < sizeof(inner) ? n - j : sizeof(inner) - 1);
		inner[n - j < sizeof(inner) ? n - j : sizeof(inner) - 1] = '\0';
		cr_cfg_diag(p, p->line,
			    "unexpected '%s' after the section header; remove it or make it "
			    "a comment with ';'",
			    cr_cfg_q(qb, inner));
		return;
	}
	for (b = 1; b < i && cr_cfg_isspace(s[b]); b++)
		;
	for (e = i; e > b && cr_cfg_isspace(s[e - 1]); e--)
		;
	if (e - b >= sizeof(inner)) {
		section_end(p);
		p->sec = SEC_SKIP;
		cr_cfg_diag(p, p->line,
			    "section header is too long; lane names have at most %d "
			    "characters",
			    CR_NAME_MAX - 1);
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
	while (s < e && cr_cfg_isspace(*s))
		s++;
	if (memchr(s, '\0', (size_t)(e - s))) {
		cr_cfg_diag(p, p->line, "line contains a NUL byte; is this a text file?");
		return buf;
	}
	/* comments never reach inih, so they may be as long as they like */
	if (s == e || *s == ';' || *s == '#')
		return buf;
	n = content_len(s, (size_t)(e - s));
	if (n > (size_t)num - 1) {
		cr_cfg_diag(p, p->line,
			    "line is too long (%zu characters before any comment, at most "
			    "%d); split a long list over several lines with the same key",
			    n, num - 1);
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
		cr_cfg_diag(p, p->line, "expected 'key = value', got '%s'%s", cr_cfg_q(line, line),
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
		cr_cfg_diag(p, 0, "out of memory while parsing");
	else if (rc != 0 && p->diag->n == errors_before)
		cr_cfg_diag(p, rc > 0 ? rc : 0,
			    "syntax error"); /* not expected: read_line pre-checks */

	if (!p->have_default) {
		if (cfg->nlanes < CR_MAX_LANES) {
			lane_implicit(&cfg->lanes[cfg->nlanes++]);
		} else {
			cr_cfg_diag(p, 0,
				    "no room for the implicit [lane default] (at most %d lanes)",
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
		cr_cfg_diag(&p, 0, "no config file given; set CONNROUTE_CONFIG");
		return -1;
	}
	if (cr_cfg_str_copy(cfg->path, sizeof(cfg->path), path, strlen(path)) < 0) {
		cr_cfg_diag(&p, 0, "path is too long (at most %zu bytes)", sizeof(cfg->path) - 1);
		return -1;
	}
	/* O_CLOEXEC: the host process may fork+exec while we read. O_NONBLOCK:
	 * a FIFO (or a device) must never block the host's start-up; only a
	 * regular file is read. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		cr_cfg_diag(&p, 0, "cannot open: %s; check CONNROUTE_CONFIG",
			    strerror_r(errno, eb, sizeof(eb)));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		cr_sys_close(fd);
		cr_cfg_diag(&p, 0, "not a regular file; point CONNROUTE_CONFIG at a config file");
		return -1;
	}
	f = fdopen(fd, "r");
	if (!f) {
		cr_sys_close(fd);
		cr_cfg_diag(&p, 0, "cannot open: %s; check CONNROUTE_CONFIG",
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
				cr_cfg_diag(&p, 0,
					    "larger than %d KiB; a connroute config is a few KB, "
					    "check the path",
					    CR_FILE_MAX / 1024);
				return -1;
			}
			nb = realloc(buf, cap);
			if (!nb) {
				fclose(f);
				free(buf);
				cr_cfg_diag(&p, 0, "out of memory reading the file");
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
		cr_cfg_diag(&p, 0, "cannot read: %s; check CONNROUTE_CONFIG",
			    strerror_r(err, eb, sizeof(eb)));
		return -1;
	}
	fclose(f);
	rc = parse_text(&p, buf ? buf : "", len);
	free(buf);
	return rc;
}
