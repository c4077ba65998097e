/* connroute test upstream: flags, listeners, the accept loop, shutdown.
 *
 *   upstream [--port N] [--bind ADDR] [--tls] [--cert-dir DIR] [--port-file FILE]
 *            [--control-port N] [--control-port-file FILE] [--backlog N] [--no-accept]
 *            [--threads-max N] [--idle-timeout-ms N] [--max-seconds N]
 *
 * Two listeners on ADDR: the main one (plain or TLS; every connection and request on it is
 * counted) and a plain control one (never counted; serves the same endpoints). stdout gets
 * exactly "PORT <n>\nCONTROL <n>\n"; errors go to stderr.
 *
 * --port N binds a fixed port with SO_REUSEADDR, so an upstream stopped and started again on
 * the same port ("goes away and comes back") binds at once even with connections of the
 * previous run still in TIME_WAIT. Fault injection: GET /inject, see upstream.h.
 *
 * Threads: the main thread polls the listeners, a signalfd and the --max-seconds deadline,
 * accepts, and joins finished connection threads; one thread per connection. */
#include "upstream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct upstream up = {.mu = PTHREAD_MUTEX_INITIALIZER};

void up_log(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof line - 2)
        n = sizeof line - 2;
    line[n++] = '\n';
    ssize_t w = write(2, "upstream: ", 10);
    w = write(2, line, (size_t)n);
    (void)w;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int up_sleep_ms(long ms)
{
    long long end = now_ms() + ms;
    for (;;) {
        if (atomic_load(&up.stop))
            return -1;
        long long left = end - now_ms();
        if (left <= 0)
            return 0;
        if (left > 20)
            left = 20;
        struct timespec ts = {0, (long)left * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: upstream [--port N] [--bind ADDR] [--tls] [--cert-dir DIR]\n"
            "                [--port-file FILE] [--control-port N] [--control-port-file FILE]\n"
            "                [--backlog N] [--no-accept] [--threads-max N]\n"
            "                [--idle-timeout-ms N] [--max-seconds N]\n");
}

static int parse_int(const char *name, const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        up_log("bad value for --%s: '%s' (want %ld..%ld)", name, s, lo, hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_args(int argc, char **argv, struct up_opts *o)
{
    enum { O_PORT = 256, O_BIND, O_TLS, O_CERTDIR, O_PORTFILE, O_CPORT, O_CPORTFILE, O_BACKLOG,
           O_NOACCEPT, O_THREADS, O_IDLE, O_MAXSEC, O_HELP };
    static const struct option lo[] = {
        {"port", required_argument, 0, O_PORT},
        {"bind", required_argument, 0, O_BIND},
        {"tls", no_argument, 0, O_TLS},
        {"cert-dir", required_argument, 0, O_CERTDIR},
        {"port-file", required_argument, 0, O_PORTFILE},
        {"control-port", required_argument, 0, O_CPORT},
        {"control-port-file", required_argument, 0, O_CPORTFILE},
        {"backlog", required_argument, 0, O_BACKLOG},
        {"no-accept", no_argument, 0, O_NOACCEPT},
        {"threads-max", required_argument, 0, O_THREADS},
        {"idle-timeout-ms", required_argument, 0, O_IDLE},
        {"max-seconds", required_argument, 0, O_MAXSEC},
        {"help", no_argument, 0, O_HELP},
        {0, 0, 0, 0},
    };
    *o = (struct up_opts){.bind = "127.0.0.1", .cert_dir = ".", .backlog = 511,
                          .threads_max = 1024, .idle_timeout_ms = 60000, .max_seconds = 300};
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case O_PORT: rc = parse_int("port", optarg, 0, 65535, &o->port); break;
        case O_BIND: o->bind = optarg; break;
        case O_TLS: o->tls = true; break;
        case O_CERTDIR: o->cert_dir = optarg; break;
        case O_PORTFILE: o->port_file = optarg; break;
        case O_CPORT: rc = parse_int("control-port", optarg, 0, 65535, &o->control_port); break;
        case O_CPORTFILE: o->control_port_file = optarg; break;
        case O_BACKLOG: rc = parse_int("backlog", optarg, 0, 65535, &o->backlog); break;
        case O_NOACCEPT: o->no_accept = true; break;
        case O_THREADS: rc = parse_int("threads-max", optarg, 1, 16384, &o->threads_max); break;
        case O_IDLE: rc = parse_int("idle-timeout-ms", optarg, 1, 3600000, &o->idle_timeout_ms); break;
        case O_MAXSEC: rc = parse_int("max-seconds", optarg, 1, 86400, &o->max_seconds); break;
        case O_HELP: usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
        if (rc)
            return -1;
    }
    if (optind != argc) {
        usage(stderr);
        return -1;
    }
    if (!strcmp(o->bind, "localhost"))
        o->bind = "127.0.0.1";
    return 0;
}

/* Returns the listening fd and stores the bound port. */
static int listen_on(const char *addr, int port, int backlog, int *bound)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        sl = sizeof *s4;
    } else if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        sl = sizeof *s6;
    } else {
        up_log("--bind wants a numeric address, got '%s'", addr);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        up_log("socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, sl) < 0) {
        up_log("bind %s:%d: %s", addr, port, strerror(errno));
        close(fd);
        return -1;
    }
    if (listen(fd, backlog) < 0) {
        up_log("listen: %s", strerror(errno));
        close(fd);
        return -1;
    }
    sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *bound = ntohs(ss.ss_family == AF_INET ? s4->sin_port : s6->sin6_port);
    return fd;
}

