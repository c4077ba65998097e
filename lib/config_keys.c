/* connroute: the config keys. The tables below are the one place a key lives
 * (docs/INTERNALS.md, "Config keys"): its name, parser, field, range,
 * defaults, dump, and whether it is a connection setting. Defaults, the dump,
 * pass-through and the connection-settings hash are loops over them.
 *
 * Adding a lane key: a field in struct cr_lane (config.h), an entry here, a
 * section in docs/config.md. tests/unit/test_config.c fails when the docs
 * section or the `connroute check` line is missing. */
#include "config_alog.h"
#include "config_int.h"

#include <string.h>

/* A key's field: its type follows the member's declared C type, so the two
 * cannot disagree (a char array decays to char *: a string). */
#define FIELD_TYPE(m) \
	_Generic((m), int: F_INT, long: F_LONG, long long: F_LLONG, double: F_DOUBLE, char *: F_STR)
#define FIELD(f)                                                                          \
	.type = FIELD_TYPE(((struct cr_lane *)0)->f), .off = offsetof(struct cr_lane, f), \
	.size = sizeof(((struct cr_lane *)0)->f)

static uint64_t hash_bind(uint64_t h, const struct cr_lane *l);

/* Order is the order of `connroute check` output and of the hash. */
const struct cr_lane_key cr_lane_keys[] = {
	{.name = "match",
	 .set = cr_cfg_set_match,
	 .flags = KEY_LIST,
	 .example = "payment-gateway/*",
	 .dump = cr_cfg_dump_match},
	{.name = "hosts",
	 .set = cr_cfg_set_hosts,
	 .flags = KEY_LIST,
	 .example = "10.0.0.0/8:443",
	 .dump = cr_cfg_dump_hosts},

	/* limits and timeouts */
	{.name = "max_conns_per_host",
	 .set = cr_cfg_set_int,
	 FIELD(max_conns_per_host),
	 .min = 0,
	 .max = 1000000,
	 .flags = KEY_RAW,
	 .example = "100",
	 .def = {.i = 0},
	 .dump = cr_cfg_dump_int,
	 .zero_note = "unlimited"},
	{.name = "max_idle_per_host",
	 .set = cr_cfg_set_int,
	 FIELD(max_idle_per_host),
	 .min = 0,
	 .max = 1000000,
	 .example = "8",
	 .def = {.i = 8},
	 .dump = cr_cfg_dump_int},
	{.name = "idle_timeout",
	 .set = cr_cfg_set_dur,
	 FIELD(idle_timeout_ms),
	 .example = "90s",
	 .def = {.i = 90000},
	 .dump = cr_cfg_dump_dur},
	{.name = "pool_schemes",
	 .set = cr_cfg_set_pool_schemes,
	 FIELD(pool_schemes),
	 .example = "http, https",
	 .def = {.i = CR_POOL_SCHEMES_DEFAULT},
	 .dump = cr_cfg_dump_pool_schemes},
	{.name = "max_lifetime",
	 .set = cr_cfg_set_dur,
	 FIELD(max_lifetime_ms),
	 .example = "10m",
	 .def = {.i = 0},
	 .dump = cr_cfg_dump_dur,
	 .zero_note = "none"},
	{.name = "connect_timeout",
	 .set = cr_cfg_set_dur,
	 FIELD(connect_timeout_ms),
	 .flags = KEY_RAW | KEY_IMPLICIT,
	 .example = "5s",
	 .def = {.i = 5000},
	 .implicit = {.i = 0},
	 .dump = cr_cfg_dump_dur,
	 .zero_note = "(app)"},
	{.name = "response_header_timeout",
	 .set = cr_cfg_set_dur,
	 FIELD(response_header_timeout_ms),
	 .example = "10s",
	 .def = {.i = 0},
	 .dump = cr_cfg_dump_dur,
	 .zero_note = "none"},
	{.name = "request_timeout",
	 .set = cr_cfg_set_dur,
	 FIELD(request_timeout_ms),
	 .example = "30s",
	 .def = {.i = 0},
	 .dump = cr_cfg_dump_dur,
	 .zero_note = "none"},
	/* -1: connect_timeout's value, resolved at the end of the section */
	{.name = "queue_timeout",
	 .set = cr_cfg_set_dur,
	 FIELD(queue_timeout_ms),
	 .flags = KEY_IMPLICIT,
	 .example = "500ms",
	 .def = {.i = -1},
	 .implicit = {.i = 0},
	 .dump = cr_cfg_dump_dur,
	 .zero_note = "do not wait"},

	/* socket options: -1 = the socket stays as the app made it */
	{.name = "keepalive",
	 .set = cr_cfg_set_dursec,
	 FIELD(keepalive_idle_s),
	 .min = 1,
	 .max = CR_KEEPALIVE_MAX_S,
	 .flags = KEY_CONN | KEY_RAW,
	 .example = "30s",
	 .def = {.i = -1},
	 .dump = cr_cfg_dump_dursec},
	{.name = "keepalive_interval",
	 .set = cr_cfg_set_dursec,
	 FIELD(keepalive_interval_s),
	 .min = 1,
	 .max = CR_KEEPALIVE_MAX_S,
	 .flags = KEY_CONN | KEY_RAW,
	 .example = "10s",
	 .def = {.i = -1},
	 .dump = cr_cfg_dump_dursec},
	{.name = "keepalive_count",
	 .set = cr_cfg_set_int,
	 FIELD(keepalive_count),
	 .min = 1,
	 .max = CR_KEEPCNT_MAX,
	 .flags = KEY_CONN | KEY_RAW,
	 .example = "3",
	 .def = {.i = -1},
	 .dump = cr_cfg_dump_int},
	{.name = "nodelay",
	 .set = cr_cfg_set_bool,
	 FIELD(nodelay),
	 .flags = KEY_CONN | KEY_RAW | KEY_IMPLICIT,
	 .example = "on",
	 .def = {.i = 1},
	 .implicit = {.i = -1},
	 .dump = cr_cfg_dump_bool},
	{.name = "tos",
	 .set = cr_cfg_set_int,
	 FIELD(tos),
	 .min = 0,
	 .max = 255,
	 .flags = KEY_HEX | KEY_CONN | KEY_RAW,
	 .example = "0xb8",
	 .def = {.i = -1},
	 .dump = cr_cfg_dump_tos},
	{.name = "dscp",
	 .set = cr_cfg_set_dscp,
	 .flags = KEY_CONN | KEY_RAW,
	 .example = "ef",
	 .alias = "tos"},
	{.name = "priority",
	 .set = cr_cfg_set_int,
	 FIELD(priority),
	 .min = 0,
	 .max = INT_MAX,
	 .flags = KEY_CONN | KEY_RAW,
	 .example = "6",
	 .def = {.i = -1},
	 .dump = cr_cfg_dump_int},
	{.name = "mark",
	 .set = cr_cfg_set_int,
	 FIELD(mark),
	 .min = 0,
	 .max = UINT32_MAX,
	 .flags = KEY_HEX | KEY_CONN | KEY_RAW,
	 .example = "7",
	 .def = {.i = -1},
	 .dump = cr_cfg_dump_int},
	/* the field is bind_set; the address is hashed by hash_bind */
	{.name = "bind",
	 .set = cr_cfg_set_bind,
	 FIELD(bind_set),
	 .flags = KEY_CONN | KEY_RAW,
	 .example = "127.0.0.2",
	 .def = {.i = 0},
	 .dump = cr_cfg_dump_bind,
	 .hash = hash_bind},

	/* TLS and retries (curl lanes) */
	{.name = "min_tls",
	 .set = cr_cfg_set_min_tls,
	 FIELD(min_tls),
	 .flags = KEY_CONN | KEY_IMPLICIT,
	 .example = "1.2",
	 .def = {.i = 12},
	 .implicit = {.i = 0},
	 .dump = cr_cfg_dump_min_tls},
	{.name = "retries",
	 .set = cr_cfg_set_int,
	 FIELD(retries),
	 .min = 0,
	 .max = 10,
	 .example = "2",
	 .def = {.i = 0},
	 .dump = cr_cfg_dump_int},
	{.name = "retry_budget",
	 .set = cr_cfg_set_retry_budget,
	 FIELD(retry_budget_ratio),
	 .flags = KEY_PERCENT,
	 .example = "20%",
	 .def = {.f = 0.2},
	 .dump = cr_cfg_dump_ratio},
	{.name = "retry_budget_min",
	 .set = cr_cfg_set_int,
	 FIELD(retry_budget_min_per_s),
	 .min = 0,
	 .max = 1000000,
	 .example = "3",
	 .def = {.i = 3},
	 .dump = cr_cfg_dump_int,
	 .note = "per second"},

	/* resilience (lib/health.c, docs/INTERNALS.md "Resilience"): each part is
	 * off until its switch (eject_after, breaker_failure_ratio, retry_tokens)
	 * is set; the switches of the parts a raw connect() uses are KEY_RAW */
	{.name = "eject_after",
	 .set = cr_cfg_set_int,
	 FIELD(eject_after),
	 .min = 0,
	 .max = 1000000,
	 .flags = KEY_RAW | KEY_HEALTH,
	 .example = "5",
	 .def = {.i = 0},
	 .dump = cr_cfg_dump_int,
	 .zero_note = "off"},
	{.name = "eject_time",
	 .set = cr_cfg_set_dur_pos,
	 FIELD(eject_time_ms),
	 .flags = KEY_HEALTH,
	 .example = "30s",
	 .def = {.i = 30000},
	 .dump = cr_cfg_dump_dur},
	{.name = "eject_max",
	 .set = cr_cfg_set_fraction,
	 FIELD(eject_max),
	 .flags = KEY_PERCENT | KEY_HEALTH,
	 .example = "50%",
	 .def = {.f = 0.5},
	 .dump = cr_cfg_dump_ratio},
	{.name = "breaker_failure_ratio",
	 .set = cr_cfg_set_fraction,
	 FIELD(breaker_failure_ratio),
	 .flags = KEY_RAW | KEY_HEALTH,
	 .example = "0.5",
	 .def = {.f = 0},
	 .dump = cr_cfg_dump_ratio,
	 .zero_note = "off"},
	{.name = "breaker_window",
	 .set = cr_cfg_set_dur_pos,
	 FIELD(breaker_window_ms),
	 .flags = KEY_HEALTH,
	 .example = "10s",
	 .def = {.i = 10000},
	 .dump = cr_cfg_dump_dur},
	{.name = "breaker_min_requests",
	 .set = cr_cfg_set_int,
	 FIELD(breaker_min_requests),
	 .min = 1,
	 .max = 1000000,
	 .flags = KEY_HEALTH,
	 .example = "20",
	 .def = {.i = 20},
	 .dump = cr_cfg_dump_int},
	{.name = "breaker_open",
	 .set = cr_cfg_set_dur_pos,
	 FIELD(breaker_open_ms),
	 .flags = KEY_HEALTH,
	 .example = "5s",
	 .def = {.i = 5000},
	 .dump = cr_cfg_dump_dur},
	{.name = "breaker_probes",
	 .set = cr_cfg_set_int,
	 FIELD(breaker_probes),
	 .min = 1,
	 .max = 1000,
	 .flags = KEY_HEALTH,
	 .example = "3",
	 .def = {.i = 3},
	 .dump = cr_cfg_dump_int},
	{.name = "retry_tokens",
	 .set = cr_cfg_set_int,
	 FIELD(retry_tokens),
	 .min = 0,
	 .max = 1000000,
	 .flags = KEY_HEALTH,
	 .example = "10",
	 .def = {.i = 0},
	 .dump = cr_cfg_dump_int,
	 .zero_note = "off"},
	{.name = "retry_token_ratio",
	 .set = cr_cfg_set_fraction,
	 FIELD(retry_token_ratio),
	 .flags = KEY_HEALTH,
	 .example = "0.1",
	 .def = {.f = 0.1},
	 .dump = cr_cfg_dump_ratio},

	/* warm pools */
	{.name = "prewarm",
	 .set = cr_cfg_set_prewarm,
	 .flags = KEY_LIST,
	 .example = "api.internal:443*4",
	 .dump = cr_cfg_dump_prewarm},
	{.name = "prewarm_url",
	 .set = cr_cfg_set_prewarm_url,
	 FIELD(prewarm_url),
	 .example = "https://api.internal/healthz",
	 .dump = cr_cfg_dump_str},
	{.name = "prewarm_method",
	 .set = cr_cfg_set_prewarm_method,
	 FIELD(prewarm_method),
	 .example = "HEAD",
	 .def = {.s = "HEAD"},
	 .dump = cr_cfg_dump_str},
	{.name = "preconnect_ratio",
	 .set = cr_cfg_set_preconnect,
	 FIELD(preconnect_ratio),
	 .example = "0.5",
	 .def = {.f = 0},
	 .dump = cr_cfg_dump_ratio,
	 .zero_note = "off"},
	{.name = "warm_max_idle",
	 .set = cr_cfg_set_dur,
	 FIELD(warm_max_idle_ms),
	 .example = "15s",
	 .def = {.i = 15000},
	 .dump = cr_cfg_dump_dur},

	/* access log (config_alog.c): unset ("" / -1) takes the [global] value at the
	 * end of the load; not connection settings (a reload keeps the pools) */
	{.name = "access_log",
	 .set = cr_cfg_set_access_log,
	 FIELD(access_log),
	 .example = "/var/log/connroute/access.log",
	 .dump = cr_cfg_dump_access_log},
	{.name = "access_log_sample",
	 .set = cr_cfg_set_alog_sample,
	 FIELD(access_log_sample),
	 .example = "0.1",
	 .def = {.f = -1},
	 .dump = cr_cfg_dump_alog_sample},
	{.name = "access_log_slow",
	 .set = cr_cfg_set_dur,
	 FIELD(access_log_slow_ms),
	 .example = "500ms",
	 .def = {.i = -1},
	 .dump = cr_cfg_dump_dur,
	 .zero_note = "every call"},
	{.name = "access_log_query",
	 .set = cr_cfg_set_bool,
	 FIELD(access_log_query),
	 .example = "on",
	 .def = {.i = -1},
	 .dump = cr_cfg_dump_bool},
};
const size_t cr_nlane_keys = ARRAY_SIZE(cr_lane_keys);

