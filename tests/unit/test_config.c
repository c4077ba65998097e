/* Unit tests of lib/config.c: the INI parser, its defaults and diagnostics. */
#include <criterion/criterion.h>
#include <sys/stat.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "config_int.h" /* the key tables */

/* a cr_config is ~0.75 MB: always on the heap */
static struct cr_config *cfg;
static struct cr_diag *dg;

static void setup(void)
{
	cfg = calloc(1, sizeof(*cfg));
	dg = calloc(1, sizeof(*dg));
	cr_assert(cfg && dg);
}

static void teardown(void)
{
	free(cfg);
	free(dg);
}

TestSuite(config, .init = setup, .fini = teardown);

static int load(const char *text)
{
	return cr_config_load_string(text, "conf.ini", cfg, dg);
}

static void load_ok(const char *text)
{
	int rc = load(text);

	cr_assert_eq(rc, 0, "rejected (%d errors), first: %s\n--- input:\n%s", dg->n,
		     dg->n ? dg->msg[0] : "", text);
	cr_assert_eq(dg->n, 0);
}

/* TEXT must be rejected with exactly one diagnostic, MSG. */
static void expect_error(const char *text, const char *msg)
{
	int rc = load(text);

	cr_assert_eq(rc, -1, "accepted:\n%s", text);
	cr_assert_eq(dg->n, 1, "%d errors for:\n%s\nfirst: %s\nsecond: %s", dg->n, text,
		     dg->msg[0], dg->n > 1 ? dg->msg[1] : "");
	cr_assert_str_eq(dg->msg[0], msg);
}

/* "[lane t]" on line 1, BODY from line 2. */
static const struct cr_lane *lane_ok(const char *body)
{
	char text[4096];
	int i;

	snprintf(text, sizeof(text), "[lane t]\n%s\n", body);
	load_ok(text);
	i = cr_config_find_lane(cfg, "t");
	cr_assert_geq(i, 0);
	return &cfg->lanes[i];
}

static void lane_error(const char *body, const char *msg)
{
	char text[4096];

	snprintf(text, sizeof(text), "[lane t]\n%s\n", body);
	expect_error(text, msg);
}

static void check_file_lane_defaults(const struct cr_lane *l)
{
	cr_assert_eq(l->implicit, 0);
	cr_assert_eq(l->nmatch, 0);
	cr_assert_eq(l->nhosts, 0);
	cr_assert_eq(l->max_conns_per_host, 0);
	cr_assert_eq(l->max_idle_per_host, 8);
	cr_assert_eq(l->idle_timeout_ms, 90000);
	cr_assert_eq(l->max_lifetime_ms, 0);
	cr_assert_eq(l->connect_timeout_ms, 5000);
	cr_assert_eq(l->response_header_timeout_ms, 0);
	cr_assert_eq(l->request_timeout_ms, 0);
	cr_assert_eq(l->queue_timeout_ms, 5000);
	cr_assert_eq(l->keepalive_idle_s, -1);
	cr_assert_eq(l->keepalive_interval_s, -1);
	cr_assert_eq(l->keepalive_count, -1);
	cr_assert_eq(l->nodelay, 1);
	cr_assert_eq(l->tos, -1);
	cr_assert_eq(l->priority, -1);
	cr_assert_eq(l->mark, -1);
	cr_assert_eq(l->bind_set, 0);
	cr_assert_eq(l->min_tls, 12);
	cr_assert_eq(l->retries, 0);
	cr_assert_float_eq(l->retry_budget_ratio, 0.2, 1e-9);
	cr_assert_eq(l->retry_budget_min_per_s, 3);
	cr_assert_eq(l->nprewarm, 0);
	cr_assert_str_eq(l->prewarm_url, "");
	cr_assert_str_eq(l->prewarm_method, "HEAD");
	cr_assert_float_eq(l->preconnect_ratio, 0.0, 1e-9);
	cr_assert_eq(l->warm_max_idle_ms, 15000);
	cr_assert_eq(l->passthrough, 0);
}

static void check_implicit_default(const struct cr_lane *l)
{
	cr_assert_str_eq(l->name, "default");
	cr_assert_eq(l->implicit, 1);
	cr_assert_eq(l->line, 0);
	cr_assert_eq(l->passthrough, 1);
	cr_assert_eq(l->nmatch, 0);
	cr_assert_eq(l->nhosts, 0);
	cr_assert_eq(l->max_conns_per_host, 0);
	cr_assert_eq(l->max_idle_per_host, 8);
	cr_assert_eq(l->idle_timeout_ms, 90000);
	cr_assert_eq(l->max_lifetime_ms, 0);
	cr_assert_eq(l->connect_timeout_ms, 0);
	cr_assert_eq(l->response_header_timeout_ms, 0);
	cr_assert_eq(l->request_timeout_ms, 0);
	cr_assert_eq(l->queue_timeout_ms, 0);
	cr_assert_eq(l->keepalive_idle_s, -1);
	cr_assert_eq(l->keepalive_interval_s, -1);
	cr_assert_eq(l->keepalive_count, -1);
	cr_assert_eq(l->nodelay, -1);
	cr_assert_eq(l->tos, -1);
	cr_assert_eq(l->priority, -1);
	cr_assert_eq(l->mark, -1);
	cr_assert_eq(l->bind_set, 0);
	cr_assert_eq(l->min_tls, 0);
	cr_assert_eq(l->retries, 0);
	cr_assert_float_eq(l->retry_budget_ratio, 0.2, 1e-9);
	cr_assert_eq(l->retry_budget_min_per_s, 3);
	cr_assert_eq(l->nprewarm, 0);
	cr_assert_str_eq(l->prewarm_method, "HEAD");
	cr_assert_eq(l->warm_max_idle_ms, 15000);
}

/* ------------------------------------------------------------------------ */
/* defaults and the default lane */

Test(config, builtin_is_one_implicit_passthrough_lane)
{
	cr_config_builtin(cfg);
	cr_assert_eq(cfg->nlanes, 1);
	cr_assert_eq(cfg->default_lane, 0);
	cr_assert_eq(cfg->lanes[0].index, 0);
	cr_assert_eq(cfg->log_level, -1);
	cr_assert_str_eq(cfg->metrics, "");
	cr_assert_str_eq(cfg->path, "");
	cr_assert_eq(cfg->nthreads, 0);
	check_implicit_default(&cfg->lanes[0]);
}

Test(config, empty_file_equals_builtin)
{
	load_ok("");
	cr_assert_eq(cfg->nlanes, 1);
	cr_assert_eq(cfg->default_lane, 0);
	cr_assert_eq(cfg->log_level, -1);
	check_implicit_default(&cfg->lanes[0]);
}

Test(config, lane_in_file_gets_documented_defaults)
{
	const struct cr_lane *l = lane_ok("");

	cr_assert_eq(l->line, 1);
	check_file_lane_defaults(l);
}

Test(config, implicit_default_lane_is_appended_last)
{
	load_ok("[lane a]\n[lane b]\n");
	cr_assert_eq(cfg->nlanes, 3);
	cr_assert_str_eq(cfg->lanes[0].name, "a");
	cr_assert_str_eq(cfg->lanes[1].name, "b");
	cr_assert_eq(cfg->default_lane, 2);
	check_implicit_default(&cfg->lanes[2]);
	for (int i = 0; i < cfg->nlanes; i++)
		cr_assert_eq(cfg->lanes[i].index, i);
}

/* inih calls nothing for a section without keys: an empty [lane default]
 * must still be seen. */
Test(config, explicit_empty_default_lane_gets_normal_defaults)
{
	load_ok("[lane default]\n[lane b]\n");
	cr_assert_eq(cfg->nlanes, 2);
	cr_assert_eq(cfg->default_lane, 0);
	cr_assert_eq(cfg->lanes[0].line, 1);
	check_file_lane_defaults(&cfg->lanes[0]);
}

Test(config, explicit_default_lane_takes_knobs)
{
	load_ok("[lane default]\nconnect_timeout = 2s\nnodelay = off\n");
	cr_assert_eq(cfg->nlanes, 1);
	cr_assert_eq(cfg->lanes[0].connect_timeout_ms, 2000);
	cr_assert_eq(cfg->lanes[0].queue_timeout_ms, 2000);
	cr_assert_eq(cfg->lanes[0].nodelay, 0);
}

Test(config, match_in_default_lane_is_an_error)
{
	expect_error("[lane default]\nmatch = x\n",
		     "conf.ini:2: match in [lane default]: the default lane is the fallback for keys "
		     "no other lane matches; remove match, or rename the lane");
}

Test(config, hosts_in_default_lane_is_an_error)
{
	expect_error("[lane default]\nhosts = *:80\n",
		     "conf.ini:2: hosts in [lane default]: the default lane is the fallback for "
		     "every destination; remove hosts, or rename the lane");
}

Test(config, queue_timeout_follows_connect_timeout_set_later_in_lane)
{
	const struct cr_lane *l = lane_ok("max_conns_per_host = 4\nconnect_timeout = 750ms");

	cr_assert_eq(l->queue_timeout_ms, 750);
}

Test(config, queue_timeout_explicit_wins_even_zero)
{
	const struct cr_lane *l = lane_ok("queue_timeout = 0\nconnect_timeout = 3s");

	cr_assert_eq(l->queue_timeout_ms, 0);
	cr_assert_eq(l->connect_timeout_ms, 3000);
}

Test(config, passthrough_only_when_nothing_applies_to_connect)
{
	load_ok("[lane a]\nconnect_timeout = 0\n");
	/* nodelay defaults to on in a file lane: not pass-through */
	cr_assert_eq(cfg->lanes[0].passthrough, 0);
	cr_assert_eq(cfg->lanes[1].passthrough, 1);
}

Test(config, find_lane_by_name)
{
	load_ok("[lane a]\n[lane b]\n");
	cr_assert_eq(cr_config_find_lane(cfg, "a"), 0);
	cr_assert_eq(cr_config_find_lane(cfg, "b"), 1);
	cr_assert_eq(cr_config_find_lane(cfg, "default"), 2);
	cr_assert_eq(cr_config_find_lane(cfg, "c"), -1);
}

/* ------------------------------------------------------------------------ */
/* lanes and sections */

Test(config, duplicate_lane)
{
	expect_error("[lane a]\n\n[lane a]\nretries = 1\n",
		     "conf.ini:3: duplicate [lane a] (first on line 1); rename or merge them");
}

