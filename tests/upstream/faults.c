/* connroute test upstream: fault injection (see upstream.h for the endpoint and the list).
 *
 * Faults are armed through GET /inject on the control port and fire on the main port only,
 * so a test can arm a fault, run a client, and read the counters without the observation
 * itself being faulted. Every wait here is bounded (by the fault's ms, the client closing,
 * or shutdown) and polls up.stop, so SIGTERM still stops the server within its 5 s. */
#include "upstream.h"

#include <errno.h>
#include <stdarg.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define UP_FAULT_COUNT_MAX 1000000L
#define UP_HOLD_DEFAULT_MS 10000L
#define UP_RST_BODY_CL 65536L

static const struct {
    const char *name;
    enum up_fault f;
} fault_names[] = {
    {"rst_accept", UP_F_RST_ACCEPT},   {"tls_garbage", UP_F_TLS_GARBAGE},
    {"hang_accept", UP_F_HANG_ACCEPT}, {"drop", UP_F_DROP},
    {"short_body", UP_F_SHORT_BODY},   {"rst_body", UP_F_RST_BODY},
    {"hang_headers", UP_F_HANG_HEADERS},
};

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int fd_of(struct conn *c)
{
    pthread_mutex_lock(&up.mu);
    int fd = c->fd;
    pthread_mutex_unlock(&up.mu);
    return fd;
}

/* First armed kind in [lo, hi], consumed. */
static enum up_fault take(enum up_fault lo, enum up_fault hi, struct up_fault_arm *arm)
{
    enum up_fault got = UP_F_NONE;
    pthread_mutex_lock(&up.mu);
    for (int f = lo; f <= (int)hi; f++) {
        struct up_fault_arm *a = &up.faults[f];
        if (a->left > 0) {
            a->left--;
            a->fired++;
            up.k.faults_fired++;
            *arm = *a;
            got = (enum up_fault)f;
            break;
        }
    }
    pthread_mutex_unlock(&up.mu);
    return got;
}

enum up_fault up_fault_take_accept(struct up_fault_arm *arm)
{
    return take(UP_F_RST_ACCEPT, UP_F_HANG_ACCEPT, arm);
}

enum up_fault up_fault_take_request(struct up_fault_arm *arm)
{
    return take(UP_F_DROP, UP_F_HANG_HEADERS, arm);
}

/* The next close of fd sends a RST instead of a FIN. */
static void linger_zero(int fd)
{
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

/* Hold the connection without reading: until the peer shuts down its side, ms pass, or the
 * server stops. POLLRDHUP only, so a request the client sends meanwhile does not end it. */
static void hold(struct conn *c, long ms)
{
    int fd = fd_of(c);
    long long end = mono_ms() + ms;
    while (!atomic_load(&up.stop) && mono_ms() < end) {
        struct pollfd p = {fd, POLLRDHUP, 0};
        int n = poll(&p, 1, 20);
        if (n < 0 && errno != EINTR)
            return;
        if (n > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)))
            return;
    }
}

void up_fault_accept(struct conn *c, enum up_fault f, const struct up_fault_arm *arm)
{
    int fd = fd_of(c);
    switch (f) {
    case UP_F_RST_ACCEPT:
        linger_zero(fd);
        return;
    case UP_F_TLS_GARBAGE: {
        /* A byte 0x00 is no TLS content type: OpenSSL clients fail the handshake at once
         * ("wrong version number" / "packet length too long"). */
        static const char junk[] = "\x00\x01\x02NOT-A-SERVER-HELLO garbage from cr-upstream\r\n";
        char buf[4096];
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 1000) > 0)
            (void)!recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        (void)!send(fd, junk, sizeof junk - 1, MSG_NOSIGNAL);
        /* Let the client read the junk before the close (a RST could overtake it if the
         * rest of its ClientHello is still unread). */
        shutdown(fd, SHUT_WR);
        hold(c, 1000);
        return;
    }
    case UP_F_HANG_ACCEPT:
        hold(c, arm->ms >= 0 ? arm->ms : UP_HOLD_DEFAULT_MS);
        return;
    default:
        return;
    }
}

static char xs[UP_RST_BODY_CL];
static pthread_once_t xs_once = PTHREAD_ONCE_INIT;
static void xs_fill(void)
{
    memset(xs, 'x', sizeof xs);
}

int up_fault_request(struct conn *c, struct req *r, enum up_fault f,
                     const struct up_fault_arm *arm)
{
    switch (f) {
    case UP_F_DROP:
        return -1;
    case UP_F_SHORT_BODY: {
        long bytes = arm->bytes >= 0 ? arm->bytes : 0;
        if (bytes > 2047)
            bytes = 2047;
        r->keep_alive = true;       /* no "Connection: close": the client trusts the length */
        if (up_respond_head(c, r, 200, NULL, 2048) != 0)
            return -1;
        if (bytes > 0) {
            char body[2048];
            memset(body, 'x', (size_t)bytes);
            if (up_write(c, body, (size_t)bytes) < 0)
                return -1;
        }
        return -1;                  /* FIN, no close_notify */
    }
    case UP_F_RST_BODY: {
        long bytes = arm->bytes >= 0 ? arm->bytes : 1024;
        if (bytes > UP_RST_BODY_CL - 1)
            bytes = UP_RST_BODY_CL - 1;
        r->keep_alive = true;
        if (up_respond_head(c, r, 200, NULL, UP_RST_BODY_CL) != 0)
            return -1;
        pthread_once(&xs_once, xs_fill);
        if (bytes > 0 && up_write(c, xs, (size_t)bytes) < 0)
            return -1;
        up_sleep_ms(arm->ms >= 0 ? arm->ms : 100);
        linger_zero(fd_of(c));
        return -1;
    }
    case UP_F_HANG_HEADERS:
        hold(c, arm->ms >= 0 ? arm->ms : UP_HOLD_DEFAULT_MS);
        return -1;
    default:
        return -1;
    }
}

