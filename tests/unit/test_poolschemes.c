/* pool_schemes (docs/INTERNALS.md, "Pooled schemes"): the key's parsing and
 * validation, the scheme of a URL, and the perform path's decision (the
 * libcurl lanes engine driven directly, as in test_curlpool.c). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "curl/lanes.h"
#include "engine.h"
#include "limit.h"

#include "curl_fns.h"
#include "curlpool_server.h"

#define BIT(s) (long long)(1ULL << cr_scheme_bit(s, strlen(s)))

/* ------------------------------------------------------------- the key */

static struct cr_config *cfg;
static struct cr_diag *dg;

static void cfg_setup(void)
{
	cfg = calloc(1, sizeof(*cfg));
	dg = calloc(1, sizeof(*dg));
	cr_assert(cfg && dg);
}

static void cfg_teardown(void)
{
	free(cfg);
	free(dg);
}

TestSuite(poolschemes_key, .init = cfg_setup, .fini = cfg_teardown);

static long long lane_mask(const char *body)
{
	char text[1024];
	snprintf(text, sizeof(text), "[lane t]\n%s\n", body);
	int rc = cr_config_load_string(text, "conf.ini", cfg, dg);
	cr_assert_eq(rc, 0, "rejected: %s\n%s", dg->n ? dg->msg[0] : "", text);
	int i = cr_config_find_lane(cfg, "t");
	cr_assert_geq(i, 0);
	return cfg->lanes[i].pool_schemes;
}

static void lane_error(const char *body, const char *msg)
{
	char text[1024];
	snprintf(text, sizeof(text), "[lane t]\n%s\n", body);
	cr_assert_eq(cr_config_load_string(text, "conf.ini", cfg, dg), -1, "accepted:\n%s", text);
	cr_assert_eq(dg->n, 1, "%d errors, first: %s", dg->n, dg->msg[0]);
	cr_assert_str_eq(dg->msg[0], msg);
}

Test(poolschemes_key, defaults_are_http_and_https)
{
	cr_expect_eq(lane_mask(""), BIT("http") | BIT("https"));
	cr_config_builtin(cfg);
	cr_expect_eq(cfg->lanes[0].pool_schemes, BIT("http") | BIT("https"),
		     "the implicit default lane too (no config file)");
}

Test(poolschemes_key, lists_star_and_none)
{
	cr_expect_eq(lane_mask("pool_schemes = ftp"), BIT("ftp"));
	cr_expect_eq(lane_mask("pool_schemes = HTTPS ,ftp,  imap"),
		     BIT("https") | BIT("ftp") | BIT("imap"));
	cr_expect_eq(lane_mask("pool_schemes = http, http"), BIT("http"));
	cr_expect_eq(lane_mask("pool_schemes = *"), CR_POOL_SCHEMES_ALL);
	cr_expect_eq(lane_mask("pool_schemes = none"), 0);
	cr_expect_eq(lane_mask("pool_schemes = NONE"), 0);
}

Test(poolschemes_key, bad_values_name_file_and_line)
{
	lane_error("pool_schemes = http, gopherz",
		   "conf.ini:2: bad pool_schemes 'http, gopherz': unknown scheme 'gopherz'; use "
		   "URL schemes (e.g. http, https, ftp), * (every scheme) or none");
	lane_error("pool_schemes = http,,ftp",
		   "conf.ini:2: bad pool_schemes 'http,,ftp': an empty item; use URL schemes "
		   "(e.g. http, https, ftp), * (every scheme) or none");
	lane_error("pool_schemes = http,",
		   "conf.ini:2: bad pool_schemes 'http,': an empty item; use URL schemes "
		   "(e.g. http, https, ftp), * (every scheme) or none");
	lane_error("pool_schemes = *, ftp",
		   "conf.ini:2: bad pool_schemes '*, ftp': unknown scheme '*'; use URL schemes "
		   "(e.g. http, https, ftp), * (every scheme) or none");
}