Test(config, bad_lane_names)
{
	expect_error("[lane a b]\n",
		     "conf.ini:1: bad lane name 'a b'; use 1 to 63 of A-Z a-z 0-9 _ . -");
	expect_error("[lane a/b]\n",
		     "conf.ini:1: bad lane name 'a/b'; use 1 to 63 of A-Z a-z 0-9 _ . -");
	load_ok("[lane A-z_0.9]\n");

	char text[128];

	snprintf(text, sizeof(text), "[lane %063d]\n", 0);
	load_ok(text);
	snprintf(text, sizeof(text), "[lane %064d]\n", 0);
	cr_assert_eq(load(text), -1);
}

Test(config, lane_without_name)
{
	expect_error("[lane]\n", "conf.ini:1: [lane] needs a name: [lane NAME]");
}

Test(config, unknown_section_with_suggestion)
{
	expect_error("[globl]\n", "conf.ini:1: unknown section [globl]; did you mean [global]?");
	expect_error("[lanes critical]\n",
		     "conf.ini:1: unknown section [lanes critical]; did you mean [lane critical]?");
}

Test(config, unknown_section_without_suggestion_skips_its_keys)
{
	expect_error("[upstreams]\nfoo = bar\n",
		     "conf.ini:1: unknown section [upstreams]; use [global], [threads] or "
		     "[lane NAME]");
}

Test(config, global_takes_no_name)
{
	expect_error("[global x]\n", "conf.ini:1: [global] takes no name; remove 'x'");
}

Test(config, section_header_without_bracket)
{
	expect_error("[lane a\nretries = 1\n",
		     "conf.ini:1: section header without ']'; write [global], [threads] or "
		     "[lane NAME]");
}

Test(config, text_after_section_header)
{
	expect_error("[lane a] x\n", "conf.ini:1: unexpected 'x' after the section header; "
		     "remove it or make it a comment with ';'");
	load_ok("[lane a] ; a comment\n[lane b]  # another\n");
}

Test(config, key_outside_any_section)
{
	expect_error("retries = 1\n[lane a]\n",
		     "conf.ini:1: key 'retries' is outside any section; put it under [global], "
		     "[threads] or [lane NAME]");
}

Test(config, line_without_equals)
{
	expect_error("[lane a]\nretries\n", "conf.ini:2: expected 'key = value', got 'retries'");
	/* "; = 2" is a comment (inih: ';' after whitespace) */
	expect_error("[lane a]\nretries ; = 2\n", "conf.ini:2: expected 'key = value', got 'retries'");
}

Test(config, missing_key_name)
{
	expect_error("[lane a]\n= 2\n", "conf.ini:2: missing key name before '='");
}

Test(config, too_many_lanes)
{
	char text[8192];
	size_t off = 0;
	int i;

	/* 63 named lanes + the implicit default fill the table */
	for (i = 0; i < CR_MAX_LANES - 1; i++)
		off += (size_t)snprintf(text + off, sizeof(text) - off, "[lane l%d]\n", i);
	load_ok(text);
	cr_assert_eq(cfg->nlanes, CR_MAX_LANES);
	cr_assert(cfg->lanes[CR_MAX_LANES - 1].implicit);

	/* a 64th named lane leaves no room for the default */
	snprintf(text + off, sizeof(text) - off, "[lane extra]\nretries = 1\n");
	expect_error(text, "conf.ini:64: too many lanes (at most 64, [lane default] included); "
		     "merge lanes with match globs");

	/* ... unless it is the default itself */
	snprintf(text + off, sizeof(text) - off, "[lane default]\n");
	load_ok(text);
	cr_assert_eq(cfg->nlanes, CR_MAX_LANES);
	cr_assert_eq(cfg->default_lane, CR_MAX_LANES - 1);
	cr_assert_eq(cfg->lanes[CR_MAX_LANES - 1].implicit, 0);
}

/* ------------------------------------------------------------------------ */
/* keys */

Test(config, unknown_key_suggests_closest)
{
	expect_error("[global]\n[lane critical]\nmatch = x\n\n\n\nconect_timeout = 1s\n",
		     "conf.ini:7: unknown key 'conect_timeout' in [lane critical]; did you mean "
		     "'connect_timeout'?");
	lane_error("keepalive_intreval = 5s", "conf.ini:2: unknown key 'keepalive_intreval' in "
		   "[lane t]; did you mean 'keepalive_interval'?");
	lane_error("Connect_Timeout = 1s", "conf.ini:2: unknown key 'Connect_Timeout' in "
		   "[lane t]; did you mean 'connect_timeout'?");
	lane_error("connect-timeout = 1s", "conf.ini:2: unknown key 'connect-timeout' in "
		   "[lane t]; did you mean 'connect_timeout'?");
}

Test(config, unknown_key_without_suggestion)
{
	lane_error("frobnicate = 1",
		   "conf.ini:2: unknown key 'frobnicate' in [lane t]; see docs/config.md for the "
		   "keys");
	expect_error("[global]\nverbose = 1\n",
		     "conf.ini:2: unknown key 'verbose' in [global]; see docs/config.md for the keys");
}

Test(config, key_in_wrong_section)
{
	lane_error("log = warn", "conf.ini:2: 'log' in [lane t] belongs in [global]; move it there");
	expect_error("[global]\nretries = 2\n", "conf.ini:2: 'retries' in [global] is a lane "
		     "setting; put it in a [lane NAME] section");
}

Test(config, scalar_key_set_twice)
{
	lane_error("retries = 1\nretries = 2",
		   "conf.ini:3: retries set twice in [lane t] (first on line 2); keep one");
	expect_error("[global]\nlog = warn\nlog = info\n",
		     "conf.ini:3: log set twice in [global] (first on line 2); keep one");
}

Test(config, empty_value)
{
	lane_error("connect_timeout =", "conf.ini:2: connect_timeout has no value; e.g. "
		   "connect_timeout = 5s");
}

Test(config, colon_separator_is_accepted)
{
	const struct cr_lane *l = lane_ok("connect_timeout: 2s");

	cr_assert_eq(l->connect_timeout_ms, 2000);
}

Test(config, comments)
{
	const struct cr_lane *l =
		lane_ok("; a comment\n# another\nretries = 2 ; inline\nprewarm_url = http://a/b;c");

	cr_assert_eq(l->retries, 2);
	/* ';' not preceded by a space is part of the value (inih's rule) */
	cr_assert_str_eq(l->prewarm_url, "http://a/b;c");
}

/* inih treats an indented line as a continuation of the previous key; the
 * reader strips indentation so nested-looking files parse as written. */
Test(config, indented_keys_are_not_continuations)
{
	load_ok("[lane a]\n    match = x/*\n    hosts = *:443\n\tretries = 2\n");
	cr_assert_eq(cfg->lanes[0].nmatch, 1);
	cr_assert_str_eq(cfg->lanes[0].match[0], "x/*");
	cr_assert_eq(cfg->lanes[0].nhosts, 1);
	cr_assert_eq(cfg->lanes[0].retries, 2);
}

Test(config, bom_and_crlf)
{
	load_ok("\xEF\xBB\xBF[lane a]\r\nretries = 3\r\n");
	cr_assert_str_eq(cfg->lanes[0].name, "a");
	cr_assert_eq(cfg->lanes[0].retries, 3);
}

/* ------------------------------------------------------------------------ */
/* durations */