_Static_assert(ARRAY_SIZE(cr_lane_keys) <= CR_LANE_KEYS_MAX, "raise CR_LANE_KEYS_MAX");

const struct cr_global_key cr_global_keys[] = {
	{.name = "log", .set = cr_cfg_set_log, .dump = cr_cfg_dump_log, .example = "info"},
	{.name = "metrics",
	 .set = cr_cfg_set_metrics,
	 .dump = cr_cfg_dump_metrics,
	 .example = "127.0.0.1:9464"},
	/* the lanes' access-log defaults, and the process-wide settings of the log */
	{.name = "access_log",
	 .set = cr_cfg_set_g_access_log,
	 .dump = cr_cfg_dump_g_access_log,
	 .example = "/var/log/connroute/access-%p.log"},
	{.name = "access_log_sample",
	 .set = cr_cfg_set_g_alog_sample,
	 .dump = cr_cfg_dump_g_alog_sample,
	 .example = "0.1"},
	{.name = "access_log_slow",
	 .set = cr_cfg_set_g_alog_slow,
	 .dump = cr_cfg_dump_g_alog_slow,
	 .example = "500ms"},
	{.name = "access_log_query",
	 .set = cr_cfg_set_g_alog_query,
	 .dump = cr_cfg_dump_g_alog_query,
	 .example = "on"},
	{.name = "access_log_mode",
	 .set = cr_cfg_set_g_alog_mode,
	 .dump = cr_cfg_dump_g_alog_mode,
	 .example = "0640"},
	{.name = "access_log_buffer",
	 .set = cr_cfg_set_g_alog_buffer,
	 .dump = cr_cfg_dump_g_alog_buffer,
	 .example = "4096"},
};
const size_t cr_nglobal_keys = ARRAY_SIZE(cr_global_keys);

