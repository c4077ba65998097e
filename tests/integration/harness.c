/* Integration-test helpers; see harness.h. Not linked with OpenSSL: TLS clients are curl
 * or tests/progs run through h_run. */
#include "harness.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define H_OUT_CAP (64u << 20)

long long h_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void h_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

const char *h_build(void)
{
    static char dir[PATH_MAX];
    if (dir[0])
        return dir;
    const char *e = getenv("CR_BUILD");
    if (!e || !*e)
        e = "build";
    if (!realpath(e, dir)) {
        if (e[0] == '/' || !getcwd(dir, sizeof dir - 1))
            snprintf(dir, sizeof dir, "%s", e);
        else
            snprintf(dir + strlen(dir), sizeof dir - strlen(dir), "/%s", e);
    }
    return dir;
}

/* ---- process-wide registry of started servers -------------------------------------- */

#define H_MAX_SERVERS 32
static struct {
    pid_t pid;
    char dir[256];
} g_servers[H_MAX_SERVERS];
static int g_atexit_done;

static void rm_dir(const char *dir)
{
    if (!dir[0])
        return;
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[PATH_MAX];
        for (int i = 0; i < 10000 && (e = readdir(d)); i++) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

static void kill_all_servers(void)
{
    for (int i = 0; i < H_MAX_SERVERS; i++) {
        if (g_servers[i].pid > 0) {
            kill(g_servers[i].pid, SIGKILL);
            waitpid(g_servers[i].pid, NULL, 0);
            rm_dir(g_servers[i].dir);
            g_servers[i].pid = 0;
        }
    }
}

static void registry_add(pid_t pid, const char *dir)
{
    if (!g_atexit_done) {
        atexit(kill_all_servers);
        g_atexit_done = 1;
    }
    for (int i = 0; i < H_MAX_SERVERS; i++) {
        if (g_servers[i].pid == 0) {
            g_servers[i].pid = pid;
            snprintf(g_servers[i].dir, sizeof g_servers[i].dir, "%s", dir);
            return;
        }
    }
}

static void registry_del(pid_t pid)
{
    for (int i = 0; i < H_MAX_SERVERS; i++)
        if (g_servers[i].pid == pid)
            g_servers[i].pid = 0;
}

static int status_code(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

/* ---- upstream lifecycle ------------------------------------------------------------- */

static int read_int_file(const char *path)
{
    char *s = h_read_file(path);
    if (!s)
        return -1;
    char *end;
    long v = strtol(s, &end, 10);
    int ok = end != s && (*end == '\n' || *end == 0) && v > 0 && v < 65536;
    free(s);
    return ok ? (int)v : -1;
}

int h_upstream_start(struct h_upstream *u, const char *const *extra_args)
{
    memset(u, 0, sizeof *u);
    snprintf(u->host, sizeof u->host, "127.0.0.1");
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp || strlen(tmp) > 200)
        tmp = "/tmp";
    snprintf(u->dir, sizeof u->dir, "%s/cr-upstream-XXXXXX", tmp);
    if (!mkdtemp(u->dir)) {
        fprintf(stderr, "harness: mkdtemp %s: %s\n", u->dir, strerror(errno));
        u->dir[0] = 0;
        return -1;
    }
    snprintf(u->cert, sizeof u->cert, "%s/cert.pem", u->dir);

    char exe[PATH_MAX], pfile[300], cfile[300];
    snprintf(exe, sizeof exe, "%s/upstream", h_build());
    snprintf(pfile, sizeof pfile, "%s/port", u->dir);
    snprintf(cfile, sizeof cfile, "%s/control", u->dir);
    if (access(exe, X_OK) != 0) {
        fprintf(stderr, "harness: %s: %s (make %s)\n", exe, strerror(errno), exe);
        rm_dir(u->dir);
        return -1;
    }

    const char *argv[64];
    int n = 0;
    argv[n++] = exe;
    argv[n++] = "--port-file";
    argv[n++] = pfile;
    argv[n++] = "--control-port-file";
    argv[n++] = cfile;
    argv[n++] = "--cert-dir";
    argv[n++] = u->dir;
    argv[n++] = "--max-seconds";
    argv[n++] = "120";
    for (int i = 0; extra_args && extra_args[i] && n < 63; i++) {
        argv[n++] = extra_args[i];
        if (!strcmp(extra_args[i], "--tls"))
            u->tls = 1;
        if (!strcmp(extra_args[i], "--bind") && extra_args[i + 1])
            snprintf(u->host, sizeof u->host, "%s", extra_args[i + 1]);
    }
    argv[n] = NULL;

    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "harness: fork: %s\n", strerror(errno));
        if (devnull >= 0)
            close(devnull);
        rm_dir(u->dir);
        return -1;
    }
    if (pid == 0) {
        /* SIGTERM: the server exits cleanly (and its sanitizers report) if the test dies */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(1);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);           /* PORT/CONTROL lines: we read the port files */
        }
        execv(exe, (char *const *)argv);
        _exit(127);
    }
    if (devnull >= 0)
        close(devnull);
    u->pid = pid;
    registry_add(pid, u->dir);

    long long deadline = h_now_ms() + 10000;
    while (h_now_ms() < deadline) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            fprintf(stderr, "harness: upstream exited early with status %d\n", status_code(st));
            registry_del(pid);
            u->pid = 0;
            rm_dir(u->dir);
            return -1;
        }
        int cp = read_int_file(cfile), p = cp > 0 ? read_int_file(pfile) : -1;
        if (cp > 0 && p > 0) {
            u->port = p;
            u->control_port = cp;
            return 0;
        }
        h_sleep_ms(10);
    }
    fprintf(stderr, "harness: upstream did not report its port within 10 s\n");
    h_upstream_stop(u);
    return -1;
}

