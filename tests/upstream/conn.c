/* connroute test upstream: one connection — TLS handshake, HTTP/1.1 request parsing,
 * keep-alive, responses. Handlers live in routes.c. */
#include "upstream.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

void up_list_push(struct up_list *l, struct conn *c)
{
    c->next = NULL;
    c->prev = l->tail;
    if (l->tail)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
    l->n++;
}

void up_list_del(struct up_list *l, struct conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        l->tail = c->prev;
    c->prev = c->next = NULL;
    l->n--;
}

/* The fd is only read by this thread; up.mu guards its reset to -1, not these reads. */
static int conn_fd(struct conn *c)
{
    pthread_mutex_lock(&up.mu);
    int fd = c->fd;
    pthread_mutex_unlock(&up.mu);
    return fd;
}

/* >0 bytes, 0 EOF, -1 error or idle timeout (SO_RCVTIMEO). */
static ssize_t conn_read(struct conn *c, void *p, size_t n)
{
    if (atomic_load(&up.stop))
        return -1;
    if (c->ssl) {
        ERR_clear_error();
        int k = SSL_read(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
        if (k > 0)
            return k;
        int e = SSL_get_error(c->ssl, k);
        if (e == SSL_ERROR_ZERO_RETURN)
            return 0;
        if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_SSL)
            c->tls_dead = true;
        return -1;
    }
    int fd = conn_fd(c);
    for (int i = 0; i < 100; i++) {
        ssize_t k = recv(fd, p, n, 0);
        if (k >= 0)
            return k;
        if (errno != EINTR)
            return -1;
    }
    return -1;
}

ssize_t up_read(struct conn *c, void *p, size_t n)
{
    return conn_read(c, p, n);
}

ssize_t up_write(struct conn *c, const void *p, size_t n)
{
    const char *s = p;
    size_t done = 0;
    int fd = c->ssl ? -1 : conn_fd(c);
    while (done < n) {
        if (atomic_load(&up.stop))
            return -1;
        size_t chunk = n - done;
        if (chunk > (1u << 30))
            chunk = 1u << 30;
        ssize_t k;
        if (c->ssl) {
            ERR_clear_error();
            int w = SSL_write(c->ssl, s + done, (int)chunk);
            k = w > 0 ? w : -1;
            if (w <= 0) {
                int e = SSL_get_error(c->ssl, w);
                if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_SSL)
                    c->tls_dead = true;
            }
        } else {
            k = send(fd, s + done, chunk, MSG_NOSIGNAL);
            if (k < 0 && errno == EINTR)
                continue;
        }
        if (k <= 0)                 /* includes SO_SNDTIMEO expiry without progress */
            return -1;
        done += (size_t)k;
    }
    return (ssize_t)n;
}

static const char *reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* The request is answered: out of up.k.inflight (once). Called before the first byte of
 * the response is written: decremented after it, a client turning the answer around into
 * its next request (a queued transfer let in at once) could be counted beside it. */
static void inflight_end(struct req *r)
{
    if (!r->inflight)
        return;
    r->inflight = false;
    pthread_mutex_lock(&up.mu);
    up.k.inflight--;
    pthread_mutex_unlock(&up.mu);
}

int up_respond_head(struct conn *c, struct req *r, int status, const char *extra_hdrs,
                    long long content_length)
{
    inflight_end(r);
    char h[1024];
    const char *connection = "";
    if (!r->keep_alive)
        connection = "Connection: close\r\n";
    else if (r->minor == 0)
        connection = "Connection: keep-alive\r\n";
    int n = snprintf(h, sizeof h,
                     "HTTP/1.1 %d %s\r\nServer: cr-upstream\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %lld\r\nX-Conn-Id: %llu\r\n%s%s\r\n",
                     status, reason(status), content_length, (unsigned long long)c->id,
                     connection, extra_hdrs ? extra_hdrs : "");
    if (n < 0 || (size_t)n >= sizeof h)
        return -1;
    return up_write(c, h, (size_t)n) < 0 ? -1 : 0;
}