_Static_assert(ARRAY_SIZE(cr_global_keys) <= CR_GLOBAL_KEYS_MAX, "raise CR_GLOBAL_KEYS_MAX");

/* ------------------------------------------------------------------------ */
/* lookups */

const struct cr_lane_key *cr_cfg_lane_key(const char *name)
{
	for (size_t i = 0; i < cr_nlane_keys; i++)
		if (strcmp(cr_lane_keys[i].name, name) == 0)
			return &cr_lane_keys[i];
	return NULL;
}

const struct cr_global_key *cr_cfg_global_key(const char *name)
{
	for (size_t i = 0; i < cr_nglobal_keys; i++)
		if (strcmp(cr_global_keys[i].name, name) == 0)
			return &cr_global_keys[i];
	return NULL;
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
			int ca = cr_lower((unsigned char)a[i - 1]),
			    cb = cr_lower((unsigned char)b[j - 1]);

			v = prev[j - 1] + (ca != cb);
			if (prev[j] + 1 < v)
				v = prev[j] + 1;
			if (row[j - 1] + 1 < v)
				v = row[j - 1] + 1;
			if (i > 1 && j > 1 && ca == cr_lower((unsigned char)b[j - 2]) &&
			    cr_lower((unsigned char)a[i - 2]) == cb && prev2[j - 2] + 1 < v)
				v = prev2[j - 2] + 1;
			row[j] = v;
		}
	}
	return d[la % 3][lb];
}