static int wait_pid_bounded(pid_t pid, int timeout_ms, int *st)
{
    long long deadline = h_now_ms() + timeout_ms;
    for (;;) {
        pid_t w = waitpid(pid, st, WNOHANG);
        if (w == pid)
            return 0;
        if (w < 0 && errno != EINTR)
            return -1;
        if (h_now_ms() >= deadline)
            return 1;
        h_sleep_ms(5);
    }
}

int h_upstream_stop(struct h_upstream *u)
{
    if (!u || u->pid <= 0) {
        if (u && u->dir[0]) {
            rm_dir(u->dir);
            u->dir[0] = 0;
        }
        return -1;
    }
    int st = 0, rc;
    kill(u->pid, SIGTERM);
    int w = wait_pid_bounded(u->pid, 5000, &st);
    if (w == 1) {
        fprintf(stderr, "harness: upstream %d ignored SIGTERM for 5 s, killing\n", (int)u->pid);
        kill(u->pid, SIGKILL);
        waitpid(u->pid, &st, 0);
        w = 0;
    }
    rc = w == 0 ? status_code(st) : -1;
    registry_del(u->pid);
    u->pid = 0;
    rm_dir(u->dir);
    u->dir[0] = 0;
    return rc;
}

int h_upstream_wait_exit(struct h_upstream *u, int timeout_ms)
{
    if (u->pid <= 0)
        return -1;
    int st = 0;
    int w = wait_pid_bounded(u->pid, timeout_ms, &st);
    if (w == 1)
        return -1;
    registry_del(u->pid);
    u->pid = 0;
    rm_dir(u->dir);
    u->dir[0] = 0;
    return w == 0 ? status_code(st) : -1;
}

/* ---- plain HTTP client ------------------------------------------------------------- */

int h_connect(const char *host, int port, int timeout_ms)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        sl = sizeof *s4;
    } else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        sl = sizeof *s6;
    } else {
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&ss, sl) != 0) {
        if (errno != EINPROGRESS)
            goto fail;
        struct pollfd p = {fd, POLLOUT, 0};
        int err = 0;
        socklen_t el = sizeof err;
        if (poll(&p, 1, timeout_ms) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) ||
            err) {
            errno = err ? err : ETIMEDOUT;
            goto fail;
        }
    }
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
fail:;
    int e = errno;
    close(fd);
    errno = e;
    return -1;
}

int h_upstream_connect(struct h_upstream *u)
{
    return h_connect(u->host, u->port, 5000);
}

