/* libFuzzer harness: the config parser (lib/config.c over inih) on arbitrary bytes.
 *
 * The input is parsed as a config text (cr_config_load_string stops at the first NUL, as a C
 * string does); an input that contains a NUL is also parsed as a file (a memfd read through
 * /proc/self/fd, the path cr_config_load_file takes in a host), so the reader's NUL, BOM,
 * CRLF and long-line handling is reached too. Beyond the sanitizers (ASan, UBSan with no
 * recovery), every result is checked against what the rest of the engine relies on:
 *   - on success: 1..CR_MAX_LANES lanes, a lane "default" at default_lane, every name,
 *     match glob and thread rule NUL-terminated within its array and free of control
 *     bytes, every match glob and thread key a valid key/glob, timeouts within 0..INT_MAX;
 *     cr_config_dump() and cr_lane_select() work on it;
 *   - on failure: at least one diagnostic, each NUL-terminated within CR_DIAG_LEN, one line
 *     (no '\n'), no control bytes (a hostile file must not garble the terminal or forge log
 *     lines: the parser's own rule, see q() in config.c).
 * A violated invariant aborts with a message, which libFuzzer reports as a crash. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "key.h"
#include "lane.h"

static struct cr_config cfg;
static struct cr_diag diag;
static FILE *devnull;
/* FUZZ_KNOWN=diag-raw: do not stop at the two known findings (raw bytes in an unknown
 * section's "did you mean [lane NAME]?" and in a prewarm target's "needs a port, e.g.
 * HOST:443"; see fuzz/README.md) while looking for others. Never set by make fuzz/fuzz-ci. */
static int tolerate_known;

static void fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_config: invariant violated: %s: '%.300s'\n", what, detail ? detail : "");
	abort();
}

static void check_str(const char *s, size_t cap, const char *what, int allow_empty)
{
	size_t n = strnlen(s, cap);
	if (n == cap)
		fail(what, "not NUL-terminated");
	if (!allow_empty && n == 0)
		fail(what, "empty");
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			fail(what, s);
}

static int glob_chars_ok(const char *g)
{
	for (; *g; g++)
		if (!((*g >= 'a' && *g <= 'z') || (*g >= 'A' && *g <= 'Z') || (*g >= '0' && *g <= '9') ||
		      strchr("._~:/@=*?-", *g)))
			return 0;
	return 1;
}

