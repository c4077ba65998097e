/* A plugin that uses libcurl (tests/progs/plughost.c loads it). Built twice by the
 * Makefile from this one file: libplug_openssl.so linked with -lcurl (libcurl.so.4,
 * OpenSSL) and libplug_gnutls.so linked with libcurl-gnutls.so.4, so the two are the same
 * size and the second one can land where the first one was.
 *
 * plug_run(url, cafile) makes one request with a cipher setting in the syntax of the TLS
 * library its own libcurl uses (an OpenSSL cipher list, or a GnuTLS priority string):
 * a handle made by the other libcurl fails it with CURLE_SSL_CIPHER. */
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

static size_t body(char *p, size_t sz, size_t n, void *ud)
{
	(void)ud;
	printf("plugin body: %.*s\n", (int)(sz * n), p);
	return sz * n;
}

__attribute__((visibility("default"))) int plug_run(const char *url, const char *cafile)
{
	/* curl_version_info is not interposed: it always answers for the libcurl this
	 * plugin was linked with. */
	const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
	const char *ssl = v && v->ssl_version ? v->ssl_version : "none";
	int gnutls = strncmp(ssl, "GnuTLS", 6) == 0;
	CURL *h = curl_easy_init();
	if (!h)
		return -1;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CAINFO, cafile);
	curl_easy_setopt(h, CURLOPT_SSL_CIPHER_LIST, gnutls ? "NORMAL" : "HIGH:!aNULL");
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, body);
	CURLcode rc = curl_easy_perform(h);
	printf("plugin ssl=%s rc=%d\n", gnutls ? "gnutls" : "openssl", (int)rc);
	fflush(stdout);
	curl_easy_cleanup(h);
	return (int)rc;
}