int h_fill_backlog(struct h_upstream *u, int *fds, int max)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, u->host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)u->port);
        sl = sizeof *s4;
    } else if (inet_pton(AF_INET6, u->host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)u->port);
        sl = sizeof *s6;
    } else {
        return -1;
    }
    int n = 0;
    for (int i = 0; i < max; i++) {
        int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            break;
        if (connect(fd, (struct sockaddr *)&ss, sl) == 0) {
            fds[n++] = fd;
            continue;
        }
        if (errno != EINPROGRESS) {
            close(fd);
            break;
        }
        struct pollfd p = {fd, POLLOUT, 0};
        if (poll(&p, 1, 300) == 0) {
            close(fd);          /* hung: the queue is full */
            return n;
        }
        fds[n++] = fd;
    }
    for (int i = 0; i < n; i++)
        close(fds[i]);
    return -1;
}

static int send_all(int fd, const char *p, size_t n)
{
    for (size_t done = 0; done < n;) {
        ssize_t k = send(fd, p + done, n - done, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        done += (size_t)k;
    }
    return 0;
}

struct h_buf {
    char *p;
    size_t n, cap;
};

static int buf_reserve(struct h_buf *b, size_t extra)
{
    if (b->n + extra + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + extra + 1)
        cap *= 2;
    char *np = realloc(b->p, cap);
    if (!np)
        return -1;
    b->p = np;
    b->cap = cap;
    return 0;
}

static int send_request(int fd, const char *method, const char *path, const char *extra,
                        const char *body, int close_conn)
{
    size_t bl = body ? strlen(body) : 0;
    char head[8192];
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: cr-harness\r\n"
                     "%s%s",
                     method, path, close_conn ? "Connection: close\r\n" : "", extra ? extra : "");
    if (n < 0 || (size_t)n >= sizeof head - 64)
        return -1;
    if (body)
        n += snprintf(head + n, sizeof head - (size_t)n, "Content-Length: %zu\r\n", bl);
    n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
    if (send_all(fd, head, (size_t)n) != 0)
        return -1;
    return bl ? send_all(fd, body, bl) : 0;
}

static long long content_length(const char *hdrs)
{
    const char *p = hdrs;
    for (int i = 0; i < 200 && (p = strchr(p, '\n')); i++) {
        p++;
        if (!strncasecmp(p, "Content-Length:", 15))
            return strtoll(p + 15, NULL, 10);
    }
    return -1;
}

/* Read one response. With keep_reading, read to EOF (Connection: close); else exactly
 * headers + Content-Length. Bounded by the socket timeouts and H_OUT_CAP. */
