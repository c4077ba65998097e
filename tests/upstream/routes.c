/* connroute test upstream: endpoints and counters.
 *
 * To add an endpoint (e.g. the /fault/... family): write a handler with the up_handler
 * signature and add a row to `routes`. A handler gets the parsed request (body already
 * consumed) and the path remainder after a prefix route ("/delay/250" -> "250"). It may
 * answer with up_respond()/up_respond_head()+up_write(), clear r->keep_alive to close after
 * the response, or return -1 to drop the connection at once (no TLS close_notify) — which is
 * what a fault like "close mid-body" needs: write part of a body, return -1. Faults armed
 * through /inject (faults.c) run in place of the handler, on any path of the main port. */
#include "upstream.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int h_ok(struct conn *c, struct req *r, const char *arg)
{
    return up_respond(c, r, 200, NULL, "ok\n", 3);
}

static bool parse_num(const char *s, long max, long *out)
{
    long v = 0;
    if (!*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        v = v * 10 + (*s - '0');
        if (v > max)
            return false;
    }
    *out = v;
    return true;
}

static int bad(struct conn *c, struct req *r, const char *why)
{
    return up_respond(c, r, 400, NULL, why, strlen(why));
}

static int h_delay(struct conn *c, struct req *r, const char *arg)
{
    long ms;
    if (!parse_num(arg, 1L << 40, &ms))
        return bad(c, r, "bad delay\n");
    if (ms > UP_DELAY_MAX)
        ms = UP_DELAY_MAX;
    if (up_sleep_ms(ms) != 0)
        return -1;
    return up_respond(c, r, 200, NULL, "ok\n", 3);
}

/* /fault/drop: read the request, then close without answering (a server
 * that died mid-request; libcurl reports CURLE_GOT_NOTHING). */
static int h_fault_drop(struct conn *c, struct req *r, const char *arg)
{
    (void)c;
    (void)r;
    (void)arg;
    return -1;
}

static int h_conn(struct conn *c, struct req *r, const char *arg)
{
    char body[160];
    pthread_mutex_lock(&up.mu);
    long n = c->requests;
    pthread_mutex_unlock(&up.mu);
    int len = snprintf(body, sizeof body, "conn=%llu peer=%s req=%ld\n",
                       (unsigned long long)c->id, c->peer, n);
    return up_respond(c, r, 200, NULL, body, (size_t)len);
}

static int h_headers(struct conn *c, struct req *r, const char *arg)
{
    return up_respond(c, r, 200, NULL, r->hdrs, r->hdrs_len);
}

static bool cookie_char_ok(char ch, bool name)
{
    if (ch <= ' ' || ch >= 0x7f || ch == ';' || ch == ',' || ch == '"' || ch == '\\')
        return false;
    return !(name && (ch == '=' || ch == '(' || ch == ')' || ch == '/' || ch == ':' ||
                      ch == '<' || ch == '>' || ch == '@' || ch == '[' || ch == ']' ||
                      ch == '?' || ch == '{' || ch == '}'));
}

/* /cookie/set?a=1&b=2 -> one Set-Cookie per pair (at most 8). */
static int h_cookie_set(struct conn *c, struct req *r, const char *arg)
{
    char hdrs[900];
    size_t hl = 0;
    int count = 0;
    const char *p = r->query;
    while (*p && count < 8) {
        const char *amp = strchr(p, '&');
        size_t n = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        if (!eq || eq == p)
            return bad(c, r, "want /cookie/set?name=value\n");
        for (const char *s = p; s < p + n; s++)
            if (!cookie_char_ok(*s, s < eq) && s != eq)
                return bad(c, r, "bad cookie character\n");
        int k = snprintf(hdrs + hl, sizeof hdrs - hl, "Set-Cookie: %.*s; Path=/\r\n", (int)n, p);
        if (k < 0 || (size_t)k >= sizeof hdrs - hl)
            return bad(c, r, "cookie too long\n");
        hl += (size_t)k;
        count++;
        p += n + (amp ? 1 : 0);
    }
    if (!count)
        return bad(c, r, "want /cookie/set?name=value\n");
    return up_respond(c, r, 200, hdrs, "ok\n", 3);
}

static char xs[65536];
static pthread_once_t xs_once = PTHREAD_ONCE_INIT;
static void xs_fill(void)
{
    memset(xs, 'x', sizeof xs);
}

static int h_size(struct conn *c, struct req *r, const char *arg)
{
    long n;
    if (!parse_num(arg, UP_SIZE_MAX, &n))
        return bad(c, r, "want /size/N, N <= 67108864\n");
    if (up_respond_head(c, r, 200, NULL, n) != 0)
        return -1;
    if (r->head)
        return 0;
    pthread_once(&xs_once, xs_fill);
    while (n > 0) {
        size_t k = n < (long)sizeof xs ? (size_t)n : sizeof xs;
        if (up_write(c, xs, k) < 0)
            return -1;
        n -= (long)k;
    }
    return 0;
}