Test(config, parse_duration_ms)
{
	static const struct {
		const char *s;
		long ms;
	} t[] = {
		{ "250ms", 250 },  { "1s", 1000 },	  { "1.5s", 1500 },  { "2m", 120000 },
		{ "0", 0 },	   { "0s", 0 },		  { "0ms", 0 },	     { "0.0", 0 },
		{ ".5s", 500 },	   { "0.001s", 1 },	  { "5 s", 5000 },   { "1.25m", 75000 },
		{ "35791m", 35791L * 60000 },
		{ "5", -1 },	   { "5x", -1 },	  { "", -1 },	     { "-1s", -1 },
		{ "1.5ms", -1 },   { "5.", -1 },	  { ".", -1 },	     { "1e3ms", -1 },
		{ "5S", -1 },	   { "1h", -1 },	  { "35792m", -1 },  { "1.0.0s", -1 },
		{ "0.0001s", -1 }, { "99999999999999999s", -1 },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		cr_expect_eq(cr_parse_duration_ms(t[i].s), t[i].ms, "'%s' -> %ld, want %ld", t[i].s,
			     cr_parse_duration_ms(t[i].s), t[i].ms);
	cr_expect_eq(cr_parse_duration_ms(NULL), -1);
}

static const char *const duration_keys[] = {
	"idle_timeout",	   "max_lifetime",    "connect_timeout", "response_header_timeout",
	"request_timeout", "queue_timeout",   "warm_max_idle",
};

static long duration_field(const struct cr_lane *l, const char *key)
{
	if (!strcmp(key, "idle_timeout"))
		return l->idle_timeout_ms;
	if (!strcmp(key, "max_lifetime"))
		return l->max_lifetime_ms;
	if (!strcmp(key, "connect_timeout"))
		return l->connect_timeout_ms;
	if (!strcmp(key, "response_header_timeout"))
		return l->response_header_timeout_ms;
	if (!strcmp(key, "request_timeout"))
		return l->request_timeout_ms;
	if (!strcmp(key, "queue_timeout"))
		return l->queue_timeout_ms;
	return l->warm_max_idle_ms;
}

Test(config, every_duration_knob_parses)
{
	char body[128];

	for (size_t i = 0; i < sizeof(duration_keys) / sizeof(duration_keys[0]); i++) {
		snprintf(body, sizeof(body), "%s = 1.5s", duration_keys[i]);
		cr_assert_eq(duration_field(lane_ok(body), duration_keys[i]), 1500, "%s",
			     duration_keys[i]);
		snprintf(body, sizeof(body), "%s = 2m", duration_keys[i]);
		cr_assert_eq(duration_field(lane_ok(body), duration_keys[i]), 120000);
		snprintf(body, sizeof(body), "%s = 0", duration_keys[i]);
		cr_assert_eq(duration_field(lane_ok(body), duration_keys[i]), 0);
	}
}

Test(config, every_duration_knob_rejects_bad_unit)
{
	char body[128], msg[256];

	for (size_t i = 0; i < sizeof(duration_keys) / sizeof(duration_keys[0]); i++) {
		snprintf(body, sizeof(body), "%s = 5x", duration_keys[i]);
		snprintf(msg, sizeof(msg), "conf.ini:2: bad duration '5x' for %s; use a number with "
			 "ms, s or m (e.g. 500ms, 5s)", duration_keys[i]);
		lane_error(body, msg);
	}
}

Test(config, duration_needs_unit)
{
	lane_error("connect_timeout = 5",
		   "conf.ini:2: duration '5' for connect_timeout has no unit; write 5s or 5ms");
}

Test(config, duration_needs_unit_decimal)
{
	lane_error("request_timeout = 2.5",
		   "conf.ini:2: duration '2.5' for request_timeout has no unit; write 2.5s");
}

Test(config, duration_too_long)
{
	lane_error("idle_timeout = 40000m", "conf.ini:2: duration '40000m' for idle_timeout is "
		   "too long; the maximum is 35791m");
}

Test(config, duration_finer_than_ms)
{
	lane_error("queue_timeout = 0.5ms", "conf.ini:2: duration '0.5ms' for queue_timeout is "
		   "finer than 1ms; round it to whole ms");
}

/* ------------------------------------------------------------------------ */
/* integers */

Test(config, max_conns_and_idle_per_host)
{
	const struct cr_lane *l = lane_ok("max_conns_per_host = 100\nmax_idle_per_host = 0");

	cr_assert_eq(l->max_conns_per_host, 100);
	cr_assert_eq(l->max_idle_per_host, 0);
	lane_error("max_conns_per_host = -1", "conf.ini:2: bad value '-1' for max_conns_per_host; "
		   "use a whole number from 0 to 1000000");
	lane_error("max_conns_per_host = 10k", "conf.ini:2: bad value '10k' for "
		   "max_conns_per_host; use a whole number from 0 to 1000000");
	lane_error("max_idle_per_host = 1000001", "conf.ini:2: max_idle_per_host = 1000001 is out "
		   "of range; use 0 to 1000000");
	lane_error("max_idle_per_host = 99999999999999999999999",
		   "conf.ini:2: max_idle_per_host = 99999999999999999999999 is out of range; use "
		   "0 to 1000000");
}

Test(config, retries)
{
	cr_assert_eq(lane_ok("retries = 10")->retries, 10);
	cr_assert_eq(lane_ok("retries = 0")->retries, 0);
	lane_error("retries = 11", "conf.ini:2: retries = 11 is out of range; use 0 to 10");
	lane_error("retries = two",
		   "conf.ini:2: bad value 'two' for retries; use a whole number from 0 to 10");
}

Test(config, retry_budget_min)
{
	cr_assert_eq(lane_ok("retry_budget_min = 0")->retry_budget_min_per_s, 0);
	cr_assert_eq(lane_ok("retry_budget_min = 50")->retry_budget_min_per_s, 50);
	lane_error("retry_budget_min = 1.5", "conf.ini:2: bad value '1.5' for retry_budget_min; "
		   "use a whole number from 0 to 1000000");
}

Test(config, keepalive_count)
{
	cr_assert_eq(lane_ok("keepalive_count = 5")->keepalive_count, 5);
	cr_assert_eq(lane_ok("keepalive_count = 127")->keepalive_count, 127);
	lane_error("keepalive_count = 0",
		   "conf.ini:2: keepalive_count = 0 is out of range; use 1 to 127");
	lane_error("keepalive_count = 128",
		   "conf.ini:2: keepalive_count = 128 is out of range; use 1 to 127");
}

Test(config, priority)
{
	cr_assert_eq(lane_ok("priority = 6")->priority, 6);
	cr_assert_eq(lane_ok("priority = 2147483647")->priority, 2147483647L);
	lane_error("priority = 2147483648",
		   "conf.ini:2: priority = 2147483648 is out of range; use 0 to 2147483647");
	lane_error("priority = high", "conf.ini:2: bad value 'high' for priority; use a whole "
		   "number from 0 to 2147483647");
}

Test(config, mark)
{
	cr_assert_eq(lane_ok("mark = 7")->mark, 7);
	cr_assert_eq(lane_ok("mark = 0")->mark, 0);
	cr_assert_eq(lane_ok("mark = 0xffffffff")->mark, 0xffffffffLL);
	lane_error("mark = 4294967296",
		   "conf.ini:2: mark = 4294967296 is out of range; use 0 to 4294967295");
	lane_error("mark = 0xg", "conf.ini:2: bad value '0xg' for mark; use a whole number from "
		   "0 to 4294967295 (decimal or 0x hex)");
}

/* ------------------------------------------------------------------------ */
/* socket options */

Test(config, keepalive_whole_seconds)
{
	const struct cr_lane *l = lane_ok("keepalive = 30s\nkeepalive_interval = 1m");

	cr_assert_eq(l->keepalive_idle_s, 30);
	cr_assert_eq(l->keepalive_interval_s, 60);
	cr_assert_eq(l->keepalive_count, -1);
	cr_assert_eq(lane_ok("keepalive = 2000ms")->keepalive_idle_s, 2);
	lane_error("keepalive = 1500ms", "conf.ini:2: keepalive = 1500ms: it sets TCP_KEEPIDLE, "
		   "whole seconds from 1s to 32767s; e.g. keepalive = 30s");
	lane_error("keepalive = 0", "conf.ini:2: keepalive = 0: it sets TCP_KEEPIDLE, whole "
		   "seconds from 1s to 32767s; e.g. keepalive = 30s");
	lane_error("keepalive_interval = 600m", "conf.ini:2: keepalive_interval = 600m: it sets "
		   "TCP_KEEPINTVL, whole seconds from 1s to 32767s; e.g. keepalive_interval = 10s");
	lane_error("keepalive = 30", "conf.ini:2: duration '30' for keepalive has no unit; "
		   "write 30s or 30ms");
}

Test(config, nodelay_booleans)
{
	static const char *const on[] = { "on", "yes", "true", "1", "ON", "True" };
	static const char *const off[] = { "off", "no", "false", "0", "OFF", "No" };
	char body[64];

	for (size_t i = 0; i < sizeof(on) / sizeof(on[0]); i++) {
		snprintf(body, sizeof(body), "nodelay = %s", on[i]);
		cr_assert_eq(lane_ok(body)->nodelay, 1, "%s", on[i]);
		snprintf(body, sizeof(body), "nodelay = %s", off[i]);
		cr_assert_eq(lane_ok(body)->nodelay, 0, "%s", off[i]);
	}
	lane_error("nodelay = enabled", "conf.ini:2: bad value 'enabled' for nodelay; use on or off");
}

Test(config, tos)
{
	cr_assert_eq(lane_ok("tos = 0xb8")->tos, 0xb8);
	cr_assert_eq(lane_ok("tos = 184")->tos, 184);
	cr_assert_eq(lane_ok("tos = 0")->tos, 0);
	lane_error("tos = 256", "conf.ini:2: tos = 256 is out of range; use 0 to 255");
	lane_error("tos = 0x100", "conf.ini:2: tos = 0x100 is out of range; use 0 to 255");
	lane_error("tos = lowdelay", "conf.ini:2: bad value 'lowdelay' for tos; use a whole number "
		   "from 0 to 255 (decimal or 0x hex)");
}

Test(config, dscp_names_and_numbers)
{
	static const struct {
		const char *v;
		int tos;
	} t[] = {
		{ "ef", 0xb8 },	   { "EF", 0xb8 },    { "af11", 10 << 2 }, { "af12", 12 << 2 },
		{ "af13", 14 << 2 }, { "af21", 18 << 2 }, { "af31", 26 << 2 }, { "af41", 34 << 2 },
		{ "af43", 38 << 2 }, { "cs0", 0 },	    { "cs1", 8 << 2 },   { "cs6", 48 << 2 },
		{ "cs7", 56 << 2 },	{ "0", 0 },	    { "46", 0xb8 },	   { "63", 63 << 2 },
	};
	char body[64];

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		snprintf(body, sizeof(body), "dscp = %s", t[i].v);
		cr_assert_eq(lane_ok(body)->tos, t[i].tos, "dscp %s", t[i].v);
	}
	static const char *const bad[] = { "64", "af44", "af51", "af10", "cs8", "ef1", "x" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char msg[256];

		snprintf(body, sizeof(body), "dscp = %s", bad[i]);
		snprintf(msg, sizeof(msg), "conf.ini:2: bad dscp '%s'; use ef, af11..af43, cs0..cs7 "
			 "or a number from 0 to 63", bad[i]);
		lane_error(body, msg);
	}
}

Test(config, tos_and_dscp_both_set)
{
	expect_error("[lane t]\n\n\n\n\n\n\ntos = 0xb8\ndscp = ef\n",
		     "conf.ini:9: tos and dscp both set; keep one");
	lane_error("dscp = af11\ntos = 4", "conf.ini:3: tos and dscp both set; keep one");
}

