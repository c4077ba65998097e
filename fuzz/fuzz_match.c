/* libFuzzer harness: routing keys and rule matching (lib/key.c, lib/lane.c, and the config
 * parser where rules come from).
 *
 * The input is up to four lines: KEY, GLOB, NAME (a host name / thread name), RULE (a
 * `hosts =` item). Each function is checked against a small reference written here, so a
 * disagreement is a finding even when nothing crashes:
 *   - cr_key_check against a straightforward validator of README's key grammar
 *     (1-127 bytes of A-Za-z0-9._~:/@=-, then any number of "+idempotent"), cr_key_flags,
 *     cr_key_set / cr_key_api / cr_key_resolve round trips;
 *   - cr_glob_match and cr_glob_match_icase against a dynamic-programming matcher;
 *   - a config "[lane fz] match = GLOB": when it parses, cr_lane_select(KEY) picks lane fz
 *     exactly when the reference says GLOB matches KEY without its flags; a config
 *     "[threads] GLOB = KEY" makes cr_key_resolve return KEY exactly when GLOB matches this
 *     thread's name (set to NAME); "[lane fz] hosts = RULE" must never make
 *     cr_hostrule_match crash, and a name rule without a port matches NAME as the
 *     reference says. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "config.h"
#include "key.h"
#include "lane.h"

static struct cr_config cfg;
static struct cr_diag diag;

static void fail(const char *what, const char *a, const char *b)
{
	fprintf(stderr, "fuzz_match: %s: '%.200s' '%.200s'\n", what, a ? a : "", b ? b : "");
	abort();
}

static int lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* pattern P (with * and ?) against S (n bytes): DP over suffixes, O(|P|*|S|). */
static int ref_glob(const char *p, const char *s, size_t n, int icase)
{
	size_t m = strlen(p);
	if (m > 512 || n > 512)
		return -1;      /* out of the reference's range: skip */
	static unsigned char dp[514][514];
	for (size_t i = m + 1; i-- > 0;) {
		for (size_t j = n + 1; j-- > 0;) {
			int r;
			if (i == m)
				r = j == n;
			else if (p[i] == '*')
				r = dp[i + 1][j] || (j < n && dp[i][j + 1]);
			else if (j < n && (p[i] == '?' || (icase ? lower((unsigned char)p[i]) == lower((unsigned char)s[j])
								  : p[i] == s[j])))
				r = dp[i + 1][j + 1];
			else
				r = 0;
			dp[i][j] = (unsigned char)r;
		}
	}
	return dp[0][0];
}

static int key_char(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("._~:/@=-", c));
}

/* README: "1-127 characters of A-Za-z0-9._~:/@=-, optionally followed by +idempotent". */
static int ref_key_ok(const char *k, size_t *base, unsigned *flags)
{
	size_t n = strlen(k), i = 0;
	*flags = 0;
	if (n == 0 || n > 127)
		return 0;
	while (i < n && key_char((unsigned char)k[i]))
		i++;
	*base = i;
	if (i == 0)
		return 0;
	while (i < n) {
		if (strncmp(k + i, "+idempotent", 11) != 0)
			return 0;
		*flags |= CR_KEYF_IDEMPOTENT;
		i += 11;
	}
	return 1;
}

static void check_key(const char *key)
{
	size_t base = 0;
	unsigned rflags = 0, flags = 99;
	int want = ref_key_ok(key, &base, &rflags);
	int got = cr_key_check(key);
	if (got != 0 && got != -EINVAL)
		fail("cr_key_check returned neither 0 nor -EINVAL", key, NULL);
	if ((got == 0) != want)
		fail(want ? "valid key refused" : "invalid key accepted", key, NULL);
	unsigned len = cr_key_flags(key, &flags);
	if (len > strlen(key))
		fail("cr_key_flags length beyond the key", key, NULL);
	if (want && (len != base || flags != rflags))
		fail("cr_key_flags disagrees", key, NULL);
	int set = cr_key_set(key);
	if ((set == 0) != want)
		fail("cr_key_set disagrees with cr_key_check", key, NULL);
	if (want) {
		if (!cr_key_api() || strcmp(cr_key_api(), key) != 0)
			fail("cr_key_api does not return the key set", key, NULL);
		if (strcmp(cr_key_resolve(NULL), key) != 0)
			fail("cr_key_resolve ignores the API key", key, NULL);
	}
	cr_key_set(NULL);
	if (cr_key_api() != NULL)
		fail("cr_key_set(NULL) did not clear", key, NULL);
}

static void check_glob(const char *glob, const char *s)
{
	int r = ref_glob(glob, s, strlen(s), 0);
	if (r >= 0 && cr_glob_match(glob, s) != r)
		fail(r ? "glob should match" : "glob should not match", glob, s);
	r = ref_glob(glob, s, strlen(s), 1);
	if (r >= 0 && cr_glob_match_icase(glob, s) != r)
		fail(r ? "icase glob should match" : "icase glob should not match", glob, s);
}