static void check_ok(void)
{
	if (cfg.nlanes < 1 || cfg.nlanes > CR_MAX_LANES)
		fail("nlanes out of range", NULL);
	if (cfg.default_lane < 0 || cfg.default_lane >= cfg.nlanes ||
	    strcmp(cfg.lanes[cfg.default_lane].name, "default") != 0)
		fail("no lane 'default' at default_lane", NULL);
	if (cfg.nthreads < 0 || cfg.nthreads > CR_MAX_THREADS)
		fail("nthreads out of range", NULL);
	for (int i = 0; i < cfg.nlanes; i++) {
		const struct cr_lane *l = &cfg.lanes[i];
		check_str(l->name, sizeof(l->name), "lane name", 0);
		for (int j = 0; j < i; j++)
			if (strcmp(cfg.lanes[j].name, l->name) == 0)
				fail("duplicate lane name", l->name);
		if (l->nmatch < 0 || l->nmatch > CR_MAX_MATCH || l->nhosts < 0 || l->nhosts > CR_MAX_HOSTS ||
		    l->nprewarm < 0 || l->nprewarm > CR_MAX_PREWARM)
			fail("list count out of range", l->name);
		for (int j = 0; j < l->nmatch; j++) {
			check_str(l->match[j], sizeof(l->match[j]), "match glob", 0);
			if (!glob_chars_ok(l->match[j]))
				fail("match glob with a character keys never have", l->match[j]);
		}
		for (int j = 0; j < l->nhosts; j++)
			check_str(l->hosts[j].name, sizeof(l->hosts[j].name), "host rule", 1);
		for (int j = 0; j < l->nprewarm; j++)
			check_str(l->prewarm[j].host, sizeof(l->prewarm[j].host), "prewarm host", 0);
		check_str(l->prewarm_url, sizeof(l->prewarm_url), "prewarm_url", 1);
		check_str(l->prewarm_method, sizeof(l->prewarm_method), "prewarm_method", 1);
		const long t[] = {l->idle_timeout_ms, l->max_lifetime_ms, l->connect_timeout_ms,
				  l->response_header_timeout_ms, l->request_timeout_ms, l->queue_timeout_ms};
		for (size_t k = 0; k < sizeof(t) / sizeof(t[0]); k++)
			if (t[k] < -1 || t[k] > 2147483647L)
				fail("timeout out of range", l->name);
		if (l->retries < 0 || l->retries > 10)
			fail("retries out of range", l->name);
	}
	for (int i = 0; i < cfg.nthreads; i++) {
		check_str(cfg.threads[i].glob, sizeof(cfg.threads[i].glob), "thread glob", 0);
		check_str(cfg.threads[i].key, sizeof(cfg.threads[i].key), "thread key", 0);
		if (cr_key_check(cfg.threads[i].key) != 0)
			fail("thread rule key the config accepted but cr_key_check refuses", cfg.threads[i].key);
	}
	check_str(cfg.metrics, sizeof(cfg.metrics), "metrics", 1);

	/* what a host does with it */
	cr_config_dump(&cfg, devnull);
	static const char *const keys[] = {"default", "payment-gateway/critical", "x/batch+idempotent",
					   "reports/batch", "a"};
	struct cr_dest d = {.family = AF_INET, .addr = {127, 0, 0, 1}, .port = 443, .host = "api.internal"};
	for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
		int unmatched = -1;
		const struct cr_lane *l = cr_lane_select(&cfg, keys[k], &d, &unmatched);
		if (!l || l < cfg.lanes || l >= cfg.lanes + cfg.nlanes || (unmatched != 0 && unmatched != 1))
			fail("cr_lane_select", keys[k]);
		if (cr_config_find_lane(&cfg, l->name) != (int)(l - cfg.lanes))
			fail("cr_config_find_lane disagrees", l->name);
	}
	for (int i = 0; i < cfg.nlanes; i++)
		for (int j = 0; j < cfg.lanes[i].nmatch; j++)
			(void)cr_lane_select(&cfg, cfg.lanes[i].match[j], NULL, NULL);
}

static void check_failed(void)
{
	if (diag.n < 1)
		fail("refused without a diagnostic", NULL);
	int shown = diag.n < CR_MAX_DIAG ? diag.n : CR_MAX_DIAG;
	for (int i = 0; i < shown; i++) {
		const char *m = diag.msg[i];
		size_t n = strnlen(m, CR_DIAG_LEN);
		if (n == CR_DIAG_LEN)
			fail("diagnostic not NUL-terminated", NULL);
		if (tolerate_known && (strstr(m, "; did you mean [") || strstr(m, "' needs a port, e.g. ")))
			continue;
		for (size_t k = 0; k < n; k++)
			if ((unsigned char)m[k] < 0x20 || m[k] == 0x7f)
				fail("control byte in a diagnostic", m);
	}
}

static void check(int rc)
{
	if (rc == 0)
		check_ok();
	else if (rc == -1)
		check_failed();
	else
		fail("return value neither 0 nor -1", NULL);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	const char *known = getenv("FUZZ_KNOWN");
	tolerate_known = known && strstr(known, "diag-raw");
	devnull = fopen("/dev/null", "w");
	return devnull ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > (1u << 20))
		return 0;
	char *text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	check(cr_config_load_string(text, "fuzz.conf", &cfg, &diag));
	if (memchr(data, 0, size)) {
		int fd = memfd_create("fuzz.conf", MFD_CLOEXEC);
		if (fd >= 0) {
			if (write(fd, data, size) == (ssize_t)size) {
				char path[64];
				snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
				check(cr_config_load_file(path, &cfg, &diag));
			}
			close(fd);
		}
	}
	free(text);
	return 0;
}