Test(config, bind_addresses)
{
	const struct cr_lane *l = lane_ok("bind = 127.0.0.2");
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&l->bind_addr;

	cr_assert_eq(l->bind_set, 1);
	cr_assert_eq(l->bind_len, sizeof(struct sockaddr_in));
	cr_assert_eq(sin->sin_family, AF_INET);
	cr_assert_eq(sin->sin_port, 0);
	cr_assert_eq(sin->sin_addr.s_addr, htonl(0x7f000002));

	static const char *const v6[] = { "bind = ::1", "bind = [::1]" };

	for (int i = 0; i < 2; i++) {
		const struct sockaddr_in6 *sin6;

		l = lane_ok(v6[i]);
		sin6 = (const struct sockaddr_in6 *)&l->bind_addr;
		cr_assert_eq(l->bind_len, sizeof(struct sockaddr_in6));
		cr_assert_eq(sin6->sin6_family, AF_INET6);
		cr_assert(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
	}
	lane_error("bind = 127.0.0.2:80", "conf.ini:2: bad bind address '127.0.0.2:80'; use an "
		   "IPv4 or IPv6 address without a port (e.g. 127.0.0.2 or ::1)");
	lane_error("bind = eth0", "conf.ini:2: bad bind address 'eth0'; use an IPv4 or IPv6 "
		   "address without a port (e.g. 127.0.0.2 or ::1)");
}

/* ------------------------------------------------------------------------ */
/* TLS, retries, warm pools */

Test(config, min_tls)
{
	cr_assert_eq(lane_ok("min_tls = 1.0")->min_tls, 10);
	cr_assert_eq(lane_ok("min_tls = 1.1")->min_tls, 11);
	cr_assert_eq(lane_ok("min_tls = 1.2")->min_tls, 12);
	cr_assert_eq(lane_ok("min_tls = 1.3")->min_tls, 13);
	lane_error("min_tls = 1.4", "conf.ini:2: bad min_tls '1.4'; use 1.0, 1.1, 1.2 or 1.3");
	lane_error("min_tls = TLSv1.2",
		   "conf.ini:2: bad min_tls 'TLSv1.2'; use 1.0, 1.1, 1.2 or 1.3");
}

Test(config, retry_budget)
{
	cr_assert_float_eq(lane_ok("retry_budget = 20%")->retry_budget_ratio, 0.2, 1e-12);
	cr_assert_float_eq(lane_ok("retry_budget = 0.2")->retry_budget_ratio, 0.2, 1e-12);
	cr_assert_float_eq(lane_ok("retry_budget = 12.5%")->retry_budget_ratio, 0.125, 1e-12);
	cr_assert_float_eq(lane_ok("retry_budget = 0")->retry_budget_ratio, 0.0, 1e-12);
	cr_assert_float_eq(lane_ok("retry_budget = 1")->retry_budget_ratio, 1.0, 1e-12);
	cr_assert_float_eq(lane_ok("retry_budget = 100%")->retry_budget_ratio, 1.0, 1e-12);
	lane_error("retry_budget = 20", "conf.ini:2: retry_budget 20 is above 1; write a "
		   "percentage (20%) or a fraction of 1 (e.g. 0.2)");
	lane_error("retry_budget = 150%",
		   "conf.ini:2: retry_budget 150% is above 100%; use 0% to 100%");
	lane_error("retry_budget = lots", "conf.ini:2: bad retry_budget 'lots'; use a percentage "
		   "or a fraction (e.g. 20% or 0.2)");
	lane_error("retry_budget = 0,2", "conf.ini:2: bad retry_budget '0,2'; use a percentage "
		   "or a fraction (e.g. 20% or 0.2)");
}

Test(config, preconnect_ratio)
{
	cr_assert_float_eq(lane_ok("preconnect_ratio = 0")->preconnect_ratio, 0.0, 1e-12);
	cr_assert_float_eq(lane_ok("preconnect_ratio = 1.5")->preconnect_ratio, 1.5, 1e-12);
	cr_assert_float_eq(lane_ok("preconnect_ratio = 3")->preconnect_ratio, 3.0, 1e-12);
	lane_error("preconnect_ratio = 3.5", "conf.ini:2: bad preconnect_ratio '3.5'; use a "
		   "number from 0 (off) to 3 (e.g. 0.5)");
	lane_error("preconnect_ratio = 50%", "conf.ini:2: bad preconnect_ratio '50%'; use a "
		   "number from 0 (off) to 3 (e.g. 0.5)");
}

Test(config, prewarm_forms)
{
	const struct cr_lane *l = lane_ok("prewarm = api.internal:443*4, [::1]:8443, "
					  "10.0.0.1:80 * 3\nprewarm = [fd00::1]:443*2");

	cr_assert_eq(l->nprewarm, 4);
	cr_assert_str_eq(l->prewarm[0].host, "api.internal");
	cr_assert_eq(l->prewarm[0].port, 443);
	cr_assert_eq(l->prewarm[0].count, 4);
	cr_assert_str_eq(l->prewarm[1].host, "::1");
	cr_assert_eq(l->prewarm[1].port, 8443);
	cr_assert_eq(l->prewarm[1].count, 1);
	cr_assert_str_eq(l->prewarm[2].host, "10.0.0.1");
	cr_assert_eq(l->prewarm[2].port, 80);
	cr_assert_eq(l->prewarm[2].count, 3);
	cr_assert_str_eq(l->prewarm[3].host, "fd00::1");
	cr_assert_eq(l->prewarm[3].count, 2);
}

Test(config, prewarm_errors)
{
	lane_error("prewarm = api.internal",
		   "conf.ini:2: prewarm target 'api.internal' needs a port, e.g. api.internal:443");
	lane_error("prewarm = api.internal:443*0", "conf.ini:2: bad count in prewarm target "
		   "'api.internal:443*0'; use HOST:PORT*N with N from 1 to 1024");
	lane_error("prewarm = a:443*", "conf.ini:2: bad count in prewarm target 'a:443*'; use "
		   "HOST:PORT*N with N from 1 to 1024");
	lane_error("prewarm = a:0", "conf.ini:2: bad port in prewarm target 'a:0'; use 1 to 65535");
	lane_error("prewarm = ::1:443", "conf.ini:2: bad prewarm target '::1:443'; use "
		   "HOST:PORT*N, [V6]:PORT*N (e.g. api.internal:443*4)");
	lane_error("prewarm = a_b%c:443", "conf.ini:2: bad host in prewarm target 'a_b%c:443'; "
		   "use a host name, an IPv4 address or [IPv6] (no wildcards)");
	lane_error("prewarm = 300.1.1.1:443", "conf.ini:2: bad host in prewarm target "
		   "'300.1.1.1:443'; use a host name, an IPv4 address or [IPv6] (no wildcards)");
	lane_error("prewarm = a:443, a:443*2", "conf.ini:2: prewarm target 'a:443*2' is listed "
		   "twice; raise its count instead (HOST:PORT*N)");
	lane_error("prewarm =", "conf.ini:2: empty prewarm list in [lane t]; e.g. prewarm = "
		   "api.internal:443*4");
}

Test(config, prewarm_too_many)
{
	char body[1024];
	size_t off = 0;

	for (int i = 0; i <= CR_MAX_PREWARM; i++)
		off += (size_t)snprintf(body + off, sizeof(body) - off, "prewarm = h%d:443\n", i);
	lane_error(body, "conf.ini:18: too many prewarm targets in [lane t] (at most 16)");
}

Test(config, prewarm_url_and_method)
{
	const struct cr_lane *l =
		lane_ok("prewarm_url = https://api.internal/healthz\nprewarm_method = get");

	cr_assert_str_eq(l->prewarm_url, "https://api.internal/healthz");
	cr_assert_str_eq(l->prewarm_method, "GET");
	cr_assert_str_eq(lane_ok("prewarm_method = OPTIONS")->prewarm_method, "OPTIONS");
	cr_assert_str_eq(lane_ok("prewarm_url = http://10.0.0.1:8080/")->prewarm_url,
			 "http://10.0.0.1:8080/");
	lane_error("prewarm_method = POST",
		   "conf.ini:2: bad prewarm_method 'POST'; use HEAD, GET or OPTIONS");
	lane_error("prewarm_url = ftp://x/", "conf.ini:2: bad prewarm_url 'ftp://x/'; use an "
		   "http:// or https:// URL without spaces (e.g. https://api.internal/healthz)");
	lane_error("prewarm_url = https://", "conf.ini:2: bad prewarm_url 'https://'; use an "
		   "http:// or https:// URL without spaces (e.g. https://api.internal/healthz)");
}

Test(config, warm_max_idle)
{
	cr_assert_eq(lane_ok("warm_max_idle = 30s")->warm_max_idle_ms, 30000);
}

/* ------------------------------------------------------------------------ */
/* match and hosts */

Test(config, match_globs)
{
	const struct cr_lane *l =
		lane_ok("match = payment-gateway/critical, */critical\nmatch = a?c/x_y.z~u:v@w=1");

	cr_assert_eq(l->nmatch, 3);
	cr_assert_str_eq(l->match[0], "payment-gateway/critical");
	cr_assert_str_eq(l->match[1], "*/critical");
	cr_assert_str_eq(l->match[2], "a?c/x_y.z~u:v@w=1");
}

Test(config, match_errors)
{
	lane_error("match =", "conf.ini:2: empty match list in [lane t]; e.g. match = "
		   "payment-gateway/*");
	lane_error("match = a,,b",
		   "conf.ini:2: empty entry in match list 'a,,b'; check the commas");
	lane_error("match = a,", "conf.ini:2: empty entry in match list 'a,'; check the commas");
	lane_error("match = a b", "conf.ini:2: bad key glob 'a b' in match: ' ' is not allowed; "
		   "use A-Z a-z 0-9 . _ ~ : / @ = - and the wildcards * ?");
	lane_error("match = a+idempotent", "conf.ini:2: bad key glob 'a+idempotent' in match: '+' "
		   "is not allowed; use A-Z a-z 0-9 . _ ~ : / @ = - and the wildcards * ?");
	lane_error("match = a, a", "conf.ini:2: key glob 'a' is listed twice in [lane t]; keep one");
}

Test(config, match_glob_length)
{
	char body[256], msg[512];
	char g[CR_KEY_MAX + 1];

	memset(g, 'k', CR_KEY_MAX - 1);
	g[CR_KEY_MAX - 1] = '\0';
	snprintf(body, sizeof(body), "match = %s", g);
	cr_assert_str_eq(lane_ok(body)->match[0], g);

	g[CR_KEY_MAX - 1] = 'k';
	g[CR_KEY_MAX] = '\0';
	snprintf(body, sizeof(body), "match = %s", g);
	snprintf(msg, sizeof(msg), "conf.ini:2: key glob '%.64s...' is 128 characters; at most 127",
		 g);
	lane_error(body, msg);
}

Test(config, match_too_many)
{
	char body[1024];
	size_t off = 0;

	for (int i = 0; i <= CR_MAX_MATCH; i++)
		off += (size_t)snprintf(body + off, sizeof(body) - off, "match = k%d\n", i);
	lane_error(body, "conf.ini:18: too many match globs in [lane t] (at most 16); use a wider "
		   "glob");
}

Test(config, hosts_forms)
{
	const struct cr_lane *l = lane_ok(
		"hosts = 127.0.0.0/8:8443, api.internal, [::1]:443, *.svc:80, *:5432\n"
		"hosts = 10.1.2.3, [fd00::]/8, [fe80::/10]:22, *");
	uint8_t a[16];

	cr_assert_eq(l->nhosts, 9);

	cr_assert_eq(l->hosts[0].family, AF_INET);
	inet_pton(AF_INET, "127.0.0.0", a);
	cr_assert_arr_eq(l->hosts[0].addr, a, 4);
	cr_assert_eq(l->hosts[0].prefix, 8);
	cr_assert_eq(l->hosts[0].port, 8443);

	cr_assert_eq(l->hosts[1].family, AF_UNSPEC);
	cr_assert_str_eq(l->hosts[1].name, "api.internal");
	cr_assert_eq(l->hosts[1].port, 0);

	cr_assert_eq(l->hosts[2].family, AF_INET6);
	inet_pton(AF_INET6, "::1", a);
	cr_assert_arr_eq(l->hosts[2].addr, a, 16);
	cr_assert_eq(l->hosts[2].prefix, 128);
	cr_assert_eq(l->hosts[2].port, 443);

	cr_assert_eq(l->hosts[3].family, AF_UNSPEC);
	cr_assert_str_eq(l->hosts[3].name, "*.svc");
	cr_assert_eq(l->hosts[3].port, 80);

	cr_assert_eq(l->hosts[4].family, AF_UNSPEC);
	cr_assert_str_eq(l->hosts[4].name, "*");
	cr_assert_eq(l->hosts[4].port, 5432);

	cr_assert_eq(l->hosts[5].family, AF_INET);
	cr_assert_eq(l->hosts[5].prefix, 32);
	cr_assert_eq(l->hosts[5].port, 0);

	cr_assert_eq(l->hosts[6].family, AF_INET6);
	cr_assert_eq(l->hosts[6].prefix, 8);
	cr_assert_eq(l->hosts[6].addr[0], 0xfd);
	cr_assert_eq(l->hosts[6].port, 0);

	cr_assert_eq(l->hosts[7].family, AF_INET6);
	cr_assert_eq(l->hosts[7].prefix, 10);
	cr_assert_eq(l->hosts[7].port, 22);

	cr_assert_eq(l->hosts[8].family, AF_UNSPEC);
	cr_assert_str_eq(l->hosts[8].name, "*");
	cr_assert_eq(l->hosts[8].port, 0);
}

Test(config, hosts_errors)
{
	lane_error("hosts = ::1:443", "conf.ini:2: host rule '::1:443': put IPv6 addresses in "
		   "brackets, e.g. [::1] or [::1]:443");
	lane_error("hosts = 127.0.0.1/8", "conf.ini:2: host rule '127.0.0.1/8' has bits set "
		   "beyond /8; write the network address");
	lane_error("hosts = 10.0.0.0/33", "conf.ini:2: bad prefix length in host rule "
		   "'10.0.0.0/33'; use /0 to /32");
	lane_error("hosts = [::1]/129", "conf.ini:2: bad prefix length in host rule "
		   "'[::1]/129'; use /0 to /128");
	lane_error("hosts = 300.0.0.1", "conf.ini:2: bad IPv4 address in host rule '300.0.0.1'");
	lane_error("hosts = [::g]", "conf.ini:2: bad IPv6 address in host rule '[::g]'");
	lane_error("hosts = a:0", "conf.ini:2: bad host rule 'a:0'; use ADDR[/BITS][:PORT], "
		   "[V6][/BITS][:PORT], a name glob[:PORT] or *:PORT, with a port from 1 to 65535");
	lane_error("hosts = a:70000", "conf.ini:2: bad host rule 'a:70000'; use ADDR[/BITS][:PORT], "
		   "[V6][/BITS][:PORT], a name glob[:PORT] or *:PORT, with a port from 1 to 65535");
	lane_error("hosts = [::1", "conf.ini:2: bad host rule '[::1'; use ADDR[/BITS][:PORT], "
		   "[V6][/BITS][:PORT], a name glob[:PORT] or *:PORT, with a port from 1 to 65535");
	lane_error("hosts = :443",
		   "conf.ini:2: host rule ':443' has no host; write *:443 for any host");
	lane_error("hosts = a/b", "conf.ini:2: bad host name glob in host rule 'a/b'; use A-Z a-z "
		   "0-9 . _ - and the wildcards * ?");
	lane_error("hosts =", "conf.ini:2: empty hosts list in [lane t]; e.g. hosts = "
		   "10.0.0.0/8:443");
}

Test(config, hosts_too_many)
{
	char body[1024];
	size_t off = 0;

	for (int i = 0; i <= CR_MAX_HOSTS; i++)
		off += (size_t)snprintf(body + off, sizeof(body) - off, "hosts = h%d\n", i);
	lane_error(body, "conf.ini:18: too many host rules in [lane t] (at most 16); use CIDRs or "
		   "name globs");
}

/* ------------------------------------------------------------------------ */
/* [global] and [threads] */

Test(config, global_log_levels)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	char text[64];

	for (int i = 0; i < 4; i++) {
		snprintf(text, sizeof(text), "[global]\nlog = %s\n", names[i]);
		load_ok(text);
		cr_assert_eq(cfg->log_level, CR_LL_ERROR + i);
	}
	expect_error("[global]\nlog = verbose\n",
		     "conf.ini:2: bad log level 'verbose'; use error, warn, info or debug");
}