static int write_port_file(const char *path, int port)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof tmp)
        return -1;
    FILE *f = fopen(tmp, "w");
    if (!f) {
        up_log("%s: %s", tmp, strerror(errno));
        return -1;
    }
    fprintf(f, "%d\n", port);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        up_log("%s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

static void format_peer(const struct sockaddr_storage *ss, char *out, size_t n)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
        snprintf(out, n, "%s:%u", ip, ntohs(s4->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], ip, sizeof ip);
            snprintf(out, n, "%s:%u", ip, ntohs(s6->sin6_port));
        } else {
            inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
            snprintf(out, n, "[%s]:%u", ip, ntohs(s6->sin6_port));
        }
    } else {
        snprintf(out, n, "?:0");
    }
}

static pthread_attr_t thread_attr;

/* Accept up to a bounded number of pending connections. Returns -1 on EMFILE and the like
 * so the caller backs off instead of spinning on a readable listener. */
static int accept_some(int lfd, bool control)
{
    for (int i = 0; i < 256; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            up_log("accept: %s", strerror(errno));
            return -1;
        }
        pthread_mutex_lock(&up.mu);
        bool over;
        if (control) {
            over = up.ncontrol >= UP_CONTROL_MAX;
        } else {
            up.k.accepted++;
            over = up.k.open >= up.o.threads_max;
            if (over)
                up.k.rejected++;
        }
        pthread_mutex_unlock(&up.mu);
        if (over) {
            close(fd);
            continue;
        }
        struct conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->control = control;
        format_peer(&ss, c->peer, sizeof c->peer);

        pthread_mutex_lock(&up.mu);
        if (control) {
            up.ncontrol++;
        } else {
            c->id = ++up.next_id;
            if (++up.k.open > up.k.max_open)
                up.k.max_open = up.k.open;
        }
        up_list_push(&up.live, c);
        /* Created under the lock so the thread (and the reaper) see c->th set. */
        int rc = pthread_create(&c->th, &thread_attr, up_conn_main, c);
        if (rc != 0) {
            up_list_del(&up.live, c);
            if (control)
                up.ncontrol--;
            else
                up.k.open--;
        }
        pthread_mutex_unlock(&up.mu);
        if (rc != 0) {
            up_log("pthread_create: %s", strerror(rc));
            close(fd);
            free(c);
        }
    }
    return 0;
}

/* Join finished connection threads; keep a bounded history of closed connections. */
static void reap(void)
{
    struct up_list done = {0};
    pthread_mutex_lock(&up.mu);
    for (struct conn *c = up.live.head, *nx; c; c = nx) {
        nx = c->next;
        if (c->finished) {
            up_list_del(&up.live, c);
            up_list_push(&done, c);
        }
    }
    pthread_mutex_unlock(&up.mu);
    for (struct conn *c = done.head, *nx; c; c = nx) {
        nx = c->next;
        pthread_join(c->th, NULL);
        pthread_mutex_lock(&up.mu);
        if (c->control) {
            up.ncontrol--;
            free(c);
        } else if (c->hidden) {
            free(c);
        } else {
            c->prev = c->next = NULL;
            up_list_push(&up.hist, c);
            while (up.hist.n > UP_HIST_MAX) {
                struct conn *old = up.hist.head;
                up_list_del(&up.hist, old);
                free(old);
            }
        }
        pthread_mutex_unlock(&up.mu);
    }
}

