/* `connroute check` output is valid input (issue: operator experience), and
 * lib/notice.c tells the operator once what the shim did. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "lane.h"
#include "log.h"
#include "notice.h"

static char *dump_of(const struct cr_config *cfg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	cr_assert(out);
	cr_config_dump(cfg, out);
	fclose(out);
	return buf;
}

/* The dump without what depends on where the text came from: the header
 * comment lines and the "; line N" of each section. */
static char *normalized(const char *dump)
{
	char *out = calloc(1, strlen(dump) + 1), *o = out;
	for (const char *l = dump; *l;) {
		const char *nl = strchr(l, '\n');
		size_t n = nl ? (size_t)(nl - l + 1) : strlen(l);
		if (!strncmp(l, "; connroute configuration:", 26) || !strncmp(l, "; 1 lane", 8) ||
		    (l[0] == ';' && l[1] == ' ' && l[2] >= '0' && l[2] <= '9')) {
			l += n;
			continue;
		}
		/* "match = a  ; the lane's name" reads back as the glob "a": the same */
		const char *tn = strstr(l, "  ; the lane's name");
		if (tn && tn < l + n) {
			memcpy(o, l, (size_t)(tn - l));
			o += tn - l;
			*o++ = '\n';
			l += n;
			continue;
		}
		const char *mark = strstr(l, "  ; line ");
		if (mark && mark < l + n) {
			memcpy(o, l, (size_t)(mark - l));
			o += mark - l;
			const char *after = mark + 9;
			while (*after >= '0' && *after <= '9')
				after++;
			size_t rest = (size_t)(l + n - after);
			memcpy(o, after, rest);
			o += rest;
		} else {
			memcpy(o, l, n);
			o += n;
		}
		l += n;
	}
	*o = '\0';
	return out;
}

static void round_trip(const char *text)
{
	struct cr_config *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	struct cr_diag *d = calloc(1, sizeof(*d));
	cr_assert_eq(cr_config_load_string(text, "in.conf", a, d), 0, "%s", d->msg[0]);
	char *first = dump_of(a);
	cr_assert_eq(cr_config_load_string(first, "dump.conf", b, d), 0,
		     "the dump is not valid input: %s\n%s", d->msg[0], first);
	char *second = dump_of(b);
	char *n1 = normalized(first), *n2 = normalized(second);
	cr_expect_str_eq(n2, n1, "the dump read back means something else:\n%s\n----\n%s", n1, n2);
	cr_expect_eq(a->nlanes, b->nlanes);
	for (int i = 0; i < a->nlanes && i < b->nlanes; i++) {
		cr_expect_eq(a->lanes[i].implicit, b->lanes[i].implicit, "lane %s", a->lanes[i].name);
		cr_expect_eq(a->lanes[i].passthrough, b->lanes[i].passthrough, "lane %s", a->lanes[i].name);
		cr_expect_eq(cr_config_lane_conn_hash(&a->lanes[i]), cr_config_lane_conn_hash(&b->lanes[i]),
			     "lane %s", a->lanes[i].name);
	}
	free(n1);
	free(n2);
	free(first);
	free(second);
	free(a);
	free(b);
	free(d);
}

Test(check, dump_reads_back_as_the_same_config)
{
	round_trip("[global]\nlog = info\nmetrics = 127.0.0.1:9464\n"
		   "[threads]\nbatch-* = reports/batch\nw? = a/b+idempotent\n"
		   "[lane critical]\nmatch = payment-gateway/critical, */critical\n"
		   "hosts = 127.0.0.0/8:8443, api.internal, [::1]:443, *.svc:80, *:5432\n"
		   "connect_timeout = 1s\nmax_conns_per_host = 100\nqueue_timeout = 0\n"
		   "keepalive = 30s\nkeepalive_interval = 10s\nkeepalive_count = 3\nnodelay = off\n"
		   "dscp = ef\nmark = 7\npriority = 6\nbind = ::1\nmin_tls = 1.3\nretries = 2\n"
		   "retry_budget = 12.5%\nprewarm = api.internal:443*4, [::1]:443\n"
		   "prewarm_url = https://api.internal/healthz\nprewarm_method = GET\n"
		   "preconnect_ratio = 1.5\nmax_lifetime = 90m\nwarm_max_idle = 10s\n"
		   "[lane plain]\ntos = 0x10\n[lane bare]\n");
}

Test(check, dump_of_defaults_and_the_implicit_lane_reads_back)
{
	round_trip("");                            /* only the implicit default lane */
	round_trip("[lane a]\n");                  /* a lane left to its defaults */
	round_trip("[lane a]\nmatch = x/*\n[lane default]\nconnect_timeout = 2s\n");
}

/* ---------------------------------------------------------------- notices */

static char logpath[] = "/tmp/cr-notice-XXXXXX";

static void log_to_file(void)
{
	int fd = mkstemp(logpath);
	cr_assert(fd >= 0);
	close(fd);
	cr_log_setup(CR_LL_INFO, logpath);
	cr_notice_reset();
}

