/* connroute: routing keys and their per-thread resolution. */
#include <errno.h>
#include <string.h>
#include <sys/prctl.h>

#include "connroute.h"
#include "glob.h"
#include "key.h"

/* Initial-exec TLS (see the Makefile): no __tls_get_addr, no allocation, safe
 * to touch from any hook on any thread. */
static __thread char tls_key[CR_KEY_MAX];
static __thread int tls_key_set;
static __thread char tls_resolved[CR_KEY_MAX];

/* A key the public API accepts must fit the engine's buffers, and back. */
_Static_assert(CONNROUTE_KEY_MAX == CR_KEY_MAX,
	       "include/connroute.h and lib/config.h disagree on the key length");

static char proc_default[CR_KEY_MAX] = "default";

static int key_char_ok(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '~' || c == ':' || c == '/' || c == '@' || c == '=' ||
	       c == '-';
}

unsigned cr_key_flags(const char *key, unsigned *flags)
{
	const char *plus = strchr(key, '+');
	unsigned f = 0;
	if (!plus) {
		if (flags)
			*flags = 0;
		return (unsigned)strlen(key);
	}
	for (const char *p = plus; *p == '+';) {
		const char *q = p + 1, *e = strchr(q, '+');
		size_t n = e ? (size_t)(e - q) : strlen(q);
		if (n == 10 && memcmp(q, "idempotent", 10) == 0)
			f |= CR_KEYF_IDEMPOTENT;
		if (!e)
			break;
		p = e;
	}
	if (flags)
		*flags = f;
	return (unsigned)(plus - key);
}

int cr_key_check(const char *key)
{
	size_t n;
	if (!key)
		return -EINVAL;
	n = strnlen(key, CR_KEY_MAX);
	if (n == 0 || n >= CR_KEY_MAX)
		return -EINVAL;
	unsigned base = cr_key_flags(key, NULL);
	if (base == 0)
		return -EINVAL;
	for (unsigned i = 0; i < base; i++)
		if (!key_char_ok((unsigned char)key[i]))
			return -EINVAL;
	/* Flags: "+word" with word in [a-z-]; unknown words are rejected so a
	 * typo ("+idempotnet") does not silently lose its meaning. */
	for (const char *p = key + base; *p;) {
		const char *q = p + 1, *e = strchr(q, '+');
		size_t len = e ? (size_t)(e - q) : strlen(q);
		if (!(len == 10 && memcmp(q, "idempotent", 10) == 0))
			return -EINVAL;
		p = q + len;
	}
	return 0;
}

int cr_key_set(const char *key)
{
	if (!key) {
		tls_key_set = 0;
		tls_key[0] = '\0';
		return 0;
	}
	if (cr_key_check(key) != 0)
		return -EINVAL;
	memcpy(tls_key, key, strlen(key) + 1);
	tls_key_set = 1;
	return 0;
}

const char *cr_key_api(void)
{
	return tls_key_set ? tls_key : NULL;
}

void cr_key_set_default(const char *key)
{
	if (!key || cr_key_check(key) != 0)
		key = "default";
	memcpy(proc_default, key, strlen(key) + 1);
}

const char *cr_key_default(void)
{
	return proc_default;
}

const char *cr_key_resolve(const struct cr_config *cfg)
{
	if (tls_key_set)
		return tls_key;
	if (cfg && cfg->nthreads > 0) {
		/* Thread names can change at any time, so no caching: one prctl
		 * per routed connect, only when the config has thread rules. */
		char name[17] = {0};
		if (prctl(PR_GET_NAME, name, 0, 0, 0) == 0) {
			for (int i = 0; i < cfg->nthreads; i++) {
				if (cr_glob_match(cfg->threads[i].glob, name)) {
					size_t n = strnlen(cfg->threads[i].key, CR_KEY_MAX - 1);
					memcpy(tls_resolved, cfg->threads[i].key, n);
					tls_resolved[n] = '\0';
					return tls_resolved;
				}
			}
		}
	}
	return proc_default;
}
