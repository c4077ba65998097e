/* Helpers for the Criterion integration tests: start/stop the test upstream
 * (build/upstream), query its counters, run programs (optionally under LD_PRELOAD) with a
 * timeout and captured output.
 *
 * The upstream has two listeners on the same address:
 *   - the MAIN port (u->port): plain, or TLS with --tls. Every connection accepted there is
 *     counted (accepted/open/max_open, /peers) and so is every request, except requests for
 *     the control endpoints /stats, /reset, /peers, which are never counted on any port.
 *   - the CONTROL port (u->control_port): always plain HTTP, serves every endpoint, and
 *     nothing on it is ever counted or listed. h_get/h_stat/h_reset/h_peers use it, so
 *     observing the server never disturbs what a test asserts.
 * Counters: accepted (TCP connections accepted on the main port, including ones closed at
 * once because of --threads-max, which also count in `rejected`), open, max_open (peak since
 * start or /reset), rejected, requests, requests_get, requests_post, requests_other,
 * tls_handshakes (full), tls_resumed, tls_failed, bad_requests, inflight and max_inflight
 * (requests read and not yet answered: until their response head is written, so a request
 * made on the answer of another is never counted beside it), path_<first segment>
 * (path_root for "/", [^A-Za-z0-9_] -> '_'). /reset zeroes them (max_open := open,
 * max_inflight := inflight) and forgets closed connections in /peers. /peers lines: "<id> <ip>:<port> open|closed <requests>"
 * (IPv6 peers as "[ip]:port"), ordered by id; ids start at 1 and never restart.
 * Every response carries "X-Conn-Id: <id>".
 *
 * Cleanup: every started upstream is remembered; an atexit handler kills what is still
 * running, and the server gets PR_SET_PDEATHSIG and --max-seconds 120 as further backstops,
 * so a failed assertion or a crash cannot leave it behind. All waits are bounded. */
#ifndef CR_HARNESS_H
#define CR_HARNESS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/types.h>

/* Absolute build directory: $CR_BUILD (made absolute) or ./build. */
const char *h_build(void);

struct h_upstream {
    pid_t pid;                  /* 0 once stopped */
    int port;                   /* main listener */
    int control_port;           /* control listener, plain HTTP */
    int tls;                    /* started with --tls */
    char host[64];              /* address it listens on ("127.0.0.1", "::1", from --bind) */
    char dir[256];              /* temp dir: port files, cert.pem, key.pem */
    char cert[300];             /* <dir>/cert.pem (exists with --tls): use as CAINFO */
};

/* Start build/upstream with --port-file/--control-port-file/--cert-dir in a fresh temp dir,
 * --max-seconds 120, then extra_args (NULL-terminated, may be NULL; later flags win, so
 * "--max-seconds", "2" overrides). Waits up to 10 s for the ports. 0 or -1 (message on
 * stderr). */
int h_upstream_start(struct h_upstream *u, const char *const *extra_args);

/* SIGTERM, wait up to 5 s, then SIGKILL; removes the temp dir. Returns the server's exit
 * status (0 = clean; 128+signal if killed; a sanitizer finding shows as non-zero), or -1
 * if it was not running. Safe to call twice. */
int h_upstream_stop(struct h_upstream *u);

/* Wait for the server to exit by itself (e.g. --max-seconds). Exit status as above, or -1
 * on timeout (the server is left running). Removes the temp dir when it exited. */
int h_upstream_wait_exit(struct h_upstream *u, int timeout_ms);

/* Control-port queries (plain blocking socket, 5 s timeouts). */
long h_stat(struct h_upstream *u, const char *name);     /* value, 0 for an absent path_*
                                                           counter, -1 on error */
int h_reset(struct h_upstream *u);                         /* 0 or -1 */
char *h_get(struct h_upstream *u, const char *path);       /* malloc'd body (any status), NULL on error */
char *h_peers(struct h_upstream *u);                       /* == h_get(u, "/peers") */
/* Poll a counter every 10 ms until it equals want or timeout_ms passes; returns the last
 * value read (== want on success). */
long h_wait_stat(struct h_upstream *u, const char *name, long want, int timeout_ms);

/* Main-port helpers (plain servers only; they ARE counted like any client). */
int h_connect(const char *host, int port, int timeout_ms); /* blocking fd with SO_RCVTIMEO/
                                                              SO_SNDTIMEO = timeout_ms, or -1 */
