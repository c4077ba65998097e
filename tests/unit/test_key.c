#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/prctl.h>

#include "key.h"

Test(key, valid_keys)
{
	cr_expect_eq(cr_key_check("default"), 0);
	cr_expect_eq(cr_key_check("payment-gateway/critical"), 0);
	cr_expect_eq(cr_key_check("a.b_c~d:e/f@g=h-1"), 0);
	cr_expect_eq(cr_key_check("reports/batch+idempotent"), 0);
}

Test(key, invalid_keys)
{
	char long_key[200];
	memset(long_key, 'a', sizeof(long_key) - 1);
	long_key[sizeof(long_key) - 1] = '\0';
	cr_expect_eq(cr_key_check(NULL), -EINVAL);
	cr_expect_eq(cr_key_check(""), -EINVAL);
	cr_expect_eq(cr_key_check("has space"), -EINVAL);
	cr_expect_eq(cr_key_check("glob*"), -EINVAL);
	cr_expect_eq(cr_key_check("semi;colon"), -EINVAL);
	cr_expect_eq(cr_key_check("x+idempotnet"), -EINVAL, "a misspelt flag is an error");
	cr_expect_eq(cr_key_check("+idempotent"), -EINVAL, "flags need a key");
	cr_expect_eq(cr_key_check(long_key), -EINVAL);
	long_key[CR_KEY_MAX - 1] = '\0';
	cr_expect_eq(cr_key_check(long_key), 0, "127 bytes is the maximum");
	long_key[CR_KEY_MAX - 1] = 'a';
	long_key[CR_KEY_MAX] = '\0';
	cr_expect_eq(cr_key_check(long_key), -EINVAL, "128 bytes is one too many");
}

Test(key, flags_are_split_off)
{
	unsigned f = 99;
	cr_expect_eq(cr_key_flags("a/b+idempotent", &f), 3);
	cr_expect_eq(f, CR_KEYF_IDEMPOTENT);
	cr_expect_eq(cr_key_flags("a/b", &f), 3);
	cr_expect_eq(f, 0);
}

Test(key, set_and_clear_per_thread)
{
	cr_expect_null(cr_key_api());
	cr_expect_eq(cr_key_set("x/y"), 0);
	cr_expect_str_eq(cr_key_api(), "x/y");
	cr_expect_eq(cr_key_set("bad key"), -EINVAL);
	cr_expect_str_eq(cr_key_api(), "x/y", "a bad key leaves the previous one");
	cr_expect_eq(cr_key_set(NULL), 0);
	cr_expect_null(cr_key_api());
}

static void *other_thread(void *arg)
{
	(void)arg;
	return (void *)cr_key_api();
}

Test(key, api_key_is_thread_local)
{
	pthread_t t;
	void *seen = (void *)1;
	cr_key_set("mine/critical");
	pthread_create(&t, NULL, other_thread, NULL);
	pthread_join(t, &seen);
	cr_expect_null(seen, "another thread does not see this thread's key");
}

Test(key, resolution_order)
{
	struct cr_config *cfg = calloc(1, sizeof(*cfg));
	cr_key_set(NULL);
	cr_key_set_default(NULL);
	cr_expect_str_eq(cr_key_resolve(cfg), "default");
	cr_key_set_default("env/standard");
	cr_expect_str_eq(cr_key_resolve(cfg), "env/standard");
	cr_key_set_default("bad key");
	cr_expect_str_eq(cr_key_resolve(cfg), "default", "an invalid default falls back");
	cr_key_set_default("env/standard");

	prctl(PR_SET_NAME, "batch-worker-1", 0, 0, 0);
	strcpy(cfg->threads[0].glob, "batch-*");
	strcpy(cfg->threads[0].key, "reports/batch");
	cfg->nthreads = 1;
	cr_expect_str_eq(cr_key_resolve(cfg), "reports/batch", "thread-name rule beats the env default");
	cr_key_set("api/critical");
	cr_expect_str_eq(cr_key_resolve(cfg), "api/critical", "the API key beats everything");
	cr_key_set(NULL);
	prctl(PR_SET_NAME, "other", 0, 0, 0);
	cr_expect_str_eq(cr_key_resolve(cfg), "env/standard");
	free(cfg);
}