const char *cr_cfg_closest(const char *name, const char *const *names, size_t n, size_t stride)
{
	const char *best = NULL;
	int bestd = 3, d;
	size_t i;

	for (i = 0; i < n; i++) {
		const char *c = *(const char *const *)(const void *)((const char *)names +
								     i * stride);

		d = edit_distance(name, c);
		if (d < bestd) {
			bestd = d;
			best = c;
		}
	}
	return best;
}

const char *cr_cfg_closest_lane_key(const char *name)
{
	return cr_cfg_closest(name, &cr_lane_keys[0].name, cr_nlane_keys, sizeof(cr_lane_keys[0]));
}

const char *cr_cfg_closest_global_key(const char *name)
{
	return cr_cfg_closest(name, &cr_global_keys[0].name, cr_nglobal_keys,
			      sizeof(cr_global_keys[0]));
}

/* ------------------------------------------------------------------------ */
/* fields, defaults, pass-through, the connection-settings hash */

long long cr_cfg_field_get(const struct cr_lane *l, const struct cr_lane_key *k)
{
	switch (k->type) {
	case F_INT: return *CR_CFIELD(l, k, int);
	case F_LONG: return *CR_CFIELD(l, k, long);
	case F_LLONG: return *CR_CFIELD(l, k, long long);
	default: return 0;
	}
}