Test(poolschemes_key, prewarm_url_must_be_pooled)
{
	lane_error("prewarm_url = https://api.internal/\npool_schemes = http",
		   "conf.ini:2: prewarm_url's scheme 'https' is not in this lane's pool_schemes: "
		   "its connections would never be used");
	cr_expect_eq(lane_mask("pool_schemes = https\nprewarm_url = https://api.internal/"),
		     BIT("https"));
}

Test(poolschemes_key, the_dump_reads_back)
{
	const char *in[] = {"pool_schemes = ftp, HTTP", "pool_schemes = *", "pool_schemes = none",
			    ""};
	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		long long m = lane_mask(in[i]);
		char *buf = NULL;
		size_t n = 0;
		FILE *f = open_memstream(&buf, &n);
		cr_config_dump(cfg, f);
		fclose(f);
		char *line = strstr(buf, "\npool_schemes = ");
		cr_assert(line, "%s", buf);
		char body[256];
		snprintf(body, sizeof(body), "%.*s", (int)strcspn(line + 1, "\n"), line + 1);
		cr_expect_eq(lane_mask(body), m, "%s -> %s", in[i], body);
		free(buf);
	}
}

/* ------------------------------------------------------- a URL's scheme */

static int url_bit(const char *url)
{
	char scheme[16], host[256];
	int port;
	cr_assert_eq(cr_curl_parse_url(url, scheme, sizeof(scheme), host, sizeof(host), &port), 0);
	return cr_scheme_bit(scheme, strlen(scheme));
}

Test(poolschemes_url, scheme_bits)
{
	cr_expect_eq(url_bit("http://a/"), CR_SCHEME_HTTP);
	cr_expect_eq(url_bit("HTTPS://a:8443/x"), CR_SCHEME_HTTPS);
	cr_expect_eq(url_bit("ftp://u:p@a/f"), cr_scheme_bit("ftp", 3));
	cr_expect_eq(url_bit("imaps://a/INBOX"), cr_scheme_bit("imaps", 5));
	cr_expect_eq(url_bit("foo://a/"), CR_SCHEME_OTHER);
	/* no scheme: libcurl's guess from the host name */
	cr_expect_eq(url_bit("example.com/x"), CR_SCHEME_HTTP);
	cr_expect_eq(url_bit("ftp.example.com/x"), cr_scheme_bit("ftp", 3));
	cr_expect_eq(url_bit("FTP.example.com/x"), cr_scheme_bit("ftp", 3));
	cr_expect_eq(url_bit("pop3.example.com"), cr_scheme_bit("pop3", 4));
	cr_expect_eq(url_bit("ftpx.example.com"), CR_SCHEME_HTTP);
	unsigned long long other = 1ULL << CR_SCHEME_OTHER;
	cr_expect_eq((unsigned long long)CR_POOL_SCHEMES_DEFAULT & other, 0);
	cr_expect_eq((unsigned long long)CR_POOL_SCHEMES_ALL & other, other,
		     "* pools schemes libcurl may add later too");
}

/* ----------------------------------------------- the perform's decision */

static struct cr_curllib *lib;

static size_t sink(char *p, size_t sz, size_t n, void *ud)
{
	(void)p;
	(void)ud;
	return sz * n;
}

static void eng_setup(void)
{
	struct cr_curlfns f = cr_test_curlfns();
	lib = cr_test_curl_register(&f);
	cr_limits_init(256, NULL, NULL);
	ts_start();
}

static void publish(const char *text)
{
	struct cr_config *c = calloc(1, sizeof(*c));
	struct cr_diag d;
	if (text)
		cr_assert_eq(cr_config_load_string(text, "test.conf", c, &d), 0, "%s", d.msg[0]);
	else
		cr_config_builtin(c);
	cr_engine_publish(c);
}

/* A port nobody listens on: an FTP transfer there fails at once (refused). */
static int closed_port(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t n = sizeof(a);
	bind(s, (struct sockaddr *)&a, sizeof(a));
	getsockname(s, (struct sockaddr *)&a, &n);
	close(s);
	return ntohs(a.sin_port);
}

