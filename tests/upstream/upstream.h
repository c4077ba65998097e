/* connroute test upstream: a small HTTP/1.1 (+TLS) server that lets integration tests and
 * benchmarks observe clients from the server side. See main.c for flags, routes.c for the
 * endpoints, faults.c for fault injection. Internal to tests/upstream/.
 *
 * Fault injection (control endpoint, never counted; use the control port):
 *
 *   GET /inject?fault=NAME[&count=N][&ms=M][&bytes=B]   arm NAME for the next N triggers
 *   GET /inject?fault=none                              disarm everything
 *   GET /inject                                         list: "NAME left=N fired=N" per kind
 *   GET /inject?fault=kill_idle[&rst=1]                 act now (see below), not armed
 *
 * count: 1..1000000 [1]. Each kind has its own counter; arming a kind again replaces its
 * count and parameters. A fault fires only on the MAIN port, never on the control port.
 * Response: 200 "ok NAME count=N" (kill_idle: "killed N"); 400 with a reason for an
 * unknown fault or a bad number. Every firing adds 1 to the /stats counter faults_fired.
 *
 * Accept stage: applies to the next N connections accepted on the main port, before the
 * TLS handshake and before anything is read (the connection is still counted in accepted):
 *   rst_accept     reset at once (SO_LINGER 0 + close): the client's first read or write
 *                  fails with ECONNRESET (libcurl: 56 or 55, 35 over TLS)
 *   tls_garbage    read what the client sends first (its ClientHello; at most 1 s), answer
 *                  with bytes that are not a TLS record, close (libcurl over TLS: 35)
 *   hang_accept    never read nor answer; hold the connection until the client closes it
 *                  or M ms [10000] pass, then close (a stuck server before any request)
 * Request stage: applies to the next N requests on the main port (any path, any method
 * except the uncounted control endpoints), after the request and its body were read and
 * counted (requests, requests_get/_post, path_*):
 *   drop           close without answering (libcurl: 52, CURLE_GOT_NOTHING); the route
 *                  /fault/drop does the same on every request, armed or not
 *   short_body     headers with Content-Length: 2048, then B [0] body bytes, then a clean
 *                  close (FIN): the seed's "ContentLength=2048 with Body length 0"
 *                  (libcurl: 18, CURLE_PARTIAL_FILE)
 *   rst_body       headers with Content-Length: 65536, B [1024] body bytes, M ms [100]
 *                  pause (so the client has consumed them: bytes reached the app), then a
 *                  reset (libcurl: 56)
 *   hang_headers   answer nothing: hold the connection until the client closes it or M ms
 *                  [10000] pass, then close (the client's header/request timeout fires)
 * Immediate:
 *   kill_idle      close every main-port connection that is idle (waiting for the first
 *                  byte of its next request, nothing unread) now: FIN, or RST with rst=1.
 *                  Models a server or middlebox reaping pooled keep-alive connections;
 *                  --idle-timeout-ms does the same after a delay.
 * Other faults need no injection: a full backlog (--no-accept --backlog 0, then
 * h_fill_backlog), an upstream that goes away and comes back (stop, then start again with
 * --port N: the listener sets SO_REUSEADDR, so the port is free at once). */
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
    bool idle;                  /* waiting for the first byte of a request (kill_idle) */
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
    bool inflight;              /* counted in up.k.inflight, until its response head goes out */
};

struct up_list {
    struct conn *head, *tail;
    long n;
};

struct up_counters {
    long accepted, rejected, open, max_open;
    long requests, requests_get, requests_post, requests_other;
    long tls_handshakes, tls_resumed, tls_failed, bad_requests;
    long faults_fired;
    /* requests being handled now, and the most at once: from the request read until its
     * response head is written (before the client can see any of it, so a client that
     * starts its next request on the answer never overlaps it here) */
    long inflight, max_inflight;
};

/* faults.c: see the top of this file */
enum up_fault {
    UP_F_NONE = 0,
    /* accept stage */
    UP_F_RST_ACCEPT, UP_F_TLS_GARBAGE, UP_F_HANG_ACCEPT,
    /* request stage */
    UP_F_DROP, UP_F_SHORT_BODY, UP_F_RST_BODY, UP_F_HANG_HEADERS,
    UP_F_COUNT
};
struct up_fault_arm {
    long left;                  /* firings still to come */
    long fired;                 /* since start (not reset by /reset) */
    long ms, bytes;             /* parameters, -1 = the fault's default */
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
    struct up_fault_arm faults[UP_F_COUNT];
};

extern struct upstream up;

/* conn.c */
void *up_conn_main(void *arg);
ssize_t up_write(struct conn *c, const void *p, size_t n);   /* all of it, or -1 */
ssize_t up_read(struct conn *c, void *p, size_t n);          /* >0, 0 EOF, -1 error */
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

/* faults.c */
/* The fault armed for this stage, consumed (one firing), or UP_F_NONE; *arm gets a copy of
 * its parameters. Only for main-port connections. */
enum up_fault up_fault_take_accept(struct up_fault_arm *arm);
enum up_fault up_fault_take_request(struct up_fault_arm *arm);
/* Runs an accept-stage fault on a fresh connection: the caller closes it afterwards. */
void up_fault_accept(struct conn *c, enum up_fault f, const struct up_fault_arm *arm);
/* Runs a request-stage fault instead of the route's handler: returns -1 (drop the
 * connection at once, no TLS close_notify), as a handler would. */
int up_fault_request(struct conn *c, struct req *r, enum up_fault f,
                     const struct up_fault_arm *arm);
int up_h_inject(struct conn *c, struct req *r, const char *arg);   /* GET /inject */

/* tls.c */
SSL_CTX *up_tls_init(const char *cert_dir);

/* main.c */
int up_sleep_ms(long ms);       /* interruptible by shutdown; -1 if stopping */
void up_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