int up_respond(struct conn *c, struct req *r, int status, const char *extra_hdrs,
               const char *body, size_t len)
{
    if (up_respond_head(c, r, status, extra_hdrs, (long long)len) != 0)
        return -1;
    if (r->head || len == 0)
        return 0;
    return up_write(c, body, len) < 0 ? -1 : 0;
}

/* Error before a usable request: a minimal close-after response. */
static int respond_error(struct conn *c, int status)
{
    struct req r = {.keep_alive = false, .minor = 1};
    char body[64];
    int n = snprintf(body, sizeof body, "%d %s\n", status, reason(status));
    if (!c->control) {
        pthread_mutex_lock(&up.mu);
        up.k.bad_requests++;
        pthread_mutex_unlock(&up.mu);
    }
    up_respond(c, &r, status, NULL, body, (size_t)n);
    return -1;
}

/* Offset just past the blank line ending the header block, 0 if not there yet. */
static size_t header_end(const char *b, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (b[i] != '\n')
            continue;
        if (b[i + 1] == '\n')
            return i + 2;
        if (i + 2 < n && b[i + 1] == '\r' && b[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

static bool has_token(const char *v, size_t n, const char *tok)
{
    size_t tl = strlen(tok);
    for (size_t i = 0; i < n;) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tl && !strncasecmp(v + s, tok, tl))
            return true;
    }
    return false;
}

/* Parse the header block at c->buf[0..hend). Returns 0, or an HTTP status to fail with. */
static int parse_request(struct conn *c, size_t hend, struct req *r, bool *expect_continue)
{
    char *b = c->buf;
    char *eol = memchr(b, '\n', hend);
    size_t ll = (size_t)(eol - b);
    if (ll > 0 && b[ll - 1] == '\r')
        ll--;

    /* request line: METHOD SP target SP HTTP/1.x */
    char *sp1 = memchr(b, ' ', ll);
    if (!sp1 || sp1 == b || (size_t)(sp1 - b) >= sizeof r->method)
        return 400;
    memcpy(r->method, b, (size_t)(sp1 - b));
    r->method[sp1 - b] = 0;
    for (const char *m = r->method; *m; m++)
        if (*m < 'A' || *m > 'Z')
            return 400;
    char *t = sp1 + 1;
    char *sp2 = memchr(t, ' ', ll - (size_t)(t - b));
    if (!sp2 || sp2 == t)
        return 400;
    const char *ver = sp2 + 1;
    size_t vl = ll - (size_t)(ver - b);
    if (vl != 8 || strncmp(ver, "HTTP/1.", 7) || (ver[7] != '0' && ver[7] != '1'))
        return vl >= 5 && !strncmp(ver, "HTTP/", 5) ? 505 : 400;
    r->minor = ver[7] - '0';

    size_t tl = (size_t)(sp2 - t);
    const char *tp = t;
    if (tl > 8 && (!strncasecmp(tp, "http://", 7) || !strncasecmp(tp, "https://", 8))) {
        const char *auth = memchr(tp, ':', tl) + 3;     /* absolute-form: keep the path */
        const char *slash = memchr(auth, '/', tl - (size_t)(auth - tp));
        if (slash) {
            tl -= (size_t)(slash - tp);
            tp = slash;
        } else {
            tp = "/";
            tl = 1;
        }
    }
    if (tl >= sizeof r->target)
        return 414;
    memcpy(r->target, tp, tl);
    r->target[tl] = 0;
    if (memchr(r->target, 0, tl))
        return 400;
    char *q = strchr(r->target, '?');
    if (q)
        *q++ = 0;
    r->path = r->target;
    r->query = q ? q : "";
    r->head = !strcmp(r->method, "HEAD");
    r->hdrs = eol + 1;
    r->hdrs_len = 0;

    bool conn_close = false, conn_keep = false, chunked = false, have_cl = false;
    r->content_length = 0;
    *expect_continue = false;
    for (char *line = eol + 1; line < b + hend;) {
        char *le = memchr(line, '\n', (size_t)(b + hend - line));
        size_t n = (size_t)(le - line);
        if (n > 0 && line[n - 1] == '\r')
            n--;
        if (n == 0)
            break;                          /* the blank line */
        r->hdrs_len = (size_t)(le + 1 - r->hdrs);
        char *colon = memchr(line, ':', n);
        if (!colon || colon == line)
            return 400;
        size_t nl = (size_t)(colon - line);
        const char *v = colon + 1;
        size_t vn = n - nl - 1;
        while (vn && (*v == ' ' || *v == '\t'))
            v++, vn--;
        while (vn && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
            vn--;
        if (nl == 14 && !strncasecmp(line, "Content-Length", 14)) {
            long long cl = 0;
            if (vn == 0 || vn > 18)
                return vn ? 413 : 400;
            for (size_t i = 0; i < vn; i++) {
                if (v[i] < '0' || v[i] > '9')
                    return 400;
                cl = cl * 10 + (v[i] - '0');
            }
            if (have_cl && cl != r->content_length)
                return 400;
            have_cl = true;
            r->content_length = cl;
        } else if (nl == 10 && !strncasecmp(line, "Connection", 10)) {
            conn_close |= has_token(v, vn, "close");
            conn_keep |= has_token(v, vn, "keep-alive");
        } else if (nl == 17 && !strncasecmp(line, "Transfer-Encoding", 17)) {
            chunked = true;
        } else if (nl == 6 && !strncasecmp(line, "Expect", 6)) {
            *expect_continue = has_token(v, vn, "100-continue");
        }
        line = le + 1;
    }
    if (chunked)
        return 501;                         /* chunked request bodies: not needed so far */
    if (r->content_length > UP_BODY_MAX)
        return 413;
    r->keep_alive = r->minor == 1 ? !conn_close : (conn_keep && !conn_close);
    return 0;
}

/* Read and discard the body; bytes already buffered after the headers come first.
 * Returns the number of buffer bytes consumed by headers+body, or -1. */
static long long consume_body(struct conn *c, size_t hend, long long cl)
{
    size_t have = c->len - hend;
    if ((long long)have >= cl)
        return (long long)hend + cl;
    long long left = cl - (long long)have;
    while (left > 0) {
        size_t want = left < (long long)UP_SCRATCH ? (size_t)left : UP_SCRATCH;
        ssize_t k = conn_read(c, c->scratch, want);
        if (k <= 0)
            return -1;
        left -= k;
    }
    return (long long)c->len;               /* the whole buffer was headers + body */
}

/* Idle = waiting for the first byte of the next request: what /inject?fault=kill_idle
 * closes. */
static void set_idle(struct conn *c, bool idle)
{
    pthread_mutex_lock(&up.mu);
    c->idle = idle;
    pthread_mutex_unlock(&up.mu);
}

/* Returns 1 with a request in *r, 0 on a clean close between requests, -1 on error. */
static int read_request(struct conn *c, struct req *r)
{
    size_t hend = 0;
    for (;;) {
        /* tolerate empty lines before a request (RFC 9112 §2.2) */
        size_t skip = 0;
        while (skip < c->len && (c->buf[skip] == '\r' || c->buf[skip] == '\n'))
            skip++;
        if (skip) {
            memmove(c->buf, c->buf + skip, c->len - skip);
            c->len -= skip;
        }
        if ((hend = header_end(c->buf, c->len)))
            break;
        if (c->len == UP_HDR_MAX)
            return respond_error(c, 431);
        bool idle = c->len == 0 && !c->control;
        if (idle)
            set_idle(c, true);
        ssize_t k = conn_read(c, c->buf + c->len, UP_HDR_MAX - c->len);
        if (idle)
            set_idle(c, false);
        if (k <= 0)
            return c->len == 0 ? 0 : -1;
        c->len += (size_t)k;
    }
    memset(r, 0, offsetof(struct req, target));
    r->target[0] = 0;
    bool expect_continue = false;
    int st = parse_request(c, hend, r, &expect_continue);
    if (st)
        return respond_error(c, st);
    if (expect_continue && r->content_length > (long long)(c->len - hend)) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (up_write(c, cont, sizeof cont - 1) < 0)
            return -1;
    }
    return 1;
}

static void finish_request(struct conn *c, long long consumed)
{
    size_t used = consumed > (long long)c->len ? c->len : (size_t)consumed;
    memmove(c->buf, c->buf + used, c->len - used);
    c->len -= used;
}

static int tls_accept(struct conn *c)
{
    c->ssl = SSL_new(up.ssl_ctx);
    if (!c->ssl || !SSL_set_fd(c->ssl, conn_fd(c)) || SSL_accept(c->ssl) != 1) {
        pthread_mutex_lock(&up.mu);
        up.k.tls_failed++;
        pthread_mutex_unlock(&up.mu);
        if (c->ssl) {
            SSL_free(c->ssl);
            c->ssl = NULL;
        }
        return -1;
    }
    bool resumed = SSL_session_reused(c->ssl);
    pthread_mutex_lock(&up.mu);
    if (resumed)
        up.k.tls_resumed++;
    else
        up.k.tls_handshakes++;
    pthread_mutex_unlock(&up.mu);
    return 0;
}

static void serve(struct conn *c)
{
    int fd = conn_fd(c);
    struct timeval tv = {up.o.idle_timeout_ms / 1000, (up.o.idle_timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

    if (!c->control) {
        struct up_fault_arm fa;
        enum up_fault f = up_fault_take_accept(&fa);
        if (f != UP_F_NONE) {
            up_fault_accept(c, f, &fa);
            return;
        }
    }

    if (up.ssl_ctx && !c->control && tls_accept(c) != 0)
        return;

    struct req *r = calloc(1, sizeof *r);
    if (!r)
        return;
    bool clean = true;
    /* Each iteration consumes one request or ends the connection; the count bound only
     * guards against a logic error turning this into a spin. */
    for (long i = 0; i < (1L << 40); i++) {
        int rc = read_request(c, r);
        if (rc <= 0) {
            clean = rc == 0;
            break;
        }
        size_t hend = header_end(c->buf, c->len);
        /* Body first: the handler may answer late (/delay) but must see a complete request. */
        long long consumed = consume_body(c, hend, r->content_length);
        if (consumed < 0) {
            clean = false;
            break;
        }
        pthread_mutex_lock(&up.mu);
        c->requests++;
        pthread_mutex_unlock(&up.mu);

        const struct up_route *rt = up_route_find(r->path);
        enum up_fault f = UP_F_NONE;
        struct up_fault_arm fa;
        if (!c->control && !rt->uncounted) {
            up_count_request(c, r);
            f = up_fault_take_request(&fa);
        }
        const char *arg = r->path + strlen(rt->path);
        if (rt->path[strlen(rt->path) - 1] != '/')
            arg = "";
        r->inflight = !c->control && !rt->uncounted;
        if (r->inflight) {
            pthread_mutex_lock(&up.mu);
            if (++up.k.inflight > up.k.max_inflight)
                up.k.max_inflight = up.k.inflight;
            pthread_mutex_unlock(&up.mu);
        }
        rc = f != UP_F_NONE ? up_fault_request(c, r, f, &fa) : rt->fn(c, r, arg);
        inflight_end(r); /* no response, or one written without up_respond_head */
        finish_request(c, consumed);
        if (rc < 0) {
            clean = false;
            break;
        }
        if (!r->keep_alive)
            break;
    }
    free(r);
    if (c->ssl && clean && !c->tls_dead) {
        ERR_clear_error();
        SSL_shutdown(c->ssl);
    }              /* one close_notify, no wait for the peer's */
}

void *up_conn_main(void *arg)
{
    struct conn *c = arg;
    c->buf = malloc(UP_HDR_MAX);
    c->scratch = malloc(UP_SCRATCH);
    if (c->buf && c->scratch)
        serve(c);
    free(c->buf);
    free(c->scratch);
    c->buf = c->scratch = NULL;
    if (c->ssl)
        SSL_free(c->ssl);
    c->ssl = NULL;
    pthread_mutex_lock(&up.mu);
    close(c->fd);
    c->fd = -1;
    c->state = CONN_CLOSED;
    if (!c->control)
        up.k.open--;
    c->finished = true;
    pthread_mutex_unlock(&up.mu);
    return NULL;
}