static CURLcode perform(CURL *h, const char *url)
{
	cr_curl_setopt(lib, h, CURLOPT_URL, (void *)url, 0, 0);
	cr_curl_setopt(lib, h, CURLOPT_WRITEFUNCTION, (void *)sink, 0, 0);
	cr_curl_setopt(lib, h, CURLOPT_NOSIGNAL, NULL, 1, 0);
	return cr_curl_perform(lib, h);
}

static void decide(const char *conf, int want_pooled)
{
	publish(conf);
	char url[128];
	snprintf(url, sizeof(url), "ftp://127.0.0.1:%d/f", closed_port());
	struct cr_curl_stats a, b;
	cr_curl_stats(&a);
	CURL *h = cr_curl_init(lib);
	cr_expect_eq(perform(h, url), CURLE_COULDNT_CONNECT);
	cr_curl_cleanup(lib, h);
	cr_curl_stats(&b);
	cr_expect_eq(b.performs_pooled - a.performs_pooled, want_pooled, "%s", conf ? conf : "");
	cr_expect_eq(b.performs_unpooled - a.performs_unpooled, !want_pooled);
	cr_expect_eq(b.handles_recycled - a.handles_recycled, want_pooled,
		     "a handle that performed unpooled is really cleaned up");
}

Test(poolschemes, ftp_unpooled_by_default, .init = eng_setup, .fini = ts_stop)
{
	decide(NULL, 0);
}

Test(poolschemes, ftp_unpooled_in_a_file_lane, .init = eng_setup, .fini = ts_stop)
{
	decide("[lane default]\nmax_conns_per_host = 4\n", 0);
}

Test(poolschemes, star_pools_ftp, .init = eng_setup, .fini = ts_stop)
{
	decide("[lane default]\npool_schemes = *\n", 1);
}

Test(poolschemes, listed_ftp_is_pooled, .init = eng_setup, .fini = ts_stop)
{
	decide("[lane default]\npool_schemes = http, ftp\n", 1);
}

Test(poolschemes, none_pools_no_http, .init = eng_setup, .fini = ts_stop)
{
	publish("[lane default]\npool_schemes = none\n");
	char url[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", ts_port());
	for (int i = 0; i < 3; i++) {
		CURL *h = cr_curl_init(lib);
		cr_expect_eq(perform(h, url), CURLE_OK);
		cr_curl_cleanup(lib, h);
	}
	cr_expect_eq(ts_accepted(), 3, "every handle its own connection, as without the shim");
}

/* A handle that switches from http to ftp gives its parked share back before
 * the unpooled perform: the next handle's HTTP request finds the pooled
 * connection free (a share parked on a handle that performed less than a
 * second ago is never taken: it would open a second connection). */
Test(poolschemes, switching_to_ftp_gives_the_share_back, .init = eng_setup, .fini = ts_stop)
{
	publish(NULL);
	char http[128], ftp[128];
	snprintf(http, sizeof(http), "http://127.0.0.1:%d/", ts_port());
	snprintf(ftp, sizeof(ftp), "ftp://127.0.0.1:%d/f", closed_port());
	CURL *h = cr_curl_init(lib);
	cr_assert_eq(perform(h, http), CURLE_OK);
	cr_expect_eq(perform(h, ftp), CURLE_COULDNT_CONNECT);
	CURL *g = cr_curl_init(lib);
	cr_assert_eq(perform(g, http), CURLE_OK);
	cr_expect_eq(ts_accepted(), 1, "the connection went back to the pool");
	cr_curl_cleanup(lib, g);
	struct cr_curl_stats a, b;
	cr_curl_stats(&a);
	cr_curl_cleanup(lib, h);
	cr_curl_stats(&b);
	cr_expect_eq(b.handles_recycled, a.handles_recycled,
		     "its own cache may hold an FTP session: really cleaned up");
}