/* ---- counters ---------------------------------------------------------------------- */

static void sanitize_segment(const char *path, char *out, size_t n)
{
    const char *s = path;
    while (*s == '/')
        s++;
    size_t i = 0;
    for (; *s && *s != '/' && i + 1 < n; s++) {
        char ch = *s;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '_';
        out[i++] = ok ? ch : '_';
    }
    out[i] = 0;
    if (i == 0)
        snprintf(out, n, "root");
}

void up_count_request(struct conn *c, struct req *r)
{
    char seg[33];
    sanitize_segment(r->path, seg, sizeof seg);
    pthread_mutex_lock(&up.mu);
    up.k.requests++;
    if (!strcmp(r->method, "GET"))
        up.k.requests_get++;
    else if (!strcmp(r->method, "POST"))
        up.k.requests_post++;
    else
        up.k.requests_other++;
    int i;
    for (i = 0; i < up.npaths; i++)
        if (!strcmp(up.paths[i].name, seg))
            break;
    if (i < up.npaths) {
        up.paths[i].n++;
    } else if (up.npaths < UP_PATHS_MAX) {
        snprintf(up.paths[i].name, sizeof up.paths[i].name, "%s", seg);
        up.paths[i].n = 1;
        up.npaths++;
    } else {
        up.path_other++;
    }
    pthread_mutex_unlock(&up.mu);
}

/* A growable text buffer for the control bodies; bounded by the tables it renders. */
struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (int attempt = 0; attempt < 2; attempt++) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = true;
            return;
        }
        if (b->p && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + (size_t)k + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
}

static int send_sbuf(struct conn *c, struct req *r, struct sbuf *b)
{
    int rc = b->oom ? up_respond(c, r, 500, NULL, "oom\n", 4)
                    : up_respond(c, r, 200, NULL, b->p ? b->p : "", b->n);
    free(b->p);
    return rc;
}

static int h_stats(struct conn *c, struct req *r, const char *arg)
{
    struct sbuf b = {0};
    pthread_mutex_lock(&up.mu);
    struct up_counters k = up.k;
    sb_printf(&b,
              "accepted %ld\nopen %ld\nmax_open %ld\nrejected %ld\n"
              "requests %ld\nrequests_get %ld\nrequests_post %ld\nrequests_other %ld\n"
              "tls_handshakes %ld\ntls_resumed %ld\ntls_failed %ld\nbad_requests %ld\n"
              "faults_fired %ld\ninflight %ld\nmax_inflight %ld\n",
              k.accepted, k.open, k.max_open, k.rejected, k.requests, k.requests_get,
              k.requests_post, k.requests_other, k.tls_handshakes, k.tls_resumed,
              k.tls_failed, k.bad_requests, k.faults_fired, k.inflight, k.max_inflight);
    for (int i = 0; i < up.npaths; i++)
        sb_printf(&b, "path_%s %ld\n", up.paths[i].name, up.paths[i].n);
    if (up.path_other)
        sb_printf(&b, "path__other %ld\n", up.path_other);
    pthread_mutex_unlock(&up.mu);
    return send_sbuf(c, r, &b);
}

static int h_reset(struct conn *c, struct req *r, const char *arg)
{
    pthread_mutex_lock(&up.mu);
    long open = up.k.open, inflight = up.k.inflight;
    memset(&up.k, 0, sizeof up.k);
    up.k.open = open;
    up.k.max_open = open;
    up.k.inflight = inflight;
    up.k.max_inflight = inflight;
    up.npaths = 0;
    up.path_other = 0;
    for (struct conn *x = up.hist.head, *nx; x; x = nx) {
        nx = x->next;
        free(x);
    }
    up.hist = (struct up_list){0};
    for (struct conn *x = up.live.head; x; x = x->next)
        if (x->state == CONN_CLOSED)
            x->hidden = true;
    pthread_mutex_unlock(&up.mu);
    return up_respond(c, r, 200, NULL, "ok\n", 3);
}

static int by_id(const void *a, const void *b)
{
    uint64_t x = (*(struct conn *const *)a)->id, y = (*(struct conn *const *)b)->id;
    return x < y ? -1 : x > y;
}

static int h_peers(struct conn *c, struct req *r, const char *arg)
{
    struct sbuf b = {0};
    pthread_mutex_lock(&up.mu);
    size_t cap = (size_t)(up.live.n + up.hist.n), n = 0;
    struct conn **v = cap ? malloc(cap * sizeof *v) : NULL;
    if (cap && !v)
        b.oom = true;
    for (struct conn *x = up.hist.head; v && x; x = x->next)
        v[n++] = x;
    for (struct conn *x = up.live.head; v && x; x = x->next)
        if (!x->control && !x->hidden)
            v[n++] = x;
    if (n)
        qsort(v, n, sizeof *v, by_id);
    for (size_t i = 0; i < n; i++)
        sb_printf(&b, "%llu %s %s %ld\n", (unsigned long long)v[i]->id, v[i]->peer,
                  v[i]->state == CONN_OPEN ? "open" : "closed", v[i]->requests);
    pthread_mutex_unlock(&up.mu);
    free(v);
    return send_sbuf(c, r, &b);
}

