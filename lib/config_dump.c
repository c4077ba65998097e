/* connroute: `connroute check` output. Every key of the key tables
 * (config_keys.c) is printed by its own dumper, in table order, with
 * defaults resolved; "(app)" marks a value left to the application.
 * Numbers are formatted without printf's locale-dependent decimal point.
 *
 * The output is valid input that means the same: a value that cannot be
 * written (left to the application, none, the fallback) is a comment line
 * "; key = (app)", which reads back as the key's default for a lane in the
 * file, the same unset value; the implicit default lane is commented out
 * whole, so it stays implicit (a written [lane default] gets the defaults
 * of a lane in the file). */
#include "config_int.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

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

/* "  ; NOTE" after the value: the key's zero_note when ZERO, else its note. */
static void end_line(const struct cr_lane_key *k, int zero, FILE *out)
{
	const char *n = zero && k->zero_note ? k->zero_note : k->note;

	if (n)
		fprintf(out, "  ; %s", n);
	fputc('\n', out);
}

/* ------------------------------------------------------------------------ */
/* dumpers by kind of value; each prints "name = value[  ; note]\n" */

/* A whole number; negative = unset. */
void cr_cfg_dump_int(const struct cr_lane *l, const struct cr_lane_key *k, FILE *out)
{
	long long v = cr_cfg_field_get(l, k);

	if (v < 0) {
		fprintf(out, "; %s = (app)\n", k->name);
		return;
	}
	fprintf(out, "%s = %lld", k->name, v);
	end_line(k, v == 0, out);
}

/* A duration in milliseconds (a long). */
void cr_cfg_dump_dur(const struct cr_lane *l, const struct cr_lane_key *k, FILE *out)
{
	long ms = *CR_CFIELD(l, k, long);
	char b[64];

	fprintf(out, "%s = %s", k->name, fmt_dur(b, sizeof(b), ms));
	end_line(k, ms == 0, out);
}

/* A duration in whole seconds (an int); negative = unset. */
void cr_cfg_dump_dursec(const struct cr_lane *l, const struct cr_lane_key *k, FILE *out)
{
	int s = *CR_CFIELD(l, k, int);
	char b[64];

	if (s < 0)
		fprintf(out, "; %s = (app)\n", k->name);
	else
		fprintf(out, "%s = %s\n", k->name, fmt_dur(b, sizeof(b), s * 1000L));
}

/* on/off; negative = unset. */
void cr_cfg_dump_bool(const struct cr_lane *l, const struct cr_lane_key *k, FILE *out)
{
	int v = *CR_CFIELD(l, k, int);

	fprintf(out, "%s%s = %s\n", v < 0 ? "; " : "", k->name, v < 0 ? "(app)" : v ? "on" : "off");
}

/* A ratio (a double), as a percentage with KEY_PERCENT. */
void cr_cfg_dump_ratio(const struct cr_lane *l, const struct cr_lane_key *k, FILE *out)
{
	double v = *CR_CFIELD(l, k, double);
	char b[64];

	if (k->flags & KEY_PERCENT)
		fmt_fixed(b, sizeof(b), v * 100, "%");
	else
		fmt_fixed(b, sizeof(b), v, "");
	fprintf(out, "%s = %s", k->name, b);
	end_line(k, !(v > 0), out);
}

/* A string; "" shows as "-". */
void cr_cfg_dump_str(const struct cr_lane *l, const struct cr_lane_key *k, FILE *out)
{
	const char *s = CR_CFIELD(l, k, char);

	if (s[0])
		fprintf(out, "%s = %s\n", k->name, s);
	else
		fprintf(out, "; %s = (none)\n", k->name);
}

/* The TOS byte and the DSCP it holds (dscp = is an alias of tos). */
void cr_cfg_dump_tos(const struct cr_lane *l, const struct cr_lane_key *k, FILE *out)
{
	int v = *CR_CFIELD(l, k, int);

	if (v >= 0)
		fprintf(out, "%s = 0x%02x  ; dscp %d\n", k->name, v, v >> 2);
	else
		fprintf(out, "; %s = (app)\n", k->name);
}

void cr_cfg_dump_pool_schemes(const struct cr_lane *l, const struct cr_lane_key *k, FILE *out)
{
	long long m = l->pool_schemes;

	if (m == CR_POOL_SCHEMES_ALL) {
		fprintf(out, "%s = *\n", k->name);
		return;
	}
	if (m == 0) {
		fprintf(out, "%s = none\n", k->name);
		return;
	}
	fprintf(out, "%s = ", k->name);
	const char *sep = "";
	for (int i = 0; i < cr_nschemes; i++)
		if (((unsigned long long)m >> i) & 1u) {
			fprintf(out, "%s%s", sep, cr_scheme_names[i]);
			sep = ", ";
		}
	fputc('\n', out);
}

void cr_cfg_dump_min_tls(const struct cr_lane *l, const struct cr_lane_key *k, FILE *out)
{
	if (l->min_tls)
		fprintf(out, "%s = 1.%d\n", k->name, l->min_tls - 10);
	else
		fprintf(out, "; %s = (app)  ; libcurl's default\n", k->name);
}