static int read_response(int fd, int to_eof, int head_req, int *status, char **body_out)
{
    struct h_buf b = {0};
    size_t hend = 0;
    long long need = -1;
    if (buf_reserve(&b, 65536) != 0)
        return -1;
    b.p[0] = 0;
    for (int guard = 0; guard < 1000000; guard++) {
        if (!hend) {
            char *e = strstr(b.p, "\r\n\r\n");
            if (e) {
                hend = (size_t)(e + 4 - b.p);
                /* skip interim 1xx responses (100 Continue) */
                if (!strncmp(b.p, "HTTP/1.1 1", 10) || !strncmp(b.p, "HTTP/1.0 1", 10)) {
                    memmove(b.p, b.p + hend, b.n - hend + 1);
                    b.n -= hend;
                    hend = 0;
                    continue;
                }
                need = head_req ? 0 : content_length(b.p);
                if (need < 0 && !to_eof)
                    goto fail;
            }
        }
        if (hend && need >= 0 && b.n >= hend + (size_t)need)
            break;
        if (b.n > H_OUT_CAP || buf_reserve(&b, 65536) != 0)
            goto fail;
        ssize_t k = recv(fd, b.p + b.n, b.cap - b.n - 1, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            goto fail;
        if (k == 0) {
            if (!hend || (need >= 0 && b.n < hend + (size_t)need))
                goto fail;
            break;
        }
        b.n += (size_t)k;
        b.p[b.n] = 0;
    }
    if (!hend)
        goto fail;
    int st = 0;
    if (sscanf(b.p, "HTTP/1.%*d %d", &st) != 1)
        goto fail;
    if (status)
        *status = st;
    if (body_out) {
        size_t bl = need >= 0 ? (size_t)need : b.n - hend;
        char *body = malloc(bl + 1);
        if (!body)
            goto fail;
        memcpy(body, b.p + hend, bl);
        body[bl] = 0;
        *body_out = body;
    }
    free(b.p);
    return 0;
fail:
    free(b.p);
    return -1;
}

int h_sock_http(int fd, const char *method, const char *path, const char *extra_hdrs,
                const char *req_body, int *status, char **body_out)
{
    if (body_out)
        *body_out = NULL;
    if (send_request(fd, method, path, extra_hdrs, req_body, 0) != 0)
        return -1;
    return read_response(fd, 0, !strcmp(method, "HEAD"), status, body_out);
}

static char *get_once(const char *host, int port, const char *path, int *status)
{
    int fd = h_connect(host, port, 5000);
    if (fd < 0)
        return NULL;
    char *body = NULL;
    int st = 0;
    if (send_request(fd, "GET", path, NULL, NULL, 1) != 0 ||
        read_response(fd, 1, 0, &st, &body) != 0)
        body = NULL;
    close(fd);
    if (status)
        *status = st;
    return body;
}

char *h_get(struct h_upstream *u, const char *path)
{
    return get_once(u->host, u->control_port, path, NULL);
}

char *h_peers(struct h_upstream *u)
{
    return h_get(u, "/peers");
}

char *h_get_main(struct h_upstream *u, const char *path, int *status)
{
    if (u->tls)
        return NULL;
    return get_once(u->host, u->port, path, status);
}

long h_stat(struct h_upstream *u, const char *name)
{
    char *s = h_get(u, "/stats");
    if (!s)
        return -1;
    long v = strncmp(name, "path_", 5) ? -1 : 0;
    size_t nl = strlen(name);
    for (char *line = s; line && *line;) {
        char *next = strchr(line, '\n');
        if (!strncmp(line, name, nl) && line[nl] == ' ') {
            v = strtol(line + nl + 1, NULL, 10);
            break;
        }
        line = next ? next + 1 : NULL;
    }
    free(s);
    return v;
}

int h_reset(struct h_upstream *u)
{
    char *s = h_get(u, "/reset");
    int ok = s && !strcmp(s, "ok\n");
    free(s);
    return ok ? 0 : -1;
}

long h_wait_stat(struct h_upstream *u, const char *name, long want, int timeout_ms)
{
    long long deadline = h_now_ms() + timeout_ms;
    long v;
    for (;;) {
        v = h_stat(u, name);
        if (v == want || h_now_ms() >= deadline)
            return v;
        h_sleep_ms(10);
    }
}

/* ---- running programs -------------------------------------------------------------- */

static char **build_env(const char *const *extra, int preload)
{
    size_t ne = 0, nx = 0;
    while (environ && environ[ne])
        ne++;
    while (extra && extra[nx])
        nx++;
    char **env = calloc(ne + nx + 2, sizeof *env);
    static char preload_var[PATH_MAX + 16];
    if (!env)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < ne; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t kl = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        int overridden = preload && kl == 10 && !strncmp(environ[i], "LD_PRELOAD", 10);
        for (size_t j = 0; j < nx && !overridden; j++)
            overridden = !strncmp(extra[j], environ[i], kl) && extra[j][kl] == '=';
        if (!overridden)
            env[n++] = environ[i];
    }
    for (size_t j = 0; j < nx; j++) {
        const char *eq = strchr(extra[j], '=');
        int dup = 0;        /* a later duplicate in extra wins */
        for (size_t k = j + 1; eq && k < nx && !dup; k++)
            dup = !strncmp(extra[k], extra[j], (size_t)(eq - extra[j]) + 1);
        if (preload && eq && eq - extra[j] == 10 && !strncmp(extra[j], "LD_PRELOAD", 10))
            dup = 1;
        if (!dup)
            env[n++] = (char *)extra[j];
    }
    if (preload) {
        snprintf(preload_var, sizeof preload_var, "LD_PRELOAD=%s/libconnroute.so", h_build());
        env[n++] = preload_var;
    }
    env[n] = NULL;
    return env;
}

static void close_from_3(void)
{
#ifdef SYS_close_range
    if (syscall(SYS_close_range, 3u, ~0u, 0u) == 0)
        return;
#endif
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536)
        max = 65536;
    for (long fd = 3; fd < max; fd++)
        close((int)fd);
}