int h_upstream_connect(struct h_upstream *u);              /* h_connect to the main port, 5 s */
/* One request on an open connection (keep-alive), reading exactly one Content-Length
 * response. extra_hdrs: full header lines with CRLFs, or NULL. body_out may be NULL.
 * Returns 0 and the status, or -1. */
int h_sock_http(int fd, const char *method, const char *path, const char *extra_hdrs,
                const char *req_body, int *status, char **body_out);
/* For a server started with "--no-accept", "--backlog", "0": connect non-blocking until a
 * connect stays in progress for 300 ms (its SYN is being dropped: the accept queue is full),
 * at most max attempts. Queued connections are left open in fds[] (close them at the end;
 * the queue stays full anyway, nothing ever accepts); the hanging probe is closed. Returns
 * how many are in fds[] (1 on Linux with backlog 0), or -1 if no connect hung. After this,
 * any further connect() to u->port hangs until the client's own timeout. */
int h_fill_backlog(struct h_upstream *u, int *fds, int max);
/* New connection, one request with Connection: close; malloc'd body, NULL on error. */
char *h_get_main(struct h_upstream *u, const char *path, int *status);

struct h_run {
    int status;                 /* exit code, or 128+signal (137 on timeout) */
    int timed_out;
    char *out;                  /* captured stdout, NUL-terminated (capped at 64 MiB) */
    char *err;                  /* captured stderr */
    size_t out_len, err_len;
    double secs;                /* wall time */
};

/* fork/exec argv[0] with the current environment plus env_extra ("NAME=value", overriding,
 * NULL-terminated, may be NULL) plus, when preload, LD_PRELOAD=<build>/libconnroute.so.
 * argv[0] without '/': <build>/progs/<name> if it exists, else looked up in $PATH; with '/'
 * relative to the cwd. stdin is /dev/null; fds >= 3 are closed; the child leads its own
 * process group, which is SIGKILLed on timeout (timeout_ms <= 0: 60 s) and after the child
 * exits (stray grandchildren). 0 when the program ran (see r->status), -1 when it could not
 * be started. Exec failure: status 127 and a message in r->err. preload=1 replaces any
 * inherited or env_extra LD_PRELOAD. */
int h_run(struct h_run *r, const char *const *argv, const char *const *env_extra, int preload,
          int timeout_ms);
void h_run_free(struct h_run *r);

/* A python3 that runs PROBE (python code) with exit 0: /usr/bin/python3 first (Debian's
 * packages, e.g. python3-pycurl, live with it), then python3 from PATH; NULL if none. */
const char *h_python(const char *probe);

/* Write dir/name (0644). path_out (may be NULL) gets the full path. 0 or -1. */
int h_write_file(const char *dir, const char *name, const char *text, char *path_out, size_t n);
/* Whole file, malloc'd and NUL-terminated, NULL on error. */
char *h_read_file(const char *path);
/* Open fds of a process from /proc/PID/fd (pid 0 = this process, not counting the fd used
 * for the count), -1 on error. */
int h_count_fds(pid_t pid);
/* Milliseconds on CLOCK_MONOTONIC. */
long long h_now_ms(void);
/* Sleeps MS milliseconds (resumed after signals). */
void h_sleep_ms(long ms);

/* ---- background servers other than the upstream (nginx, fcgiwrap, ...) ---------------- */

/* An unused loopback TCP port (bound, read, closed: another process may take it before the
 * caller binds it; callers retry), or -1. */
int h_free_port(void);

/* fork/exec argv (argv[0] a path) in the background: stdin /dev/null, stdout and stderr
 * appended to log_path (or /dev/null when NULL), env_extra ("NAME=value", may be NULL) added
 * to the environment and LD_PRELOAD removed (servers never run under the shim), its own
 * process group, PR_SET_PDEATHSIG SIGKILL, remembered for the atexit kill. pid or -1. */
pid_t h_spawn(const char *const *argv, const char *const *env_extra, const char *log_path);
/* SIGTERM to the process group, up to timeout_ms for the leader to exit, then SIGKILL (the
 * group too: workers it left behind). Exit status as h_upstream_stop; -1 if pid <= 0. */
int h_spawn_stop(pid_t pid, int timeout_ms);