Test(config, global_metrics)
{
	static const char *const good[] = { "127.0.0.1:9464", "[::1]:9464", "0.0.0.0:1",
					    "unix:/run/connroute/%p.sock", "unix:@connroute" };
	char text[256];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(text, sizeof(text), "[global]\nmetrics = %s\n", good[i]);
		load_ok(text);
		cr_assert_str_eq(cfg->metrics, good[i]);
	}
	load_ok("[global]\nmetrics = off\n");
	cr_assert_str_eq(cfg->metrics, "");

	expect_error("[global]\nmetrics = localhost:9464\n", "conf.ini:2: bad metrics address "
		     "'localhost:9464'; use IP:PORT, [IPv6]:PORT or unix:/PATH (e.g. 127.0.0.1:9464)");
	expect_error("[global]\nmetrics = 127.0.0.1\n", "conf.ini:2: bad metrics address "
		     "'127.0.0.1'; use IP:PORT, [IPv6]:PORT or unix:/PATH (e.g. 127.0.0.1:9464)");
	expect_error("[global]\nmetrics = unix:run/x.sock\n", "conf.ini:2: metrics socket "
		     "'run/x.sock' is not an absolute path; use unix:/run/connroute/%p.sock");
	expect_error("[global]\nmetrics = unix:/run/%d.sock\n", "conf.ini:2: metrics path "
		     "'/run/%d.sock': only %p (the process id) is expanded; remove the other '%'");

	char path[120];

	memset(path, 'a', 101);
	path[101] = '\0';
	snprintf(text, sizeof(text), "[global]\nmetrics = unix:/%s%%p\n", path);
	expect_error(text, "conf.ini:2: metrics socket path is too long for a unix socket (at "
		     "most 107 bytes with %p expanded); use a shorter path");
}

Test(config, thread_rules)
{
	load_ok("[threads]\nbatch-* = reports/batch\nhttp worker ? = api/read+idempotent\n"
		"123456789012345 = x\n");
	cr_assert_eq(cfg->nthreads, 3);
	cr_assert_str_eq(cfg->threads[0].glob, "batch-*");
	cr_assert_str_eq(cfg->threads[0].key, "reports/batch");
	cr_assert_eq(cfg->threads[0].line, 2);
	cr_assert_str_eq(cfg->threads[1].glob, "http worker ?");
	cr_assert_str_eq(cfg->threads[1].key, "api/read+idempotent");
	cr_assert_eq(cfg->threads[2].line, 4);
}

Test(config, thread_rule_errors)
{
	expect_error("[threads]\n1234567890123456 = x\n", "conf.ini:2: thread-name glob "
		     "'1234567890123456' is 16 characters; thread names have at most 15, shorten it");
	expect_error("[threads]\nbatch-* = reports batch\n", "conf.ini:2: bad routing key "
		     "'reports batch' for thread rule 'batch-*'; use 1 to 127 of A-Z a-z 0-9 . _ ~ : "
		     "/ @ = - (e.g. reports/batch), optionally +idempotent");
	expect_error("[threads]\nbatch-* = r/*\n", "conf.ini:2: bad routing key 'r/*' for thread "
		     "rule 'batch-*'; use 1 to 127 of A-Z a-z 0-9 . _ ~ : / @ = - (e.g. "
		     "reports/batch), optionally +idempotent");
	expect_error("[threads]\nbatch-* = r+fast\n", "conf.ini:2: bad routing key 'r+fast' for "
		     "thread rule 'batch-*'; use 1 to 127 of A-Z a-z 0-9 . _ ~ : / @ = - (e.g. "
		     "reports/batch), optionally +idempotent");
	expect_error("[threads]\nbatch-* =\n", "conf.ini:2: bad routing key '' for thread rule "
		     "'batch-*'; use 1 to 127 of A-Z a-z 0-9 . _ ~ : / @ = - (e.g. reports/batch), "
		     "optionally +idempotent");
	expect_error("[threads]\na = x\n[threads]\na = y\n",
		     "conf.ini:4: thread rule 'a' repeated (first on line 2); keep one");
}

Test(config, thread_rules_too_many)
{
	char text[2048];
	size_t off = (size_t)snprintf(text, sizeof(text), "[threads]\n");

	for (int i = 0; i <= CR_MAX_THREADS; i++)
		off += (size_t)snprintf(text + off, sizeof(text) - off, "t%d = k\n", i);
	expect_error(text, "conf.ini:34: too many thread rules (at most 32); use wider globs");
}

/* ------------------------------------------------------------------------ */
/* lines, files, error collection */

Test(config, long_line_is_an_error_not_a_truncation)
{
	char text[1024], hosts[400];
	size_t n;

	/* inih's buffer is 200 bytes: 199 characters fit */
	n = (size_t)snprintf(hosts, sizeof(hosts), "hosts = a");
	while (n < 199)
		n += (size_t)snprintf(hosts + n, sizeof(hosts) - n, ",a");
	hosts[199] = '\0';
	if (hosts[198] == ',')
		hosts[198] = 'b';
	snprintf(text, sizeof(text), "[lane t]\n%s\n", hosts);
	cr_assert_eq(load(text), -1); /* too many hosts, but the line itself was read whole */
	cr_assert(strstr(dg->msg[0], "too many host rules"), "%s", dg->msg[0]);

	/* 250 characters: reported, and the tail is not parsed as a line of its own */
	memset(hosts, 'x', sizeof(hosts));
	memcpy(hosts, "match = a, b, c, d, ", 20);
	memcpy(hosts + 230, ", foo = bar, baz = 1", 20);
	hosts[250] = '\0';
	snprintf(text, sizeof(text), "[lane t]\n%s\nretries = 99\n", hosts);
	cr_assert_eq(load(text), -1);
	cr_assert_eq(dg->n, 2);
	cr_assert_str_eq(dg->msg[0], "conf.ini:2: line is too long (250 characters before any "
			 "comment, at most 199); split a long list over several lines with the same "
			 "key");
	/* line counting stays right after the long line */
	cr_assert_str_eq(dg->msg[1], "conf.ini:3: retries = 99 is out of range; use 0 to 10");
}

/* comments never reach inih, so only the part before one is limited */
Test(config, long_comments_are_fine)
{
	char text[1400], c[600];

	memset(c, 'c', sizeof(c) - 1);
	c[sizeof(c) - 1] = '\0';
	snprintf(text, sizeof(text), "; %s\n[lane t]\nretries = 2 ; %s\n", c, c);
	load_ok(text);
	cr_assert_eq(cfg->lanes[0].retries, 2);
}