static void drain(int *fd, struct h_buf *b)
{
    char tmp[65536];
    for (int i = 0; i < 1024 && *fd >= 0; i++) {
        ssize_t k = read(*fd, tmp, sizeof tmp);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (k <= 0) {
            close(*fd);
            *fd = -1;
            return;
        }
        size_t keep = (size_t)k;
        if (b->n + keep > H_OUT_CAP)
            keep = b->n < H_OUT_CAP ? H_OUT_CAP - b->n : 0;
        if (keep && buf_reserve(b, keep) == 0) {
            memcpy(b->p + b->n, tmp, keep);
            b->n += keep;
        }
    }
}

static char *finish_buf(struct h_buf *b, size_t *len)
{
    if (buf_reserve(b, 0) != 0) {
        free(b->p);
        *len = 0;
        return strdup("");
    }
    b->p[b->n] = 0;
    *len = b->n;
    return b->p;
}

int h_run(struct h_run *r, const char *const *argv, const char *const *env_extra, int preload,
          int timeout_ms)
{
    memset(r, 0, sizeof *r);
    r->status = -1;
    if (!argv || !argv[0])
        return -1;
    if (timeout_ms <= 0)
        timeout_ms = 60000;

    char path[PATH_MAX];
    int use_path_search = 0;
    if (strchr(argv[0], '/')) {
        snprintf(path, sizeof path, "%s", argv[0]);
    } else {
        snprintf(path, sizeof path, "%s/progs/%s", h_build(), argv[0]);
        if (access(path, X_OK) != 0) {
            snprintf(path, sizeof path, "%s", argv[0]);
            use_path_search = 1;
        }
    }
    char **env = build_env(env_extra, preload);
    if (!env)
        return -1;
    int po[2], pe[2];
    if (pipe2(po, O_CLOEXEC) != 0) {
        free(env);
        return -1;
    }
    if (pipe2(pe, O_CLOEXEC) != 0) {
        close(po[0]);
        close(po[1]);
        free(env);
        return -1;
    }
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    long long t0 = h_now_ms();
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        if (devnull >= 0)
            dup2(devnull, 0);
        dup2(po[1], 1);
        dup2(pe[1], 2);
        close_from_3();
        signal(SIGPIPE, SIG_DFL);
        if (use_path_search)
            execvpe(path, (char *const *)argv, env);
        else
            execve(path, (char *const *)argv, env);
        char msg[PATH_MAX + 64];
        int n = snprintf(msg, sizeof msg, "h_run: exec %s: %s\n", path, strerror(errno));
        ssize_t w = write(2, msg, n > 0 ? (size_t)n : 0);
        (void)w;
        _exit(127);
    }
    free(env);
    if (devnull >= 0)
        close(devnull);
    close(po[1]);
    close(pe[1]);
    if (pid < 0) {
        close(po[0]);
        close(pe[0]);
        return -1;
    }
    setpgid(pid, pid);          /* also from here: no race with an early kill(-pid) */
    fcntl(po[0], F_SETFL, O_NONBLOCK);
    fcntl(pe[0], F_SETFL, O_NONBLOCK);

    struct h_buf bo = {0}, be = {0};
    int fo = po[0], fe = pe[0];
    long long deadline = t0 + timeout_ms, exited_at = 0;
    int st = 0, reaped = 0;
    for (;;) {
        long long now = h_now_ms();
        if (!reaped && waitpid(pid, &st, WNOHANG) == pid) {
            reaped = 1;
            exited_at = now;
            r->secs = (double)(now - t0) / 1000.0;
        }
        if (reaped && ((fo < 0 && fe < 0) || now - exited_at > 1000))
            break;                          /* done, or a grandchild holds the pipes */
        if (!reaped && now >= deadline) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            r->timed_out = 1;
            r->secs = (double)(h_now_ms() - t0) / 1000.0;
            drain(&fo, &bo);
            drain(&fe, &be);
            break;
        }
        struct pollfd p[2] = {{fo, POLLIN, 0}, {fe, POLLIN, 0}};
        int n = poll(p, 2, 20);
        if (n > 0) {
            if (p[0].revents)
                drain(&fo, &bo);
            if (p[1].revents)
                drain(&fe, &be);
        }
    }
    kill(-pid, SIGKILL);                    /* stray members of its process group */
    if (fo >= 0)
        close(fo);
    if (fe >= 0)
        close(fe);
    r->status = r->timed_out ? 128 + SIGKILL : status_code(st);
    r->out = finish_buf(&bo, &r->out_len);
    r->err = finish_buf(&be, &r->err_len);
    return 0;
}