/* ---- GET /inject ------------------------------------------------------------------- */

/* Value of NAME in a query string "a=1&b=2" into out (at most n-1 bytes): 1 found,
 * 0 absent, -1 present but too long. */
static int query_get(const char *q, const char *name, char *out, size_t n)
{
    size_t nl = strlen(name);
    for (const char *p = q; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len > nl && !strncmp(p, name, nl) && p[nl] == '=') {
            size_t vl = len - nl - 1;
            if (vl >= n)
                return -1;
            memcpy(out, p + nl + 1, vl);
            out[vl] = 0;
            return 1;
        }
        p = amp ? amp + 1 : NULL;
    }
    return 0;
}

/* Optional number parameter in lo..hi: true with *out (dflt when absent); false if bad. */
static bool query_num(const char *q, const char *name, long lo, long hi, long dflt, long *out)
{
    char v[24];
    int got = query_get(q, name, v, sizeof v);
    if (got == 0) {
        *out = dflt;
        return true;
    }
    if (got < 0 || !*v)
        return false;
    long x = 0;
    for (const char *s = v; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        x = x * 10 + (*s - '0');
        if (x > hi)
            return false;
    }
    if (x < lo)
        return false;
    *out = x;
    return true;
}

static int reply(struct conn *c, struct req *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int reply(struct conn *c, struct req *r, int status, const char *fmt, ...)
{
    char body[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof body)
        n = sizeof body - 1;
    return up_respond(c, r, status, NULL, body, (size_t)n);
}

/* Close idle main-port connections now; returns how many. */
static long kill_idle(bool rst)
{
    long n = 0;
    pthread_mutex_lock(&up.mu);
    for (struct conn *x = up.live.head; x; x = x->next) {
        if (x->control || x->state != CONN_OPEN || !x->idle || x->fd < 0)
            continue;
        int unread = 0;
        if (ioctl(x->fd, FIONREAD, &unread) == 0 && unread > 0)
            continue;           /* a request is arriving: not idle after all */
        if (rst) {
            linger_zero(x->fd);
            shutdown(x->fd, SHUT_RD);   /* wakes the reader; its close sends the RST */
        } else {
            shutdown(x->fd, SHUT_RDWR); /* FIN now */
        }
        x->idle = false;
        n++;
    }
    up.k.faults_fired += n;
    pthread_mutex_unlock(&up.mu);
    return n;
}

int up_h_inject(struct conn *c, struct req *r, const char *arg)
{
    char name[32];
    int got = query_get(r->query, "fault", name, sizeof name);
    if (got < 0)
        return reply(c, r, 400, "fault name too long\n");
    if (got == 0) {
        char body[1024];
        size_t n = 0;
        pthread_mutex_lock(&up.mu);
        for (size_t i = 0; i < sizeof fault_names / sizeof fault_names[0]; i++) {
            const struct up_fault_arm *a = &up.faults[fault_names[i].f];
            int k = snprintf(body + n, sizeof body - n, "%s left=%ld fired=%ld\n",
                             fault_names[i].name, a->left, a->fired);
            if (k > 0 && (size_t)k < sizeof body - n)
                n += (size_t)k;
        }
        pthread_mutex_unlock(&up.mu);
        return up_respond(c, r, 200, NULL, body, n);
    }
    if (!strcmp(name, "none")) {
        pthread_mutex_lock(&up.mu);
        for (int f = 0; f < UP_F_COUNT; f++)
            up.faults[f].left = 0;
        pthread_mutex_unlock(&up.mu);
        return reply(c, r, 200, "ok none\n");
    }
    if (!strcmp(name, "kill_idle")) {
        long rst;
        if (!query_num(r->query, "rst", 0, 1, 0, &rst))
            return reply(c, r, 400, "rst is 0 or 1\n");
        return reply(c, r, 200, "killed %ld\n", kill_idle(rst == 1));
    }
    enum up_fault f = UP_F_NONE;
    for (size_t i = 0; i < sizeof fault_names / sizeof fault_names[0]; i++)
        if (!strcmp(name, fault_names[i].name))
            f = fault_names[i].f;
    if (f == UP_F_NONE)
        return reply(c, r, 400,
                     "unknown fault '%s'; one of rst_accept tls_garbage hang_accept drop "
                     "short_body rst_body hang_headers kill_idle none\n", name);
    long count, ms, bytes;
    if (!query_num(r->query, "count", 1, UP_FAULT_COUNT_MAX, 1, &count))
        return reply(c, r, 400, "count is 1..%ld\n", UP_FAULT_COUNT_MAX);
    if (!query_num(r->query, "ms", 0, UP_DELAY_MAX, -1, &ms))
        return reply(c, r, 400, "ms is 0..%d\n", UP_DELAY_MAX);
    if (!query_num(r->query, "bytes", 0, UP_RST_BODY_CL - 1, -1, &bytes))
        return reply(c, r, 400, "bytes is 0..%ld\n", UP_RST_BODY_CL - 1);
    pthread_mutex_lock(&up.mu);
    up.faults[f].left = count;
    up.faults[f].ms = ms;
    up.faults[f].bytes = bytes;
    pthread_mutex_unlock(&up.mu);
    return reply(c, r, 200, "ok %s count=%ld\n", name, count);
}
