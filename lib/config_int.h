/* connroute: the config parser's internal interface, shared by its parts
 * (docs/INTERNALS.md, "Config keys"):
 *
 *   config.c         reading: the line reader fed to inih, sections, pairs,
 *                    diagnostics, files, cr_config_finish
 *   config_keys.c    the key tables (the one place a key lives), defaults,
 *                    the connection-settings hash
 *   config_values.c  value parsers: numbers, durations, booleans, ratios,
 *                    addresses, dscp, lists (match, hosts, prewarm)
 *   config_dump.c    `connroute check` output, a loop over the key tables
 *
 * Not for use outside lib/config*.c (and their unit tests). */
#ifndef CR_CONFIG_INT_H
#define CR_CONFIG_INT_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base.h"
#include "config.h"

#define CR_DUR_MAX_MS        INT_MAX /* poll() and friends take int milliseconds */
#define CR_KEEPALIVE_MAX_S   32767   /* MAX_TCP_KEEPIDLE / MAX_TCP_KEEPINTVL */
#define CR_KEEPCNT_MAX       127     /* MAX_TCP_KEEPCNT */
#define CR_PREWARM_COUNT_MAX 1024
#define CR_SUN_PATH_MAX      107 /* sizeof(sun_path) - NUL */
#define CR_PID_DIGITS        7   /* pid_max <= 4194304 */

#define CR_LANE_KEYS_MAX   64 /* bound of the lane key table (parse.seen) */
#define CR_GLOBAL_KEYS_MAX 16

/* ------------------------------------------------------------------------ */
/* parse state and diagnostics (config.c) */

enum cr_sec { SEC_NONE, SEC_GLOBAL, SEC_THREADS, SEC_LANE, SEC_SKIP };

struct parse {
	struct cr_config *cfg;
	struct cr_diag *diag;
	const char *file;    /* name used in messages */
	const char *p, *end; /* unread input */
	int line;            /* physical line last handed to inih */
	enum cr_sec sec;
	struct cr_lane *lane;       /* SEC_LANE */
	int seen[CR_LANE_KEYS_MAX]; /* line each key was set on in this lane, 0 = not yet */
	int gseen[CR_GLOBAL_KEYS_MAX];
	int have_default;
};

/* Records "FILE:LINE: message" (LINE 0: "FILE: message"). */
__attribute__((format(printf, 3, 4))) void cr_cfg_diag(struct parse *p, int line, const char *fmt,
						       ...);

#define QMAX 64
/* A value as it may appear inside a message: bounded, control bytes masked,
 * so a binary file cannot garble the terminal that shows the error. */
const char *cr_cfg_q(char buf[QMAX + 4], const char *s);

/* ------------------------------------------------------------------------ */
/* the key tables (config_keys.c) */

struct cr_lane_key;
typedef int (*cr_lane_setter)(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k,
			      const char *v);
/* Prints the key's whole line, "name = value[  ; comment]\n". */
typedef void (*cr_lane_dumper)(const struct cr_lane *l, const struct cr_lane_key *k, FILE *out);
/* Continues the connection-settings hash H with the key's value. */
typedef uint64_t (*cr_lane_hasher)(uint64_t h, const struct cr_lane *l);

/* The C type of a key's field in struct cr_lane. F_NONE: the key has no
 * single field (a list, or an alias writing another key's field). */
enum cr_field { F_NONE, F_INT, F_LONG, F_LLONG, F_DOUBLE, F_STR };

/* A default, in the field's own unit (ms for durations, s for keepalive). */
struct cr_kval {
	long long i;   /* F_INT, F_LONG, F_LLONG */
	double f;      /* F_DOUBLE */
	const char *s; /* F_STR; NULL = "" */
};

#define KEY_LIST 1u /* may be repeated; each line appends */
#define KEY_HEX  2u /* integer may be written 0x.. */
#define KEY_CONN \
	4u /* carried by a pooled connection: a change on reload
			   * retires the lane's pools (cr_config_lane_conn_hash) */
#define KEY_RAW \
	8u               /* applies to a raw connect(): a lane that leaves every
			   * such key at its implicit value is pass-through */
#define KEY_IMPLICIT 16u /* the implicit default lane uses .implicit, not .def */
#define KEY_PERCENT  32u /* a ratio dumped as a percentage */
#define KEY_HEALTH   64u /* a resilience setting (cr_config_lane_health_hash) */

struct cr_lane_key {
	const char *name;
	cr_lane_setter set; /* parses and validates a value (config_values.c) */
	enum cr_field type;
	size_t off, size;   /* the field in struct cr_lane (F_NONE: none) */
	long long min, max; /* range of a whole number (set_int, set_dursec) */
	unsigned flags;
	const char *example;     /* a valid value, used in messages */
	struct cr_kval def;      /* a lane written in the file */
	struct cr_kval implicit; /* the implicit default lane, with KEY_IMPLICIT */
	cr_lane_dumper dump;     /* NULL only for an alias */
	const char *zero_note;   /* dump comment when the value is 0 ("none") */
	const char *note;        /* dump comment always ("per second") */
	const char *alias;       /* writes this other key's field, and is shown in
				    * its line: they exclude each other */
	cr_lane_hasher hash;     /* KEY_CONN without a plain field */
};

struct cr_global_key {
	const char *name;
	int (*set)(struct parse *p, const char *v);
	void (*dump)(const struct cr_config *cfg, FILE *out);
	const char *example;
};

extern const struct cr_lane_key cr_lane_keys[];
extern const size_t cr_nlane_keys;
extern const struct cr_global_key cr_global_keys[];
extern const size_t cr_nglobal_keys;