static int count_in_log(const char *needle)
{
	FILE *f = fopen(logpath, "r");
	char line[2048];
	int n = 0;
	while (f && fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	if (f)
		fclose(f);
	return n;
}

static void unlink_log(void)
{
	unlink(logpath);
}

Test(notice, first_use_of_a_lane_and_each_unmatched_key_once, .init = log_to_file, .fini = unlink_log)
{
	struct cr_lane crit = {.name = "critical", .id = 3}, def = {.name = "default", .id = 4};
	for (int i = 0; i < 5; i++) {
		cr_notice_lane(&crit, "payments/critical", 0);
		cr_notice_lane(&def, "paymnets/critical", 1);
		cr_notice_lane(&def, "paymnets/critical+idempotent", 1); /* the same key */
		cr_notice_lane(&def, "default", 1);                      /* not a mistake */
	}
	cr_notice_lane(&def, "reports/batch", 1);
	cr_expect_eq(count_in_log("lane critical: first use"), 1);
	cr_expect_eq(count_in_log("lane default: first use"), 1);
	cr_expect_eq(count_in_log("key 'paymnets/critical' matches no lane"), 1);
	cr_expect_eq(count_in_log("key 'reports/batch' matches no lane"), 1);
	cr_expect_eq(count_in_log("key 'default'"), 0);
}

Test(notice, nothing_at_the_default_level, .init = log_to_file, .fini = unlink_log)
{
	struct cr_lane def = {.name = "default", .id = 4};
	cr_log_setup(CR_LL_WARN, logpath);
	cr_notice_lane(&def, "typo/key", 1);
	cr_expect_eq(count_in_log("typo/key"), 0, "info lines stay quiet at warn");
}

Test(notice, first_refusal_per_lane_and_destination_and_rate_limited, .init = log_to_file,
     .fini = unlink_log)
{
	struct cr_lane l = {.name = "batch", .id = 2, .max_conns_per_host = 4, .queue_timeout_ms = 500};
	struct cr_lane m = {.name = "other", .id = 5, .max_conns_per_host = 4};
	struct cr_dest a = {.family = AF_INET, .port = 443}, b = a, h = {.family = AF_UNSPEC, .port = 443,
									     .host = "api.internal"};
	inet_pton(AF_INET, "10.0.0.5", a.addr);
	inet_pton(AF_INET, "10.0.0.6", b.addr);
	for (int i = 0; i < 20; i++) {
		cr_notice_refused(&l, &a, 1);
		cr_notice_refused(&l, &b, 0);
		cr_notice_refused(&m, &a, 1);
		cr_notice_refused(&l, &h, 0);
	}
	cr_expect_eq(count_in_log("lane batch: a non-blocking connect to 10.0.0.5:443 failed with EAGAIN"), 1);
	cr_expect_eq(count_in_log("lane batch: a connection to 10.0.0.6:443 waited queue_timeout = 500ms"), 1);
	cr_expect_eq(count_in_log("lane other: a non-blocking connect to 10.0.0.5:443"), 1);
	cr_expect_eq(count_in_log("to api.internal:443"), 1);
	/* many destinations: at most 10 lines a minute in all */
	for (int i = 0; i < 50; i++) {
		struct cr_dest d = {.family = AF_INET, .port = (uint16_t)(1000 + i)};
		cr_notice_refused(&l, &d, 1);
	}
	cr_expect_eq(count_in_log("max_conns_per_host"), 10);
}

/* ------------------------------------------------------- connroute.conf(5) */

#include "config_int.h"

/* connroute.conf(5) has a subsection for every key of the key table, and none
 * for a key that does not exist. */
Test(check, man_page_has_every_key)
{
	FILE *f = fopen("docs/man/connroute.conf.5.scd", "r");
	cr_assert(f, "run the tests from the repository root (make test does)");
	static char text[1 << 18];
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	char want[96];
	for (size_t i = 0; i < cr_nlane_keys; i++) {
		snprintf(want, sizeof(want), "\n## %s\n", cr_lane_keys[i].name);
		/* scdoc escapes underscores */
		char esc[128];
		size_t k = 0;
		for (const char *c = want; *c && k + 2 < sizeof(esc); c++) {
			if (*c == '_')
				esc[k++] = '\\';
			esc[k++] = *c;
		}
		esc[k] = '\0';
		cr_expect(strstr(text, esc) != NULL, "connroute.conf(5) has no section %s", cr_lane_keys[i].name);
	}
	for (size_t i = 0; i < cr_nglobal_keys; i++) {
		snprintf(want, sizeof(want), "\n## [global] %s\n", cr_global_keys[i].name);
		cr_expect(strstr(text, want) != NULL, "connroute.conf(5) has no section [global] %s",
			  cr_global_keys[i].name);
	}
	for (const char *p = text; (p = strstr(p, "\n## ")); p += 4) {
		char name[96];
		size_t k = 0;
		const char *q = p + 4;
		if (!strncmp(q, "[global] ", 9) || !strncmp(q, "[threads]", 9))
			continue;
		for (; *q && *q != '\n' && k + 1 < sizeof(name); q++)
			if (*q != '\\')
				name[k++] = *q;
		name[k] = '\0';
		cr_expect(cr_cfg_lane_key(name) != NULL, "connroute.conf(5) documents '%s', which is not a key",
			  name);
	}
}