void h_run_free(struct h_run *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

/* ---- files and fds ----------------------------------------------------------------- */

int h_write_file(const char *dir, const char *name, const char *text, char *path_out, size_t n)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return -1;
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    size_t len = strlen(text);
    int ok = fwrite(text, 1, len, f) == len;
    if (fclose(f) != 0 || !ok)
        return -1;
    if (path_out && n) {
        if (strlen(path) >= n)
            return -1;
        memcpy(path_out, path, strlen(path) + 1);
    }
    return 0;
}

char *h_read_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct h_buf b = {0};
    for (;;) {
        if (b.n > H_OUT_CAP || buf_reserve(&b, 65536) != 0) {
            free(b.p);
            close(fd);
            return NULL;
        }
        ssize_t k = read(fd, b.p + b.n, b.cap - b.n - 1);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            free(b.p);
            close(fd);
            return NULL;
        }
        if (k == 0)
            break;
        b.n += (size_t)k;
    }
    close(fd);
    b.p[b.n] = 0;
    return b.p;
}

int h_count_fds(pid_t pid)
{
    char path[64];
    int self = pid == 0 || pid == getpid();
    if (self)
        snprintf(path, sizeof path, "/proc/self/fd");
    else
        snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    for (int i = 0; i < 1000000 && (e = readdir(d)); i++)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return self ? n - 1 : n;
}

const char *h_python(const char *probe)
{
	static const char *const cands[] = {"/usr/bin/python3", "python3", NULL};
	for (int i = 0; cands[i]; i++) {
		if (cands[i][0] == '/' && access(cands[i], X_OK) != 0)
			continue;
		struct h_run r;
		const char *argv[] = {cands[i], "-c", probe, NULL};
		if (h_run(&r, argv, NULL, 0, 20000) != 0)
			continue;
		int ok = r.status == 0;
		h_run_free(&r);
		if (ok)
			return cands[i];
	}
	return NULL;
}

/* ---- background servers: h_spawn, nginx --------------------------------------------- */

int h_free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(s, (struct sockaddr *)&a, &l) != 0) {
        if (s >= 0)
            close(s);
        return -1;
    }
    close(s);
    return ntohs(a.sin_port);
}

pid_t h_spawn(const char *const *argv, const char *const *env_extra, const char *log_path)
{
    char **env = build_env(env_extra, 0);
    if (!env)
        return -1;
    size_t k = 0;
    for (size_t i = 0; env[i]; i++)
        if (strncmp(env[i], "LD_PRELOAD=", 11) != 0)
            env[k++] = env[i];
    env[k] = NULL;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        free(env);
        return -1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int in = open("/dev/null", O_RDONLY);
        int out = log_path ? open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644)
                           : open("/dev/null", O_WRONLY);
        if (in < 0 || out < 0)
            _exit(127);
        dup2(in, 0);
        dup2(out, 1);
        dup2(out, 2);
        close_from_3();
        execve(argv[0], (char *const *)argv, env);
        _exit(127);
    }
    free(env);
    setpgid(pid, pid);
    registry_add(pid, "");
    return pid;
}

int h_spawn_stop(pid_t pid, int timeout_ms)
{
    if (pid <= 0)
        return -1;
    int st = 0;
    kill(-pid, SIGTERM);
    kill(pid, SIGTERM);
    if (wait_pid_bounded(pid, timeout_ms, &st) != 0) {
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
    kill(-pid, SIGKILL); /* workers it left behind (fcgiwrap's children) */
    registry_del(pid);
    return status_code(st);
}

static void rm_tree(const char *dir)
{
    if (!dir[0])
        return;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "harness: could not remove %s\n", dir);
}

/* s with every `from` replaced by `to`: malloc'd, NULL on error. */
static char *replace_all(const char *s, const char *from, const char *to)
{
    size_t fl = strlen(from), tl = strlen(to), n = 0;
    for (const char *p = s; (p = strstr(p, from)); p += fl)
        n++;
    char *out = malloc(strlen(s) + n * tl + 1), *o = out;
    if (!out)
        return NULL;
    for (const char *p = s;;) {
        const char *q = strstr(p, from);
        size_t k = q ? (size_t)(q - p) : strlen(p);
        memcpy(o, p, k);
        o += k;
        if (!q)
            break;
        memcpy(o, to, tl);
        o += tl;
        p = q + fl;
    }
    *o = '\0';
    return out;
}

