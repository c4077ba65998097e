/* connroute test upstream: a small HTTP/1.1 (+TLS) server that lets integration tests and
 * benchmarks observe clients from the server side. See main.c for flags, routes.c for the
 * endpoints. Internal to tests/upstream/. */
#ifndef CR_UPSTREAM_H
#define CR_UPSTREAM_H

#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define UP_HDR_MAX     16384          /* request line + headers */
#define UP_SCRATCH     16384          /* body discard buffer */
#define UP_TARGET_MAX  4096           /* request target */
#define UP_PATHS_MAX   64             /* distinct path_<x> counters; the rest -> path_other */
#define UP_HIST_MAX    4096           /* closed connections kept for /peers */
#define UP_BODY_MAX    (1LL << 30)    /* request body read and discarded */
#define UP_SIZE_MAX    (64L << 20)    /* /size/N */
#define UP_DELAY_MAX   60000          /* /delay/MS */
#define UP_CONTROL_MAX 64             /* concurrent control connections */

struct up_opts {
    const char *bind;           /* numeric address, default 127.0.0.1 */
    int port;                   /* 0 = ephemeral */
    int control_port;           /* 0 = ephemeral */
    bool tls;
    const char *cert_dir;       /* default "." */
    const char *port_file;
    const char *control_port_file;
    int backlog;
    bool no_accept;
    int threads_max;
    int idle_timeout_ms;
    int max_seconds;
};

enum { CONN_OPEN = 0, CONN_CLOSED = 1 };

struct conn {
    /* set before the thread starts, then read-only */
    uint64_t id;                /* 0 for control connections */
    bool control;
    char peer[80];              /* "ip:port", IPv6 as "[ip]:port" */
    pthread_t th;

    /* guarded by up.mu */
    int fd;                     /* -1 once closed: shutdown_all() never touches a reused fd */
    int state;
    long requests;              /* requests read on this connection (all of them) */
    bool finished;              /* thread is about to return: the reaper may join it */
    bool hidden;                /* closed before the last /reset: not listed by /peers */
    struct conn *prev, *next;   /* in up.live or up.hist */

    /* owned by the connection thread; the buffers live only as long as the thread, so the
     * /peers history costs ~200 bytes per connection */
    SSL *ssl;
    bool tls_dead;              /* fatal TLS error seen: no SSL_shutdown (OpenSSL forbids it) */
    size_t len;                 /* bytes in buf */
    char *buf;                  /* UP_HDR_MAX */
    char *scratch;              /* UP_SCRATCH */
};

struct req {
    char method[16];
    char target[UP_TARGET_MAX]; /* path, NUL-terminated at '?' */
    const char *path;           /* == target */
    const char *query;          /* after '?', "" if none */
    const char *hdrs;           /* raw header lines (after the request line), into conn.buf */
    size_t hdrs_len;
    int minor;                  /* HTTP/1.<minor> */
    long long content_length;
    bool keep_alive;            /* a handler may clear it to close after its response */
    bool head;
};

struct up_list {
    struct conn *head, *tail;
    long n;
};

struct up_counters {
    long accepted, rejected, open, max_open;
    long requests, requests_get, requests_post, requests_other;
    long tls_handshakes, tls_resumed, tls_failed, bad_requests;
};

struct upstream {
    struct up_opts o;
    SSL_CTX *ssl_ctx;
    atomic_bool stop;

    pthread_mutex_t mu;         /* guards everything below */
    struct up_counters k;
    struct { char name[40]; long n; } paths[UP_PATHS_MAX];
    int npaths;
    long path_other;
    struct up_list live;        /* threads not joined yet (open or just closed) */
    struct up_list hist;        /* joined, closed, counted connections, oldest first */
    long ncontrol;              /* live control connections */
    uint64_t next_id;
};

extern struct upstream up;

/* conn.c */
void *up_conn_main(void *arg);
ssize_t up_write(struct conn *c, const void *p, size_t n);   /* all of it, or -1 */
int up_respond_head(struct conn *c, struct req *r, int status, const char *extra_hdrs,
                    long long content_length);
int up_respond(struct conn *c, struct req *r, int status, const char *extra_hdrs,
               const char *body, size_t len);
void up_list_push(struct up_list *l, struct conn *c);
void up_list_del(struct up_list *l, struct conn *c);

/* routes.c */
typedef int (*up_handler)(struct conn *c, struct req *r, const char *arg);
struct up_route {
    const char *path;           /* exact path, or a prefix when it ends in '/' */
    bool uncounted;             /* control endpoint: never counted on any port */
    up_handler fn;
};
const struct up_route *up_route_find(const char *path);
void up_count_request(struct conn *c, struct req *r);

/* tls.c */
SSL_CTX *up_tls_init(const char *cert_dir);

/* main.c */
int up_sleep_ms(long ms);       /* interruptible by shutdown; -1 if stopping */
void up_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