Test(config, long_section_header_skips_its_keys)
{
	char text[512], name[260];

	memset(name, 'n', 250);
	name[250] = '\0';
	snprintf(text, sizeof(text), "[lane a]\n[lane %s]\nretries = 1\n", name);
	cr_assert_eq(load(text), -1);
	cr_assert_eq(dg->n, 1, "%s", dg->msg[1]);
	cr_assert(strstr(dg->msg[0], "conf.ini:2: line is too long (257 characters"), "%s",
		  dg->msg[0]);
	cr_assert_eq(cfg->lanes[0].retries, 0); /* not applied to [lane a] */
}

Test(config, multiple_errors_all_reported_in_order)
{
	const char *text = "[global]\n"
			   "log = loud\n"
			   "[lane a]\n"
			   "connect_timeout = 5x\n"
			   "nodelay = maybe\n"
			   "conect_timeout = 1s\n"
			   "[lane a]\n"
			   "[oops]\n"
			   "[lane b]\n"
			   "retries = 11\n";

	cr_assert_eq(load(text), -1);
	cr_assert_eq(dg->n, 7);
	cr_assert_str_eq(dg->msg[0],
			 "conf.ini:2: bad log level 'loud'; use error, warn, info or debug");
	cr_assert_str_eq(dg->msg[1], "conf.ini:4: bad duration '5x' for connect_timeout; use a "
			 "number with ms, s or m (e.g. 500ms, 5s)");
	cr_assert_str_eq(dg->msg[2], "conf.ini:5: bad value 'maybe' for nodelay; use on or off");
	cr_assert_str_eq(dg->msg[3], "conf.ini:6: unknown key 'conect_timeout' in [lane a]; did "
			 "you mean 'connect_timeout'?");
	cr_assert_str_eq(dg->msg[4],
			 "conf.ini:7: duplicate [lane a] (first on line 3); rename or merge them");
	cr_assert_str_eq(dg->msg[5],
			 "conf.ini:8: unknown section [oops]; use [global], [threads] or [lane NAME]");
	cr_assert_str_eq(dg->msg[6], "conf.ini:10: retries = 11 is out of range; use 0 to 10");
}

Test(config, errors_beyond_max_diag_are_counted)
{
	char text[4096];
	size_t off = (size_t)snprintf(text, sizeof(text), "[lane t]\n");

	for (int i = 0; i < CR_MAX_DIAG + 8; i++)
		off += (size_t)snprintf(text + off, sizeof(text) - off, "bogus%d = 1\n", i);
	cr_assert_eq(load(text), -1);
	cr_assert_eq(dg->n, CR_MAX_DIAG + 8);
	cr_assert(strncmp(dg->msg[CR_MAX_DIAG - 1], "conf.ini:33: unknown key 'bogus31'", 34) == 0,
		  "%s", dg->msg[CR_MAX_DIAG - 1]);
}

Test(config, null_diag_is_allowed)
{
	cr_assert_eq(cr_config_load_string("[lane a]\nretries = 1\n", "x", cfg, NULL), 0);
	cr_assert_eq(cr_config_load_string("[lane a]\nretries = x\n", "x", cfg, NULL), -1);
}

static char tmpdir[64];

/* Criterion runs the suite's init/fini around these as well */
static void tmp_setup(void)
{
	strcpy(tmpdir, "/tmp/cr-config-XXXXXX");
	cr_assert(mkdtemp(tmpdir));
}

static void tmp_teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	cr_assert_eq(system(cmd), 0);
}

static const char *write_file(const char *name, const void *data, size_t len)
{
	static char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	cr_assert(f);
	cr_assert_eq(fwrite(data, 1, len, f), len);
	fclose(f);
	return path;
}

Test(config, load_file, .init = tmp_setup, .fini = tmp_teardown)
{
	static const char text[] = "[lane critical]\nmatch = */critical\nconnect_timeout = 1s\n";
	const char *path = write_file("conf.ini", text, sizeof(text) - 1);

	cr_assert_eq(cr_config_load_file(path, cfg, dg), 0, "%s", dg->msg[0]);
	cr_assert_str_eq(cfg->path, path);
	cr_assert_eq(cfg->nlanes, 2);
	cr_assert_eq(cfg->lanes[0].connect_timeout_ms, 1000);
}

Test(config, load_file_messages_carry_the_path, .init = tmp_setup, .fini = tmp_teardown)
{
	static const char text[] = "[lane a]\nretries = 11\n";
	const char *path = write_file("conf.ini", text, sizeof(text) - 1);
	char msg[256];

	cr_assert_eq(cr_config_load_file(path, cfg, dg), -1);
	snprintf(msg, sizeof(msg), "%s:2: retries = 11 is out of range; use 0 to 10", path);
	cr_assert_str_eq(dg->msg[0], msg);
}

Test(config, missing_file, .init = tmp_setup, .fini = tmp_teardown)
{
	char path[128], msg[256];

	snprintf(path, sizeof(path), "%s/nope.ini", tmpdir);
	cr_assert_eq(cr_config_load_file(path, cfg, dg), -1);
	cr_assert_eq(dg->n, 1);
	snprintf(msg, sizeof(msg), "%s: cannot open: %s; check CONNROUTE_CONFIG", path,
		 strerror(ENOENT));
	cr_assert_str_eq(dg->msg[0], msg);
}

Test(config, directory_instead_of_file, .init = tmp_setup, .fini = tmp_teardown)
{
	char msg[256];

	cr_assert_eq(cr_config_load_file(tmpdir, cfg, dg), -1);
	cr_assert_eq(dg->n, 1);
	snprintf(msg, sizeof(msg), "%s: not a regular file; point CONNROUTE_CONFIG at a config file", tmpdir);
	cr_assert_str_eq(dg->msg[0], msg);
}

/* A FIFO must never block the host's start-up: refused at once. */
Test(config, fifo_is_refused_without_blocking, .init = tmp_setup, .fini = tmp_teardown, .timeout = 10)
{
	char path[600], msg[700];
	snprintf(path, sizeof(path), "%s/fifo.conf", tmpdir);
	cr_assert_eq(mkfifo(path, 0600), 0);
	cr_assert_eq(cr_config_load_file(path, cfg, dg), -1);
	snprintf(msg, sizeof(msg), "%s: not a regular file; point CONNROUTE_CONFIG at a config file", path);
	cr_expect_str_eq(dg->msg[0], msg);
	unlink(path);
}

Test(config, nul_byte_in_file, .init = tmp_setup, .fini = tmp_teardown)
{
	static const char text[] = "[lane a]\nretries\0 = 1\n";
	const char *path = write_file("bin.ini", text, sizeof(text) - 1);
	char msg[256];

	cr_assert_eq(cr_config_load_file(path, cfg, dg), -1);
	cr_assert_eq(dg->n, 1);
	snprintf(msg, sizeof(msg), "%s:2: line contains a NUL byte; is this a text file?", path);
	cr_assert_str_eq(dg->msg[0], msg);
}

Test(config, oversized_file, .init = tmp_setup, .fini = tmp_teardown)
{
	size_t len = (1 << 20) + 1;
	char *big = malloc(len), msg[256];
	const char *path;

	cr_assert(big);
	memset(big, '\n', len);
	path = write_file("big.ini", big, len);
	free(big);
	cr_assert_eq(cr_config_load_file(path, cfg, dg), -1);
	snprintf(msg, sizeof(msg), "%s: larger than 1024 KiB; a connroute config is a few KB, "
		 "check the path", path);
	cr_assert_str_eq(dg->msg[0], msg);
}

/* ------------------------------------------------------------------------ */
/* dump */

Test(config, dump_shows_every_knob)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out;

	load_ok("[global]\nlog = warn\nmetrics = 127.0.0.1:9464\n"
		"[threads]\nbatch-* = reports/batch\n"
		"[lane critical]\n"
		"match = payment-gateway/critical, */critical\n"
		"hosts = 127.0.0.0/8:8443, api.internal, [::1]:443, *.svc:80, *:5432\n"
		"connect_timeout = 1s\nmax_conns_per_host = 100\nqueue_timeout = 500ms\n"
		"keepalive = 30s\nnodelay = on\ndscp = ef\nmark = 7\npriority = 6\n"
		"bind = 127.0.0.2\nmin_tls = 1.3\nretry_budget = 12.5%\n"
		"prewarm = api.internal:443*4, [::1]:443\npreconnect_ratio = 1.5\n"
		"max_lifetime = 90m\n");
	out = open_memstream(&buf, &len);
	cr_assert(out);
	cr_config_dump(cfg, out);
	fclose(out);

	static const char *const want[] = {
		"log = warn\n",
		"metrics = 127.0.0.1:9464\n",
		"batch-* = reports/batch\n",
		"[lane critical]  ; line 6\n",
		"match = payment-gateway/critical, */critical\n",
		"hosts = 127.0.0.0/8:8443, api.internal, [::1]:443, *.svc:80, *:5432\n",
		"max_conns_per_host = 100\n",
		"connect_timeout = 1s\n",
		"queue_timeout = 500ms\n",
		"max_lifetime = 90m\n",
		"keepalive = 30s\n",
		"keepalive_interval = (app)\n",
		"nodelay = on\n",
		"tos = 0xb8  ; dscp 46\n",
		"priority = 6\n",
		"mark = 7\n",
		"bind = 127.0.0.2\n",
		"min_tls = 1.3\n",
		"retry_budget = 12.5%\n",
		"prewarm = api.internal:443*4, [::1]:443*1\n",
		"preconnect_ratio = 1.5\n",
		"warm_max_idle = 15s\n",
		"[lane default]  ; implicit: not in the file, pass-through for connect()\n",
		"connect_timeout = 0  ; (app)\n",
		"nodelay = (app)\n",
		"min_tls = (app)  ; libcurl's default\n",
	};

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_expect(strstr(buf, want[i]), "missing %s in:\n%s", want[i], buf);
	/* lanes in file order, the implicit default last */
	cr_expect(strstr(buf, "[lane critical]") < strstr(buf, "[lane default]"));
	free(buf);
}

/* The whole dump of a config that sets every key (and of lanes left to their
 * defaults), byte for byte: `connroute check` output is read by people and
 * scripts, so a change to the code that prints it must keep it. */