/* The value of header NAME (case-insensitive) in R's raw header lines, into OUT. */
static bool header_value(const struct req *r, const char *name, char *out, size_t n)
{
    size_t nl = strlen(name);
    const char *p = r->hdrs, *end = r->hdrs + r->hdrs_len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        if ((size_t)(eol - p) > nl && !strncasecmp(p, name, nl) && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            size_t k = (size_t)(eol - v);
            while (k && (v[k - 1] == '\r' || v[k - 1] == ' '))
                k--;
            if (k >= n)
                return false;
            memcpy(out, v, k);
            out[k] = '\0';
            return true;
        }
        p = eol + 1;
    }
    return false;
}

static bool read_full(struct conn *c, unsigned char *p, size_t n)
{
    while (n) {
        ssize_t k = up_read(c, p, n);
        if (k <= 0)
            return false;
        p += k;
        n -= (size_t)k;
    }
    return true;
}

/* /ws: a minimal WebSocket echo (RFC 6455): the opening handshake, then each frame the
 * client sends (masked, at most 64 KiB, no fragmentation) comes back unmasked with the
 * same opcode; a close frame is echoed and ends the connection. For clients that use
 * CURLOPT_CONNECT_ONLY and curl_easy_send/recv, or curl_ws_* where libcurl has them. */
static int h_ws(struct conn *c, struct req *r, const char *arg)
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    char key[128], up_hdr[64], buf[256];
    unsigned char digest[SHA_DIGEST_LENGTH], acc[64];
    if (!header_value(r, "Upgrade", up_hdr, sizeof up_hdr) || strcasecmp(up_hdr, "websocket") ||
        !header_value(r, "Sec-WebSocket-Key", key, sizeof key - sizeof guid))
        return bad(c, r, "not a websocket handshake\n");
    strcat(key, guid);
    SHA1((const unsigned char *)key, strlen(key), digest);
    EVP_EncodeBlock(acc, digest, SHA_DIGEST_LENGTH);
    int n = snprintf(buf, sizeof buf,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\nX-Conn-Id: %llu\r\n\r\n",
                     (const char *)acc, (unsigned long long)c->id);
    if (up_write(c, buf, (size_t)n) < 0)
        return -1;
    for (;;) {
        unsigned char h[14], mask[4];
        if (!read_full(c, h, 2))
            return -1;
        unsigned op = h[0] & 0x0f;
        uint64_t len = h[1] & 0x7f;
        if (len == 126) {
            if (!read_full(c, h + 2, 2))
                return -1;
            len = (uint64_t)h[2] << 8 | h[3];
        } else if (len == 127) {
            return -1; /* larger than we echo */
        }
        if (!(h[1] & 0x80) || len > 65536 || !read_full(c, mask, 4))
            return -1;
        unsigned char *payload = malloc(len + 4);
        if (!payload || (len && !read_full(c, payload + 4, len))) {
            free(payload);
            return -1;
        }
        for (uint64_t i = 0; i < len; i++)
            payload[4 + i] ^= mask[i & 3];
        size_t hl = 2;
        unsigned char oh[4] = {(unsigned char)(0x80 | op)};
        if (len < 126) {
            oh[1] = (unsigned char)len;
        } else {
            oh[1] = 126;
            oh[2] = (unsigned char)(len >> 8);
            oh[3] = (unsigned char)len;
            hl = 4;
        }
        bool ok = up_write(c, oh, hl) >= 0 && (!len || up_write(c, payload + 4, len) >= 0);
        free(payload);
        if (!ok || op == 8) {
            r->keep_alive = false;
            return ok ? 0 : -1;
        }
    }
}

/* Order matters only between a prefix and an exact route of the same stem. */
static const struct up_route routes[] = {
    {"/stats", true, h_stats},
    {"/reset", true, h_reset},
    {"/peers", true, h_peers},
    {"/inject", true, up_h_inject},
    {"/conn", false, h_conn},
    {"/headers", false, h_headers},
    {"/cookie/set", false, h_cookie_set},
    {"/delay/", false, h_delay},
    {"/size/", false, h_size},
    {"/fault/drop", false, h_fault_drop},
    {"/ws", false, h_ws},
};
static const struct up_route fallback = {"/", false, h_ok};

const struct up_route *up_route_find(const char *path)
{
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const char *p = routes[i].path;
        size_t n = strlen(p);
        if (p[n - 1] == '/' ? !strncmp(path, p, n) : !strcmp(path, p))
            return &routes[i];
    }
    return &fallback;
}