const struct cr_lane_key *cr_cfg_lane_key(const char *name);
const struct cr_global_key *cr_cfg_global_key(const char *name);

/* The closest key of the same table to NAME (edit distance <= 2), or NULL. */
const char *cr_cfg_closest_lane_key(const char *name);
const char *cr_cfg_closest_global_key(const char *name);
/* The closest of N names; NAMES[i] is at byte offset i * STRIDE. */
const char *cr_cfg_closest(const char *name, const char *const *names, size_t n, size_t stride);

/* Every key's default: IMPLICIT selects the built-in default lane's. */
void cr_cfg_lane_defaults(struct cr_lane *l, int implicit);

/* Whether every KEY_RAW key of L holds its implicit-lane value. */
int cr_cfg_lane_passthrough(const struct cr_lane *l);

/* Field access. */
#define CR_FIELD(l, k, T)  ((T *)(void *)((char *)(l) + (k)->off))
#define CR_CFIELD(l, k, T) ((const T *)(const void *)((const char *)(l) + (k)->off))
/* The value of a whole-number field (F_INT, F_LONG, F_LLONG), and a store. */
long long cr_cfg_field_get(const struct cr_lane *l, const struct cr_lane_key *k);
void cr_cfg_field_put(struct cr_lane *l, const struct cr_lane_key *k, long long v);

/* ------------------------------------------------------------------------ */
/* value parsers and setters (config_values.c) */

int cr_cfg_set_int(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k, const char *v);
int cr_cfg_set_dur(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k, const char *v);
int cr_cfg_set_dursec(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k,
		      const char *v);
int cr_cfg_set_bool(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k, const char *v);
int cr_cfg_set_dscp(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k, const char *v);
int cr_cfg_set_bind(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k, const char *v);
int cr_cfg_set_min_tls(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k,
		       const char *v);
int cr_cfg_set_pool_schemes(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k,
			    const char *v);
int cr_cfg_set_retry_budget(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k,
			    const char *v);
int cr_cfg_set_fraction(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k,
			const char *v);
int cr_cfg_set_dur_pos(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k,
		       const char *v);
int cr_cfg_set_preconnect(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k,
			  const char *v);
int cr_cfg_set_prewarm_url(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k,
			   const char *v);
int cr_cfg_set_prewarm_method(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k,
			      const char *v);
int cr_cfg_set_match(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k,
		     const char *v);
int cr_cfg_set_hosts(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k,
		     const char *v);
int cr_cfg_set_prewarm(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k,
		       const char *v);

int cr_cfg_set_log(struct parse *p, const char *v);
int cr_cfg_set_metrics(struct parse *p, const char *v);

/* A routing key: [A-Za-z0-9._~:/@=-] and optional "+idempotent" (key.h). */
int cr_cfg_routing_key_ok(const char *k);

/* Copies N bytes of SRC and a NUL into DST; -1 if that does not fit SIZE. */
int cr_cfg_str_copy(char *dst, size_t size, const char *src, size_t n);

/* Locale-independent character classes (the host may have called setlocale). */
static inline int cr_cfg_isalnum(int c)
{
	return cr_isdigit(c) || (cr_lower(c) >= 'a' && cr_lower(c) <= 'z');
}

static inline int cr_cfg_isspace(int c)
{
	return c == ' ' || c == '\t' || c == '\v' || c == '\f';
}

extern const char *const cr_cfg_log_levels[4]; /* by enum cr_loglevel */

/* ------------------------------------------------------------------------ */
/* dump (config_dump.c): one dumper per kind of value */

void cr_cfg_dump_int(const struct cr_lane *l, const struct cr_lane_key *k, FILE *out);
void cr_cfg_dump_tos(const struct cr_lane *l, const struct cr_lane_key *k, FILE *out);
void cr_cfg_dump_dur(const struct cr_lane *l, const struct cr_lane_key *k, FILE *out);
void cr_cfg_dump_dursec(const struct cr_lane *l, const struct cr_lane_key *k, FILE *out);
void cr_cfg_dump_bool(const struct cr_lane *l, const struct cr_lane_key *k, FILE *out);
void cr_cfg_dump_ratio(const struct cr_lane *l, const struct cr_lane_key *k, FILE *out);
void cr_cfg_dump_str(const struct cr_lane *l, const struct cr_lane_key *k, FILE *out);
void cr_cfg_dump_match(const struct cr_lane *l, const struct cr_lane_key *k, FILE *out);
void cr_cfg_dump_hosts(const struct cr_lane *l, const struct cr_lane_key *k, FILE *out);
void cr_cfg_dump_bind(const struct cr_lane *l, const struct cr_lane_key *k, FILE *out);
void cr_cfg_dump_pool_schemes(const struct cr_lane *l, const struct cr_lane_key *k, FILE *out);
void cr_cfg_dump_min_tls(const struct cr_lane *l, const struct cr_lane_key *k, FILE *out);
void cr_cfg_dump_prewarm(const struct cr_lane *l, const struct cr_lane_key *k, FILE *out);

void cr_cfg_dump_log(const struct cr_config *cfg, FILE *out);
void cr_cfg_dump_metrics(const struct cr_config *cfg, FILE *out);

/* ------------------------------------------------------------------------ */
/* reading (config.c) */

/* Derives what the hooks want precomputed (index, passthrough, default_lane).
 * Code that builds or edits a cr_config itself calls it once done. */
void cr_config_finish(struct cr_config *cfg);

#endif