/* Wake every connection thread (blocked reads/writes fail, /delay polls up.stop) and join
 * them, bounded in time. Returns 0 when all were joined. */
static int shutdown_all(void)
{
    pthread_mutex_lock(&up.mu);
    for (struct conn *c = up.live.head; c; c = c->next)
        if (c->fd >= 0)
            shutdown(c->fd, SHUT_RDWR);
    pthread_mutex_unlock(&up.mu);

    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 5;
    int stuck = 0;
    for (;;) {
        pthread_mutex_lock(&up.mu);
        struct conn *c = up.live.head;
        if (c)
            up_list_del(&up.live, c);
        pthread_mutex_unlock(&up.mu);
        if (!c)
            break;
        if (pthread_timedjoin_np(c->th, NULL, &dl) != 0) {
            stuck++;                /* leave it; the process exits anyway */
            continue;
        }
        free(c);
    }
    for (struct conn *c = up.hist.head, *nx; c; c = nx) {
        nx = c->next;
        free(c);
    }
    up.hist = (struct up_list){0};
    return stuck ? -1 : 0;
}

int main(int argc, char **argv)
{
    if (parse_args(argc, argv, &up.o) != 0)
        return 2;

    /* Termination signals go to a signalfd read by this thread only; every thread created
     * later inherits the mask. SIGPIPE: OpenSSL writes with write(2), not MSG_NOSIGNAL. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0) {
        up_log("signalfd: %s", strerror(errno));
        return 1;
    }

    if (up.o.tls && !(up.ssl_ctx = up_tls_init(up.o.cert_dir)))
        return 1;

    int port = 0, cport = 0;
    int lfd = listen_on(up.o.bind, up.o.port, up.o.backlog, &port);
    if (lfd < 0)
        return 1;
    int cfd = listen_on(up.o.bind, up.o.control_port, 64, &cport);
    if (cfd < 0)
        return 1;
    if (up.o.control_port_file && write_port_file(up.o.control_port_file, cport) != 0)
        return 1;
    if (up.o.port_file && write_port_file(up.o.port_file, port) != 0)
        return 1;
    printf("PORT %d\nCONTROL %d\n", port, cport);
    fflush(stdout);

    pthread_attr_init(&thread_attr);
    pthread_attr_setstacksize(&thread_attr, 512 * 1024);

    long long deadline = now_ms() + (long long)up.o.max_seconds * 1000;
    long long backoff_until = 0;
    int exit_code = 0;
    while (!atomic_load(&up.stop)) {
        long long now = now_ms();
        if (now >= deadline) {
            up_log("--max-seconds %d reached, exiting", up.o.max_seconds);
            break;
        }
        struct pollfd p[3] = {{sfd, POLLIN, 0}, {cfd, POLLIN, 0}, {-1, POLLIN, 0}};
        if (!up.o.no_accept && now >= backoff_until)
            p[2].fd = lfd;
        int timeout = 100;
        if (deadline - now < timeout)
            timeout = (int)(deadline - now);
        int n = poll(p, 3, timeout);
        if (n < 0 && errno != EINTR) {
            up_log("poll: %s", strerror(errno));
            exit_code = 1;
            break;
        }
        if (n > 0 && (p[0].revents & POLLIN)) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof si) > 0)
                break;
        }
        if (n > 0 && (p[1].revents & POLLIN) && accept_some(cfd, true) < 0)
            backoff_until = now_ms() + 50;
        if (n > 0 && (p[2].revents & POLLIN) && accept_some(lfd, false) < 0)
            backoff_until = now_ms() + 50;
        reap();
    }

    atomic_store(&up.stop, true);
    close(lfd);
    close(cfd);
    close(sfd);
    if (shutdown_all() != 0) {
        up_log("some connection threads did not stop within 5 s");
        fflush(stdout);
        _exit(exit_code ? exit_code : 1);
    }
    pthread_attr_destroy(&thread_attr);
    if (up.ssl_ctx)
        SSL_CTX_free(up.ssl_ctx);
    return exit_code;
}