/* Only values that survive the INI line unchanged (no list separators, comments, spaces;
 * as a name before '=' also no '=' or ':'). */
static int ini_safe(const char *s, size_t max, int as_name)
{
	size_t n = strlen(s);
	if (n == 0 || n > max)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= ' ' || c >= 0x7f || c == ',' || c == ';' || c == '#' || c == '[' || c == ']')
			return 0;
		if (as_name && (c == '=' || c == ':'))
			return 0;
	}
	return 1;
}

static void check_lane_match(const char *key, const char *glob)
{
	if (!ini_safe(glob, 150, 0))
		return;
	char text[300];
	snprintf(text, sizeof(text), "[lane fz]\nmatch = %s\n", glob);
	if (cr_config_load_string(text, "fz", &cfg, &diag) != 0)
		return;
	int um = -1;
	const struct cr_lane *l = cr_lane_select(&cfg, key, NULL, &um);
	unsigned base = cr_key_flags(key, NULL);
	int r = ref_glob(glob, key, base, 0);
	if (r < 0)
		return;
	int picked = strcmp(l->name, "fz") == 0;
	if (picked != r || um != !r)
		fail(r ? "lane with a matching glob not selected" : "lane selected without a match", glob, key);
}

static void check_thread_rule(const char *key, const char *glob, const char *name)
{
	if (!ini_safe(glob, 15, 1) || !ini_safe(key, 127, 0) || cr_key_check(key) != 0)
		return;
	char text[300], tname[16], old[17] = {0};
	snprintf(text, sizeof(text), "[threads]\n%s = %s\n", glob, key);
	if (cr_config_load_string(text, "fz", &cfg, &diag) != 0)
		return;
	snprintf(tname, sizeof(tname), "%s", name);
	prctl(PR_GET_NAME, old, 0, 0, 0);
	prctl(PR_SET_NAME, tname, 0, 0, 0);
	char now[17] = {0};
	prctl(PR_GET_NAME, now, 0, 0, 0);
	const char *got = cr_key_resolve(&cfg);
	int r = ref_glob(glob, now, strlen(now), 0);
	if (r >= 0 && (strcmp(got, key) == 0) != r && strcmp(key, cr_key_default()) != 0)
		fail(r ? "thread rule not applied" : "thread rule applied without a match", glob, now);
	prctl(PR_SET_NAME, old, 0, 0, 0);
}

static void check_host_rule(const char *rule, const char *name)
{
	size_t n = strlen(rule);
	if (n == 0 || n > 180)
		return;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)rule[i];
		if (c <= ' ' || c >= 0x7f || c == ',' || c == ';' || c == '#')
			return;
	}
	char text[300];
	snprintf(text, sizeof(text), "[lane fz]\nhosts = %s\n", rule);
	if (cr_config_load_string(text, "fz", &cfg, &diag) != 0)
		return;
	int fz = cr_config_find_lane(&cfg, "fz");
	if (fz < 0)
		fail("lane fz missing", rule, NULL);
	const struct cr_lane *l = &cfg.lanes[fz];
	struct cr_dest d = {.family = AF_UNSPEC, .port = 443, .host = name};
	if (inet_pton(AF_INET, name, d.addr) == 1)
		d.family = AF_INET;
	else if (inet_pton(AF_INET6, name, d.addr) == 1)
		d.family = AF_INET6;
	for (int i = 0; i < l->nhosts; i++) {
		const struct cr_hostrule *h = &l->hosts[i];
		if (h->prefix < 0 || (h->family == AF_INET && h->prefix > 32) || h->prefix > 128)
			fail("host rule prefix out of range", rule, NULL);
		int got = cr_hostrule_match(h, &d);
		struct cr_dest raw = d;
		raw.host = NULL;
		(void)cr_hostrule_match(h, &raw);
		if (h->family == AF_UNSPEC && h->port == 0 && h->name[0] && strcmp(h->name, "*") != 0) {
			int r = ref_glob(h->name, name, strlen(name), 1);
			if (r >= 0 && got != r)
				fail("host name rule disagrees with the reference", h->name, name);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 4096)
		return 0;
	char buf[4097];
	memcpy(buf, data, size);
	buf[size] = '\0';
	const char *line[4] = {"", "", "", ""};
	char *p = buf;
	for (int i = 0; i < 4 && p; i++) {
		line[i] = p;
		char *nl = strchr(p, '\n');
		if (nl)
			*nl = '\0';
		p = nl ? nl + 1 : NULL;
	}
	check_key(line[0]);
	check_glob(line[1], line[0]);
	check_glob(line[1], line[2]);
	check_lane_match(line[0], line[1]);
	check_thread_rule(line[0], line[1], line[2]);
	check_host_rule(line[3], line[2]);
	return 0;
}
