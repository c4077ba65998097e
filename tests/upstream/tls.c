/* connroute test upstream: a fresh self-signed P-256 certificate per run (OpenSSL 3 API, no
 * openssl CLI), written to <cert-dir>/cert.pem for clients to use as their CA file, and the
 * server SSL_CTX with a session cache and tickets so resumption can be observed. */
#include "upstream.h"

#include <errno.h>
#include <limits.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void ssl_err(const char *what)
{
    char buf[256];
    unsigned long e = ERR_get_error();
    ERR_error_string_n(e, buf, sizeof buf);
    up_log("%s: %s", what, e ? buf : "failed");
    ERR_clear_error();
}

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    if (!ext)
        return -1;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

static X509 *make_cert(EVP_PKEY *key)
{
    X509 *x = X509_new();
    BIGNUM *serial = BN_new();
    X509V3_CTX ctx;
    if (!x || !serial)
        goto fail;
    if (!X509_set_version(x, 2) || !BN_rand(serial, 63, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
        !BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)))
        goto fail;
    if (!X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), 7L * 24 * 3600))
        goto fail;
    if (!X509_set_pubkey(x, key))
        goto fail;
    X509_NAME *name = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                    (const unsigned char *)"connroute test upstream", -1, -1, 0) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost",
                                    -1, -1, 0) ||
        !X509_set_issuer_name(x, name))
        goto fail;
    /* Self-signed and used directly as the client's trust anchor (CAINFO). */
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    if (add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE") ||
        add_ext(x, &ctx, NID_key_usage, "critical,digitalSignature,keyCertSign") ||
        add_ext(x, &ctx, NID_ext_key_usage, "serverAuth") ||
        add_ext(x, &ctx, NID_subject_key_identifier, "hash") ||
        add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always") ||
        add_ext(x, &ctx, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1"))
        goto fail;
    if (!X509_sign(x, key, EVP_sha256()))
        goto fail;
    BN_free(serial);
    return x;
fail:
    ssl_err("certificate");
    BN_free(serial);
    X509_free(x);
    return NULL;
}

/* write tmp + rename, so a reader never sees half a file */
static int write_pem(const char *dir, const char *name, X509 *cert, EVP_PKEY *key)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path ||
        snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof tmp)
        return -1;
    mode_t old = umask(key ? 077 : 022);
    FILE *f = fopen(tmp, "w");
    umask(old);
    if (!f) {
        up_log("%s: %s", tmp, strerror(errno));
        return -1;
    }
    int ok = cert ? PEM_write_X509(f, cert) : PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    if (fclose(f) != 0 || !ok || rename(tmp, path) != 0) {
        up_log("writing %s failed", path);
        unlink(tmp);
        return -1;
    }
    return 0;
}

SSL_CTX *up_tls_init(const char *cert_dir)
{
    SSL_CTX *ctx = NULL;
    X509 *cert = NULL;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    if (!key) {
        ssl_err("EC key");
        return NULL;
    }
    if (!(cert = make_cert(key)))
        goto out;
    if (write_pem(cert_dir, "cert.pem", cert, NULL) || write_pem(cert_dir, "key.pem", NULL, key))
        goto out;
    ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        SSL_CTX_use_certificate(ctx, cert) != 1 || SSL_CTX_use_PrivateKey(ctx, key) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        ssl_err("SSL_CTX");
        SSL_CTX_free(ctx);
        ctx = NULL;
        goto out;
    }
    static const unsigned char sid_ctx[] = "cr-upstream";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, 4096);     /* bounded */
out:
    X509_free(cert);
    EVP_PKEY_free(key);
    return ctx;
}
