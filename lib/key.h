/* connroute: routing keys. A key is `upstream/priority` by convention, at
 * most CR_KEY_MAX-1 bytes of [A-Za-z0-9._~:/@=-], optionally followed by
 * flags: `payment-gateway/critical+idempotent`. */
#ifndef CR_KEY_H
#define CR_KEY_H

#include "config.h"

#define CR_KEYF_IDEMPOTENT 1u

/* 0 when KEY is valid, else -EINVAL. */
int cr_key_check(const char *key);

/* Length of the key proper (before any '+flags'), and its flags. */
unsigned cr_key_flags(const char *key, unsigned *flags);

/* This thread's API key: set (copied) or cleared with NULL. -EINVAL for a
 * bad key (the previous key stays). */
int cr_key_set(const char *key);

/* The key set through the API on this thread, or NULL. */
const char *cr_key_api(void);

/* The process default (CONNROUTE_KEY, validated at init) or "default". */
void cr_key_set_default(const char *key);
const char *cr_key_default(void);

/* Resolution for the current thread, first hit wins: API key, a thread-name
 * rule of CFG, the process default, "default". The result stays valid until
 * the next call on this thread. */
const char *cr_key_resolve(const struct cr_config *cfg);

#endif