/* nginx (one process in the foreground, master_process off) on 127.0.0.1 with two listeners
 * in one server block: `port` over TLS (cert.pem: CN localhost, SAN DNS:localhost and
 * IP:127.0.0.1; pass it as CAINFO) and `plain_port` over plain HTTP. Its access log has a
 * line per request: "REMOTE_ADDR CONNECTION_SERIAL STATUS METHOD URI". */
struct h_nginx {
    pid_t pid;      /* 0 once stopped */
    int port;       /* TLS listener */
    int plain_port; /* plain HTTP listener */
    char dir[256];  /* temp dir: nginx.conf, cert.pem, key.pem, access.log, error.log */
    char cert[300]; /* <dir>/cert.pem */
};
/* locations: the text inside server { } (every "@DIR@" replaced by n->dir), NULL for
 * `location / { return 200 "ok\n"; }`. Waits up to 5 s for both ports (tries 3 port pairs).
 * 0, -1 (message on stderr), or -2 when /usr/sbin/nginx is not installed. */
int h_nginx_start(struct h_nginx *n, const char *locations);
/* SIGTERM, up to 5 s, SIGKILL; removes the temp dir. Safe to call twice or unstarted. */
void h_nginx_stop(struct h_nginx *n);
/* The access log since the last call (then emptied; waits 100 ms first: nginx writes the
 * line after the response): malloc'd, never NULL. */
char *h_nginx_log_take(struct h_nginx *n);
/* Distinct connection serials in such a log; *lines counts its lines, *addr_ok those whose
 * client address is addr. */
int h_log_conns(const char *log, const char *addr, int *lines, int *addr_ok);

/* ---- the per-test fixture most suites share (Criterion assertions on failure) ---------- */

/* The running test's upstream. h_start_plain / h_start_tls / h_start_with(extra_args) (as
 * a Test's .init) start it and set h_dir = h_up.dir and h_url = its base URL, no trailing
 * slash: "http://127.0.0.1:PORT", or "https://localhost:PORT" with --tls (the name the
 * certificate is checked against). h_stop (.fini) stops it. h_dir is where h_config writes;
 * a test may point it elsewhere (e.g. an nginx's dir). Criterion runs each test in its own
 * process, so one set serves every suite. */
extern struct h_upstream h_up;
extern char h_dir[256];
extern char h_url[128];
void h_start_with(const char *const *extra_args);
void h_start_plain(void);
void h_start_tls(void);
void h_stop(void);
/* Writes TEXT to h_dir/connroute.conf; returns "CONNROUTE_CONFIG=path" (static: one at a
 * time). */
const char *h_config(const char *text);
/* h_url + PATH, in one of 4 rotating static buffers. */
char *h_path_url(const char *path);

/* h_run that asserts the program started and did not time out (the message names argv[0]
 * and shows its output). */
void h_run_ok(struct h_run *r, const char *const *argv, const char *const *env, int preload,
              int timeout_ms);
/* h_run_ok of an argv written in place, 30 s: H_RUN(&r, env, preload, "prog", "arg", ...). */
#define H_RUN(r, env, preload, ...)                                                            \
    do {                                                                                       \
        const char *h_argv_[] = {__VA_ARGS__, NULL};                                           \
        h_run_ok((r), h_argv_, (env), (preload), 30000);                                       \
    } while (0)

/* Non-overlapping occurrences of NEEDLE in HAY (0 for a NULL HAY). */
int h_count_str(const char *hay, const char *needle);
/* The sum of the samples of metric NAME (lines "NAME{...} V" or "NAME V") in a Prometheus
 * text scrape whose labels contain LABEL (NULL: every sample). */
double h_metric_sum(const char *text, const char *name, const char *label);

/* A program run by h_run in a thread (e.g. while the test scrapes or signals it). Fill argv
 * and env (NULL-terminated; env may stay empty), optionally timeout_ms (0: 30 s) and
 * no_preload (0: under the shim), then h_bg_start. h_bg_wait joins; h_bg_join joins and
 * asserts the program started and did not time out. finished is set when h_run returned. */
struct h_bg {
    pthread_t t;
    atomic_int finished;
    const char *argv[64];
    const char *env[8];
    int timeout_ms;
    int no_preload;
    struct h_run r;
    int rc; /* h_run's return */
};
void h_bg_start(struct h_bg *b);
void h_bg_wait(struct h_bg *b);
void h_bg_join(struct h_bg *b);

#endif