void h_nginx_stop(struct h_nginx *n)
{
    if (n->pid > 0)
        h_spawn_stop(n->pid, 5000);
    n->pid = 0;
    rm_tree(n->dir);
    n->dir[0] = '\0';
}

int h_nginx_start(struct h_nginx *n, const char *locations)
{
    static const char *const ngx = "/usr/sbin/nginx";
    memset(n, 0, sizeof *n);
    if (access(ngx, X_OK) != 0)
        return -2;
    char tmpl[] = "/tmp/cr-nginx-XXXXXX";
    if (!mkdtemp(tmpl))
        return -1;
    snprintf(n->dir, sizeof n->dir, "%s", tmpl);
    snprintf(n->cert, sizeof n->cert, "%s/cert.pem", n->dir);
    char cmd[1200], path[400];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "
             "%s/key.pem -out %s/cert.pem -days 2 -subj /CN=localhost "
             "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 >/dev/null 2>&1",
             n->dir, n->dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "harness: openssl could not make a certificate\n");
        h_nginx_stop(n);
        return -1;
    }
    char *loc = replace_all(locations ? locations : "  location / { return 200 \"ok\\n\"; }\n",
                            "@DIR@", n->dir);
    size_t cap = (loc ? strlen(loc) : 0) + 4096;
    char *text = malloc(cap);
    if (!loc || !text) {
        free(loc);
        free(text);
        h_nginx_stop(n);
        return -1;
    }
    const char *d = n->dir;
    for (int attempt = 0; attempt < 3; attempt++) {
        n->port = h_free_port();
        n->plain_port = h_free_port();
        if (n->port <= 0 || n->plain_port <= 0 || n->port == n->plain_port)
            continue;
        snprintf(text, cap,
                 "daemon off;\nmaster_process off;\nworker_processes 1;\npid %s/nginx.pid;\n"
                 "error_log %s/error.log warn;\nevents { worker_connections 256; }\n"
                 "http {\n log_format cr '$remote_addr $connection $status $request_method $uri';\n"
                 " access_log %s/access.log cr;\n"
                 " client_body_temp_path %s/cb;\n proxy_temp_path %s/px;\n fastcgi_temp_path %s/fc;\n"
                 " uwsgi_temp_path %s/uw;\n scgi_temp_path %s/sc;\n keepalive_requests 100000;\n"
                 " server {\n  listen 127.0.0.1:%d ssl;\n  listen 127.0.0.1:%d;\n"
                 "  ssl_certificate %s/cert.pem;\n  ssl_certificate_key %s/key.pem;\n%s }\n}\n",
                 d, d, d, d, d, d, d, d, n->port, n->plain_port, d, d, loc);
        if (h_write_file(d, "nginx.conf", text, path, sizeof path) != 0)
            break;
        const char *argv[] = {ngx, "-p", d, "-c", path, NULL};
        snprintf(cmd, sizeof cmd, "%s/nginx.out", d);
        n->pid = h_spawn(argv, NULL, cmd);
        if (n->pid < 0) {
            n->pid = 0;
            break;
        }
        for (int i = 0; i < 200; i++) {
            int a = h_connect("127.0.0.1", n->port, 200);
            int b = a >= 0 ? h_connect("127.0.0.1", n->plain_port, 200) : -1;
            if (a >= 0)
                close(a);
            if (b >= 0) {
                close(b);
                free(loc);
                free(text);
                free(h_nginx_log_take(n)); /* the probes were connections too */
                return 0;
            }
            int st;
            if (waitpid(n->pid, &st, WNOHANG) == n->pid) {
                registry_del(n->pid);
                n->pid = 0; /* lost a port to someone: another pair */
                break;
            }
            h_sleep_ms(25);
        }
        if (n->pid > 0)
            h_spawn_stop(n->pid, 1000);
        n->pid = 0;
    }
    snprintf(cmd, sizeof cmd, "%s/error.log", d);
    char *err = h_read_file(cmd);
    fprintf(stderr, "harness: nginx did not start: %s\n", err ? err : "(no error.log)");
    free(err);
    free(loc);
    free(text);
    h_nginx_stop(n);
    return -1;
}