static const char golden_conf[] =
	"[global]\n"
	"log = debug\n"
	"metrics = unix:/run/cr/%p.sock\n"
	"[threads]\n"
	"batch-* = reports/batch\n"
	"w? = a/b+idempotent\n"
	"[lane critical]\n"
	"match = payment-gateway/critical, */critical\n"
	"hosts = 127.0.0.0/8:8443, api.internal, [::1]:443, [fd00::]/8, *.svc:80, *:5432\n"
	"max_conns_per_host = 100\n"
	"max_idle_per_host = 32\n"
	"idle_timeout = 1500ms\n"
	"pool_schemes = HTTPS ,ftp,  imap\n"
	"max_lifetime = 90m\n"
	"connect_timeout = 1s\n"
	"response_header_timeout = 10s\n"
	"request_timeout = 2m\n"
	"queue_timeout = 0\n"
	"keepalive = 30s\n"
	"keepalive_interval = 10s\n"
	"keepalive_count = 3\n"
	"nodelay = off\n"
	"dscp = af41\n"
	"priority = 6\n"
	"mark = 0x7\n"
	"bind = ::1\n"
	"min_tls = 1.3\n"
	"retries = 2\n"
	"retry_budget = 12.5%\n"
	"retry_budget_min = 5\n"
	"eject_after = 5\n"
	"eject_time = 10s\n"
	"eject_max = 34%\n"
	"breaker_failure_ratio = 60%\n"
	"breaker_window = 30s\n"
	"breaker_min_requests = 50\n"
	"breaker_open = 2s\n"
	"breaker_probes = 5\n"
	"retry_tokens = 10\n"
	"retry_token_ratio = 0.2\n"
	"prewarm = api.internal:443*4, [::1]:443\n"
	"prewarm_url = https://api.internal/healthz\n"
	"prewarm_method = get\n"
	"preconnect_ratio = 1.5\n"
	"warm_max_idle = 10s\n"
	"access_log = /var/log/cr/critical-%p.log\n"
	"access_log_sample = 0.25\n"
	"access_log_slow = 1s\n"
	"access_log_query = on\n"
	"[lane plain]\n"
	"tos = 0x10\n"
	"bind = 10.1.2.3\n"
	"retry_budget = 0.333\n"
	"[lane bare]\n";

static const char golden_dump[] =
	"; connroute configuration: (not a file)\n"
	"; 4 lanes, 2 thread rules; (app) = left as the application sets it\n"
	"\n"
	"[global]\n"
	"log = debug\n"
	"metrics = unix:/run/cr/%p.sock\n"
	"access_log = off\n"
	"access_log_sample = 1\n"
	"access_log_slow = 0  ; every call\n"
	"access_log_query = off\n"
	"access_log_mode = 0600\n"
	"access_log_buffer = 1024  ; records\n"
	"\n"
	"[threads]\n"
	"batch-* = reports/batch\n"
	"w? = a/b+idempotent\n"
	"\n"
	"[lane critical]  ; line 7\n"
	"match = payment-gateway/critical, */critical\n"
	"hosts = 127.0.0.0/8:8443, api.internal, [::1]:443, [fd00::/8], *.svc:80, *:5432\n"
	"max_conns_per_host = 100\n"
	"max_idle_per_host = 32\n"
	"idle_timeout = 1500ms\n"
	"pool_schemes = https, ftp, imap\n"
	"max_lifetime = 90m\n"
	"connect_timeout = 1s\n"
	"response_header_timeout = 10s\n"
	"request_timeout = 2m\n"
	"queue_timeout = 0  ; do not wait\n"
	"keepalive = 30s\n"
	"keepalive_interval = 10s\n"
	"keepalive_count = 3\n"
	"nodelay = off\n"
	"tos = 0x88  ; dscp 34\n"
	"priority = 6\n"
	"mark = 7\n"
	"bind = ::1\n"
	"min_tls = 1.3\n"
	"retries = 2\n"
	"retry_budget = 12.5%\n"
	"retry_budget_min = 5  ; per second\n"
	"eject_after = 5\n"
	"eject_time = 10s\n"
	"eject_max = 34%\n"
	"breaker_failure_ratio = 0.6\n"
	"breaker_window = 30s\n"
	"breaker_min_requests = 50\n"
	"breaker_open = 2s\n"
	"breaker_probes = 5\n"
	"retry_tokens = 10\n"
	"retry_token_ratio = 0.2\n"
	"prewarm = api.internal:443*4, [::1]:443*1\n"
	"prewarm_url = https://api.internal/healthz\n"
	"prewarm_method = GET\n"
	"preconnect_ratio = 1.5\n"
	"warm_max_idle = 10s\n"
	"access_log = /var/log/cr/critical-%p.log\n"
	"access_log_sample = 0.25\n"
	"access_log_slow = 1s\n"
	"access_log_query = on\n"
	"\n"
	"[lane plain]  ; line 50\n"
	"match = plain  ; the lane's name\n"
	"; hosts = (any destination)\n"
	"max_conns_per_host = 0  ; unlimited\n"
	"max_idle_per_host = 8\n"
	"idle_timeout = 90s\n"
	"pool_schemes = http, https\n"
	"max_lifetime = 0  ; none\n"
	"connect_timeout = 5s\n"
	"response_header_timeout = 0  ; none\n"
	"request_timeout = 0  ; none\n"
	"queue_timeout = 5s\n"
	"; keepalive = (app)\n"
	"; keepalive_interval = (app)\n"
	"; keepalive_count = (app)\n"
	"nodelay = on\n"
	"tos = 0x10  ; dscp 4\n"
	"; priority = (app)\n"
	"; mark = (app)\n"
	"bind = 10.1.2.3\n"
	"min_tls = 1.2\n"
	"retries = 0\n"
	"retry_budget = 33.3%\n"
	"retry_budget_min = 3  ; per second\n"
	"eject_after = 0  ; off\n"
	"eject_time = 30s\n"
	"eject_max = 50%\n"
	"breaker_failure_ratio = 0  ; off\n"
	"breaker_window = 10s\n"
	"breaker_min_requests = 20\n"
	"breaker_open = 5s\n"
	"breaker_probes = 3\n"
	"retry_tokens = 0  ; off\n"
	"retry_token_ratio = 0.1\n"
	"; prewarm = (none)\n"
	"; prewarm_url = (none)\n"
	"prewarm_method = HEAD\n"
	"preconnect_ratio = 0  ; off\n"
	"warm_max_idle = 15s\n"
	"access_log = off\n"
	"access_log_sample = 1\n"
	"access_log_slow = 0  ; every call\n"
	"access_log_query = off\n"
	"\n"
	"[lane bare]  ; line 54\n"
	"match = bare  ; the lane's name\n"
	"; hosts = (any destination)\n"
	"max_conns_per_host = 0  ; unlimited\n"
	"max_idle_per_host = 8\n"
	"idle_timeout = 90s\n"
	"pool_schemes = http, https\n"
	"max_lifetime = 0  ; none\n"
	"connect_timeout = 5s\n"
	"response_header_timeout = 0  ; none\n"
	"request_timeout = 0  ; none\n"
	"queue_timeout = 5s\n"
	"; keepalive = (app)\n"
	"; keepalive_interval = (app)\n"
	"; keepalive_count = (app)\n"
	"nodelay = on\n"
	"; tos = (app)\n"
	"; priority = (app)\n"
	"; mark = (app)\n"
	"; bind = (app)\n"
	"min_tls = 1.2\n"
	"retries = 0\n"
	"retry_budget = 20%\n"
	"retry_budget_min = 3  ; per second\n"
	"eject_after = 0  ; off\n"
	"eject_time = 30s\n"
	"eject_max = 50%\n"
	"breaker_failure_ratio = 0  ; off\n"
	"breaker_window = 10s\n"
	"breaker_min_requests = 20\n"
	"breaker_open = 5s\n"
	"breaker_probes = 3\n"
	"retry_tokens = 0  ; off\n"
	"retry_token_ratio = 0.1\n"
	"; prewarm = (none)\n"
	"; prewarm_url = (none)\n"
	"prewarm_method = HEAD\n"
	"preconnect_ratio = 0  ; off\n"
	"warm_max_idle = 15s\n"
	"access_log = off\n"
	"access_log_sample = 1\n"
	"access_log_slow = 0  ; every call\n"
	"access_log_query = off\n"
	"\n"
	"; [lane default]  ; implicit: not in the file, pass-through for connect()\n"
	"; match = (fallback for unmatched keys)\n"
	"; hosts = (any destination)\n"
	"; max_conns_per_host = 0  ; unlimited\n"
	"; max_idle_per_host = 8\n"
	"; idle_timeout = 90s\n"
	"; pool_schemes = http, https\n"
	"; max_lifetime = 0  ; none\n"
	"; connect_timeout = 0  ; (app)\n"
	"; response_header_timeout = 0  ; none\n"
	"; request_timeout = 0  ; none\n"
	"; queue_timeout = 0  ; do not wait\n"
	"; keepalive = (app)\n"
	"; keepalive_interval = (app)\n"
	"; keepalive_count = (app)\n"
	"; nodelay = (app)\n"
	"; tos = (app)\n"
	"; priority = (app)\n"
	"; mark = (app)\n"
	"; bind = (app)\n"
	"; min_tls = (app)  ; libcurl's default\n"
	"; retries = 0\n"
	"; retry_budget = 20%\n"
	"; retry_budget_min = 3  ; per second\n"
	"; eject_after = 0  ; off\n"
	"; eject_time = 30s\n"
	"; eject_max = 50%\n"
	"; breaker_failure_ratio = 0  ; off\n"
	"; breaker_window = 10s\n"
	"; breaker_min_requests = 20\n"
	"; breaker_open = 5s\n"
	"; breaker_probes = 3\n"
	"; retry_tokens = 0  ; off\n"
	"; retry_token_ratio = 0.1\n"
	"; prewarm = (none)\n"
	"; prewarm_url = (none)\n"
	"; prewarm_method = HEAD\n"
	"; preconnect_ratio = 0  ; off\n"
	"; warm_max_idle = 15s\n"
	"; access_log = off\n"
	"; access_log_sample = 1\n"
	"; access_log_slow = 0  ; every call\n"
	"; access_log_query = off\n";

static char *dump_text(void)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);

	cr_assert(out);
	cr_config_dump(cfg, out);
	fclose(out);
	return buf;
}

Test(config, dump_matches_the_golden_text)
{
	char *t;
	size_t i = 0;

	load_ok(golden_conf);
	t = dump_text();
	while (t[i] && t[i] == golden_dump[i])
		i++;
	cr_expect_str_eq(t, golden_dump, "first difference at byte %zu:\n%s", i,
			 t + (i > 80 ? i - 80 : 0));
	free(t);
}