void cr_cfg_field_put(struct cr_lane *l, const struct cr_lane_key *k, long long v)
{
	switch (k->type) {
	case F_INT: *CR_FIELD(l, k, int) = (int)v; break;
	case F_LONG: *CR_FIELD(l, k, long) = (long)v; break;
	case F_LLONG: *CR_FIELD(l, k, long long) = v; break;
	default: break;
	}
}

static const struct cr_kval *default_of(const struct cr_lane_key *k, int implicit)
{
	return implicit && (k->flags & KEY_IMPLICIT) ? &k->implicit : &k->def;
}

void cr_cfg_lane_defaults(struct cr_lane *l, int implicit)
{
	memset(l, 0, sizeof(*l));
	for (size_t i = 0; i < cr_nlane_keys; i++) {
		const struct cr_lane_key *k = &cr_lane_keys[i];
		const struct cr_kval *v = default_of(k, implicit);

		switch (k->type) {
		case F_NONE: break;
		case F_DOUBLE: *CR_FIELD(l, k, double) = v->f; break;
		case F_STR:
			if (v->s)
				cr_cfg_str_copy(CR_FIELD(l, k, char), k->size, v->s, strlen(v->s));
			break;
		default: cr_cfg_field_put(l, k, v->i); break;
		}
	}
}

/* The implicit default lane changes nothing the application did not ask
 * for; a lane whose raw-connect keys all hold its values has nothing to do
 * in connect() either. */
int cr_cfg_lane_passthrough(const struct cr_lane *l)
{
	for (size_t i = 0; i < cr_nlane_keys; i++) {
		const struct cr_lane_key *k = &cr_lane_keys[i];
		const struct cr_kval *v = default_of(k, 1);

		if (!(k->flags & KEY_RAW))
			continue;
		switch (k->type) {
		case F_NONE: break;
		case F_DOUBLE:
			if (*CR_CFIELD(l, k, double) != v->f)
				return 0;
			break;
		case F_STR:
			if (strcmp(CR_CFIELD(l, k, char), v->s ? v->s : "") != 0)
				return 0;
			break;
		default:
			if (cr_cfg_field_get(l, k) != v->i)
				return 0;
			break;
		}
	}
	return 1;
}

/* The resilience settings (KEY_HEALTH): lib/health.c keys its state by the
 * lane's stable id and this hash, so a reload that keeps them keeps the
 * state, and one that changes them starts afresh. */
uint64_t cr_config_lane_health_hash(const struct cr_lane *l)
{
	uint64_t h = CR_FNV64_INIT;

	for (size_t i = 0; i < cr_nlane_keys; i++) {
		const struct cr_lane_key *k = &cr_lane_keys[i];

		if ((k->flags & KEY_HEALTH) && k->type != F_NONE)
			h = cr_fnv64(h, CR_CFIELD(l, k, char), k->size);
	}
	return h | 1; /* never 0: 0 marks a free slot in lib/health.c */
}

/* bind_set, then the address when there is one. */
static uint64_t hash_bind(uint64_t h, const struct cr_lane *l)
{
	h = cr_fnv64(h, &l->bind_set, sizeof(l->bind_set));
	if (l->bind_set)
		h = cr_fnv64(h, &l->bind_addr, l->bind_len);
	return h;
}

/* What a pooled connection carries from its lane: socket options and TLS
 * floor (KEY_CONN). Timeouts and limits apply per request. An alias (dscp)
 * has no field of its own: its value is hashed with the key it writes. */
uint64_t cr_config_lane_conn_hash(const struct cr_lane *l)
{
	uint64_t h = CR_FNV64_INIT;

	for (size_t i = 0; i < cr_nlane_keys; i++) {
		const struct cr_lane_key *k = &cr_lane_keys[i];

		if (!(k->flags & KEY_CONN))
			continue;
		if (k->hash)
			h = k->hash(h, l);
		else if (k->type != F_NONE)
			h = cr_fnv64(h, CR_CFIELD(l, k, char), k->size);
	}
	return h;
}