void cr_cfg_dump_bind(const struct cr_lane *l, const struct cr_lane_key *k, FILE *out)
{
	char a[INET6_ADDRSTRLEN];

	if (l->bind_set) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&l->bind_addr;
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&l->bind_addr;

		if (l->bind_addr.ss_family == AF_INET)
			inet_ntop(AF_INET, &sin->sin_addr, a, sizeof(a));
		else
			inet_ntop(AF_INET6, &sin6->sin6_addr, a, sizeof(a));
		fprintf(out, "%s = %s\n", k->name, a);
	} else {
		fprintf(out, "; %s = (app)\n", k->name);
	}
}

void cr_cfg_dump_match(const struct cr_lane *l, const struct cr_lane_key *k, FILE *out)
{
	int i;

	if (l->implicit || strcmp(l->name, "default") == 0) {
		fprintf(out, "; %s = (fallback for unmatched keys)\n", k->name);
		return;
	}
	fprintf(out, "%s = ", k->name);
	if (!l->nmatch)
		fprintf(out, "%s  ; the lane's name", l->name);
	for (i = 0; i < l->nmatch; i++)
		fprintf(out, "%s%s", i ? ", " : "", l->match[i]);
	fputc('\n', out);
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

void cr_cfg_dump_hosts(const struct cr_lane *l, const struct cr_lane_key *k, FILE *out)
{
	int i;

	if (!l->nhosts) {
		fprintf(out, "; %s = (any destination)\n", k->name);
		return;
	}
	fprintf(out, "%s = ", k->name);
	for (i = 0; i < l->nhosts; i++) {
		if (i)
			fputs(", ", out);
		dump_hostrule(&l->hosts[i], out);
	}
	fputc('\n', out);
}

void cr_cfg_dump_prewarm(const struct cr_lane *l, const struct cr_lane_key *k, FILE *out)
{
	int i;

	if (!l->nprewarm) {
		fprintf(out, "; %s = (none)\n", k->name);
		return;
	}
	fprintf(out, "%s = ", k->name);
	for (i = 0; i < l->nprewarm; i++) {
		const struct cr_prewarm *w = &l->prewarm[i];
		int v6 = strchr(w->host, ':') != NULL;

		fprintf(out, "%s%s%s%s:%d*%d", i ? ", " : "", v6 ? "[" : "", w->host, v6 ? "]" : "",
			w->port, w->count);
	}
	fputc('\n', out);
}

/* ------------------------------------------------------------------------ */
/* [global] */

void cr_cfg_dump_log(const struct cr_config *cfg, FILE *out)
{
	if (cfg->log_level >= CR_LL_ERROR && cfg->log_level <= CR_LL_DEBUG)
		fprintf(out, "log = %s\n", cr_cfg_log_levels[cfg->log_level]);
	else
		fputs("; log = (CONNROUTE_LOG, else warn)\n", out);
}

void cr_cfg_dump_metrics(const struct cr_config *cfg, FILE *out)
{
	fprintf(out, "metrics = %s\n", cfg->metrics[0] ? cfg->metrics : "off");
}

/* ------------------------------------------------------------------------ */

static void dump_keys(const struct cr_lane *l, FILE *out)
{
	for (size_t i = 0; i < cr_nlane_keys; i++)
		if (cr_lane_keys[i].dump) /* an alias shows in its key's line */
			cr_lane_keys[i].dump(l, &cr_lane_keys[i], out);
}

static void dump_lane(const struct cr_lane *l, FILE *out)
{
	fprintf(out, "\n%s[lane %s]", l->implicit ? "; " : "", l->name);
	if (l->implicit)
		fputs("  ; implicit: not in the file", out);
	else
		fprintf(out, "  ; line %d", l->line);
	if (l->passthrough)
		fputs(", pass-through for connect()", out);
	fputc('\n', out);
	if (!l->implicit) {
		dump_keys(l, out);
		return;
	}
	/* Every line a comment (already one, or made one). */
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	if (!m)
		return;
	dump_keys(l, m);
	fclose(m);
	for (char *line = buf; line && *line;) {
		char *nl = strchr(line, '\n');
		size_t n = nl ? (size_t)(nl - line) : strlen(line);
		fprintf(out, "%s%.*s\n", line[0] == ';' ? "" : "; ", (int)n, line);
		line = nl ? nl + 1 : NULL;
	}
	free(buf);
}

void cr_config_dump(const struct cr_config *cfg, FILE *out)
{
	int i;

	fprintf(out, "; connroute configuration: %s\n", cfg->path[0] ? cfg->path : "(not a file)");
	fprintf(out, "; %d lane%s, %d thread rule%s; (app) = left as the application sets it\n",
		cfg->nlanes, cfg->nlanes == 1 ? "" : "s", cfg->nthreads,
		cfg->nthreads == 1 ? "" : "s");
	fputs("\n[global]\n", out);
	for (size_t k = 0; k < cr_nglobal_keys; k++)
		cr_global_keys[k].dump(cfg, out);

	fputs("\n[threads]\n", out);
	for (i = 0; i < cfg->nthreads; i++)
		fprintf(out, "%s = %s\n", cfg->threads[i].glob, cfg->threads[i].key);

	for (i = 0; i < cfg->nlanes; i++)
		dump_lane(&cfg->lanes[i], out);
}