/* ------------------------------------------------------------------------ */
/* the key tables: every key documented and shown by `connroute check` */

/* The lines of the section of TEXT that starts with the line HEADER (up to
 * the next blank line), or NULL. Returns a copy to free. */
static char *section_of(const char *text, const char *header)
{
	const char *s = strstr(text, header), *e;

	if (!s)
		return NULL;
	e = strstr(s, "\n\n");
	return strndup(s, e ? (size_t)(e - s + 1) : strlen(s));
}

/* The line of SECTION that starts with PREFIX, or NULL. A copy to free. */
static char *line_of(const char *section, const char *prefix)
{
	size_t n = strlen(prefix);

	for (const char *l = section; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
		if (strncmp(l, prefix, n) == 0)
			return strndup(l, strcspn(l, "\n"));
	return NULL;
}

static char *read_text(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	cr_assert(f, "cannot open %s: run the tests from the repository root (make test does)",
		  path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	cr_assert(buf);
	cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* docs/config.md has a "## KEY" section per lane key and a "## [global] KEY"
 * section per global key. */
Test(config, every_key_has_a_section_in_the_docs)
{
	char *doc = read_text("docs/config.md"), want[128];

	cr_assert_gt(cr_nlane_keys, 20);
	for (size_t i = 0; i < cr_nlane_keys; i++) {
		snprintf(want, sizeof(want), "\n## %s\n", cr_lane_keys[i].name);
		cr_expect(strstr(doc, want), "docs/config.md has no section '## %s'",
			  cr_lane_keys[i].name);
	}
	for (size_t i = 0; i < cr_nglobal_keys; i++) {
		snprintf(want, sizeof(want), "\n## [global] %s\n", cr_global_keys[i].name);
		cr_expect(strstr(doc, want), "docs/config.md has no section '## [global] %s'",
			  cr_global_keys[i].name);
	}
	free(doc);
}

/* Each key set to its example value shows in the dump as "KEY = VALUE..."
 * (an alias, dscp, in the line of the key it writes); every key has a line
 * in the implicit default lane's dump too. */
Test(config, every_key_has_a_line_in_the_dump)
{
	char text[512], prefix[128], *dump, *sec, *line;

	for (size_t i = 0; i < cr_nlane_keys; i++) {
		const struct cr_lane_key *k = &cr_lane_keys[i];
		const char *shown = k->alias ? k->alias : k->name;

		snprintf(text, sizeof(text), "[lane t]\n%s = %s\n", k->name, k->example);
		load_ok(text);
		dump = dump_text();
		sec = section_of(dump, "[lane t]");
		cr_assert(sec, "%s", dump);
		snprintf(prefix, sizeof(prefix), "%s = ", shown);
		line = line_of(sec, prefix);
		cr_expect(line, "no line '%s...' for %s = %s in:\n%s", prefix, k->name, k->example,
			  sec);
		if (line && k->alias)
			cr_expect(strstr(line, k->name), "'%s' does not show %s", line, k->name);
		else if (line)
			cr_expect(strstr(line, k->example), "'%s' does not show the value %s", line,
				  k->example);
		free(line);
		free(sec);

		sec = section_of(dump, "[lane default]");
		cr_assert(sec, "%s", dump);
		/* the implicit lane is commented out whole: the dump is valid input */
		char iprefix[140];
		snprintf(iprefix, sizeof(iprefix), "; %s", prefix);
		cr_expect(line_of(sec, iprefix) != NULL, "no line '%s...' for the implicit lane in:\n%s",
			  iprefix, sec);
		free(sec);
		free(dump);
	}
	for (size_t i = 0; i < cr_nglobal_keys; i++) {
		const struct cr_global_key *g = &cr_global_keys[i];

		snprintf(text, sizeof(text), "[global]\n%s = %s\n", g->name, g->example);
		load_ok(text);
		dump = dump_text();
		sec = section_of(dump, "[global]");
		cr_assert(sec, "%s", dump);
		snprintf(prefix, sizeof(prefix), "%s = %s", g->name, g->example);
		line = line_of(sec, prefix);
		cr_expect(line, "no line '%s' in:\n%s", prefix, sec);
		free(line);
		free(sec);
		free(dump);
	}
}

/* The connection-settings hash changes with what a pooled connection
 * carries (socket options, TLS floor) and with nothing else: a reload that
 * only changes timeouts, limits, retries or warm pools keeps the pools. */
Test(config, conn_hash_follows_the_connection_settings_only)
{
	static const char *const conn[] = {
		"keepalive = 30s", "keepalive_interval = 10s", "keepalive_count = 3", "nodelay = off",
		"tos = 0x10", "dscp = ef", "priority = 6", "mark = 7", "bind = 127.0.0.2",
		"bind = ::1", "min_tls = 1.3",
	};
	static const char *const other[] = {
		"match = a/*", "hosts = 10.0.0.0/8", "max_conns_per_host = 5",
		"max_idle_per_host = 2", "idle_timeout = 1s", "max_lifetime = 1m",
		"connect_timeout = 1s", "response_header_timeout = 1s", "request_timeout = 1s",
		"queue_timeout = 1s", "retries = 2", "retry_budget = 50%", "retry_budget_min = 9",
		"prewarm = a:1", "prewarm_url = http://a/", "prewarm_method = GET",
		"preconnect_ratio = 1", "warm_max_idle = 1s",
	};
	char text[256];
	uint64_t base, h;

	load_ok("[lane t]\n");
	base = cr_config_lane_conn_hash(&cfg->lanes[0]);
	for (size_t i = 0; i < sizeof(conn) / sizeof(conn[0]); i++) {
		snprintf(text, sizeof(text), "[lane t]\n%s\n", conn[i]);
		load_ok(text);
		h = cr_config_lane_conn_hash(&cfg->lanes[0]);
		cr_expect_neq(h, base, "%s changes how connections are made", conn[i]);
	}
	load_ok("[lane t]\nbind = 127.0.0.3\n");
	h = cr_config_lane_conn_hash(&cfg->lanes[0]);
	load_ok("[lane t]\nbind = 127.0.0.2\n");
	cr_expect_neq(cr_config_lane_conn_hash(&cfg->lanes[0]), h, "the bind address counts");
	for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
		snprintf(text, sizeof(text), "[lane t]\n%s\n", other[i]);
		load_ok(text);
		h = cr_config_lane_conn_hash(&cfg->lanes[0]);
		cr_expect_eq(h, base, "%s does not change a pooled connection", other[i]);
	}
	/* the same settings in two lanes hash alike */
	load_ok("[lane a]\nkeepalive = 30s\n[lane b]\nkeepalive = 30s\nretries = 1\n");
	cr_expect_eq(cr_config_lane_conn_hash(&cfg->lanes[0]), cr_config_lane_conn_hash(&cfg->lanes[1]));
}

/* ------------------------------------------------------------------------ */
/* reentrancy: no static mutable state, so parses may run side by side */

struct par {
	int id;
	int failures;
};

static void *parse_loop(void *arg)
{
	struct par *w = arg;
	struct cr_config *c = malloc(sizeof(*c));
	struct cr_diag *d = malloc(sizeof(*d));
	char text[256];

	if (!c || !d)
		abort();
	snprintf(text, sizeof(text), "[lane l%d]\nretries = %d\nconnect_timeout = %dms\n"
		 "match = k%d/*\nbogus = 1\n", w->id, w->id, 100 + w->id, w->id);
	for (int i = 0; i < 300; i++) {
		char want[128];

		snprintf(want, sizeof(want), "t%d:5: unknown key 'bogus' in [lane l%d]; see "
			 "docs/config.md for the keys", w->id, w->id);
		char name[16];

		snprintf(name, sizeof(name), "t%d", w->id);
		if (cr_config_load_string(text, name, c, d) != -1 || d->n != 1 ||
		    strcmp(d->msg[0], want) != 0 || c->lanes[0].retries != w->id ||
		    c->lanes[0].connect_timeout_ms != 100 + w->id ||
		    c->lanes[0].queue_timeout_ms != 100 + w->id)
			w->failures++;
	}
	free(c);
	free(d);
	return NULL;
}

Test(config, parses_run_concurrently)
{
	pthread_t t[4];
	struct par w[4];

	for (int i = 0; i < 4; i++) {
		w[i] = (struct par){ .id = i + 1 };
		cr_assert_eq(pthread_create(&t[i], NULL, parse_loop, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		cr_expect_eq(w[i].failures, 0, "thread %d: %d failures", i, w[i].failures);
	}
}

Test(config, resilience_keys)
{
	const struct cr_lane *l = lane_ok("max_idle_per_host = 8");
	cr_assert_eq(l->health, 0, "every part off by default");
	cr_assert_eq(l->eject_time_ms, 30000);
	cr_assert_float_eq(l->eject_max, 0.5, 1e-9);
	cr_assert_eq(l->breaker_window_ms, 10000);
	cr_assert_eq(l->breaker_min_requests, 20);
	cr_assert_eq(l->breaker_open_ms, 5000);
	cr_assert_eq(l->breaker_probes, 3);
	cr_assert_float_eq(l->retry_token_ratio, 0.1, 1e-9);
	uint64_t h0 = l->health_hash;
	l = lane_ok("eject_after = 3");
	cr_assert_eq(l->health, CR_H_EJECT);
	cr_assert_neq(l->health_hash, h0);
	l = lane_ok("breaker_failure_ratio = 50%");
	cr_assert_eq(l->health, CR_H_BREAKER);
	l = lane_ok("retry_tokens = 10\nretry_token_ratio = 0.5");
	cr_assert_eq(l->health, CR_H_THROTTLE);
	cr_assert_float_eq(l->retry_token_ratio, 0.5, 1e-9);
	lane_error("eject_time = 0", "conf.ini:2: eject_time = 0 must be longer than 0 (e.g. 30s)");
	lane_error("breaker_open = 5", "conf.ini:2: duration '5' for breaker_open has no unit; "
				       "write 5s or 5ms");
	lane_error("eject_max = 150%", "conf.ini:2: eject_max = 150% is above 1; use 0 to 1 or 0% "
				       "to 100%");
	lane_error("breaker_failure_ratio = half",
		   "conf.ini:2: bad value 'half' for breaker_failure_ratio; use a fraction or a "
		   "percentage (e.g. 0.5)");
	lane_error("breaker_probes = 0",
		   "conf.ini:2: breaker_probes = 0 is out of range; use 1 to 1000");
	lane_error("breaker_min_requests = -1",
		   "conf.ini:2: bad value '-1' for breaker_min_requests; use a whole number from 1 "
		   "to 1000000");
}