char *h_nginx_log_take(struct h_nginx *n)
{
    char log[400];
    snprintf(log, sizeof log, "%s/access.log", n->dir);
    h_sleep_ms(100);
    char *t = h_read_file(log);
    if (truncate(log, 0) != 0 && errno != ENOENT)
        fprintf(stderr, "harness: could not empty %s\n", log);
    return t ? t : strdup("");
}

int h_log_conns(const char *log, const char *addr, int *lines, int *addr_ok)
{
    long seen[4096];
    int n = 0;
    *lines = *addr_ok = 0;
    for (const char *l = log; l && *l;) {
        const char *nl = strchr(l, '\n');
        char a[64];
        long c;
        if (sscanf(l, "%63s %ld", a, &c) == 2) {
            (*lines)++;
            *addr_ok += strcmp(a, addr) == 0;
            int k;
            for (k = 0; k < n && seen[k] != c; k++)
                ;
            if (k == n && n < 4096)
                seen[n++] = c;
        }
        l = nl ? nl + 1 : NULL;
    }
    return n;
}

/* ---- the per-test fixture ------------------------------------------------------------- */

struct h_upstream h_up;
char h_dir[256];
char h_url[128];

void h_start_with(const char *const *extra_args)
{
    cr_assert_eq(h_upstream_start(&h_up, extra_args), 0);
    snprintf(h_dir, sizeof h_dir, "%s", h_up.dir);
    /* TLS by name: the test certificate's SAN names localhost (and 127.0.0.1). */
    snprintf(h_url, sizeof h_url, "%s://%s:%d", h_up.tls ? "https" : "http",
             h_up.tls ? "localhost" : "127.0.0.1", h_up.port);
}

void h_start_plain(void)
{
    h_start_with(NULL);
}

void h_start_tls(void)
{
    const char *args[] = {"--tls", NULL};
    h_start_with(args);
}

void h_stop(void)
{
    h_upstream_stop(&h_up);
}

const char *h_config(const char *text)
{
    static char env[512];
    char path[400];
    cr_assert_eq(h_write_file(h_dir, "connroute.conf", text, path, sizeof path), 0);
    snprintf(env, sizeof env, "CONNROUTE_CONFIG=%s", path);
    return env;
}

char *h_path_url(const char *path)
{
    static char buf[4][256];
    static int i;
    char *b = buf[i++ % 4];
    snprintf(b, 256, "%s%s", h_url, path);
    return b;
}

void h_run_ok(struct h_run *r, const char *const *argv, const char *const *env, int preload,
              int timeout_ms)
{
    cr_assert_eq(h_run(r, argv, env, preload, timeout_ms), 0, "could not start %s", argv[0]);
    cr_assert_eq(r->timed_out, 0, "%s hung (preload=%d): %s\n%s", argv[0], preload, r->out,
                 r->err);
}

int h_count_str(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; p && (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

double h_metric_sum(const char *text, const char *name, const char *label)
{
    size_t n = strlen(name);
    double s = 0;
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, name, n) || (p[n] != '{' && p[n] != ' '))
            continue;
        const char *sp = strchr(p, '}');
        const char *eol = strchr(p, '\n');
        if (!sp || (eol && sp > eol))
            sp = p + n;
        if (label) {
            const char *l = strstr(p, label);
            if (!l || l > sp)
                continue;
        }
        s += strtod(strchr(sp, ' ') + 1, NULL);
    }
    return s;
}

static void *bg_main(void *arg)
{
    struct h_bg *b = arg;
    b->rc = h_run(&b->r, b->argv, b->env, !b->no_preload, b->timeout_ms ? b->timeout_ms : 30000);
    atomic_store(&b->finished, 1);
    return NULL;
}

void h_bg_start(struct h_bg *b)
{
    cr_assert_eq(pthread_create(&b->t, NULL, bg_main, b), 0);
}

void h_bg_wait(struct h_bg *b)
{
    pthread_join(b->t, NULL);
}

void h_bg_join(struct h_bg *b)
{
    h_bg_wait(b);
    cr_assert_eq(b->rc, 0, "could not run %s", b->argv[0]);
    cr_assert_eq(b->r.timed_out, 0, "%s hung: %s\n%s", b->argv[0], b->r.out, b->r.err);
}
