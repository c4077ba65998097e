/* connroute: configuration model and parser (INI via inih, linked statically).
 *
 * A config is parsed off to the side into a cr_config and only published
 * once valid; nothing here touches process-global state, so the parser is
 * reentrant and testable without LD_PRELOAD. */
#ifndef CR_CONFIG_H
#define CR_CONFIG_H

#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "log.h"

#define CR_KEY_MAX             128 /* routing key, NUL included */
#define CR_NAME_MAX            64  /* lane name, NUL included */
#define CR_HOST_MAX            256 /* host name, NUL included */
#define CR_MAX_LANES           64
#define CR_MAX_MATCH           16 /* key globs per lane */
#define CR_MAX_HOSTS           16 /* destination rules per lane */
#define CR_MAX_PREWARM         16 /* prewarm targets per lane */
#define CR_MAX_THREADS         32 /* thread-name rules */
#define CR_MAX_DIAG            32 /* diagnostics kept per parse */
#define CR_DIAG_LEN            512
#define CR_ALOG_SPEC_MAX       256 /* access_log value, NUL included */
#define CR_ALOG_BUFFER_MIN     8   /* [global] access_log_buffer: records, a power of two */
#define CR_ALOG_BUFFER_MAX     4096
#define CR_ALOG_BUFFER_DEFAULT 1024

/* A destination filter: `127.0.0.0/8:8443`, `[::1]:443`, `api.internal`,
 * `*.internal:443`, `*:5432`. */
struct cr_hostrule {
	int family;             /* AF_INET, AF_INET6, or AF_UNSPEC for a name glob / any */
	uint8_t addr[16];       /* network byte order */
	int prefix;             /* CIDR length in bits */
	char name[CR_HOST_MAX]; /* host glob when family == AF_UNSPEC; "*" = any */
	int port;               /* 0 = any */
};

struct cr_prewarm {
	char host[CR_HOST_MAX];
	int port;
	int count;
};

/* One lane. Values of -1 mean "unset": the lane leaves that property to the
 * application (never a changed behaviour the config did not ask for).
 * Each field set from the file belongs to one key of the key table in
 * lib/config_keys.c, which holds its parser, range, defaults and dump; the
 * bracketed defaults below are a reader's summary of it. */
struct cr_lane {
	char name[CR_NAME_MAX];
	int line;     /* line of the [lane NAME] header, 0 if implicit */
	int implicit; /* the built-in default lane (no section in the file) */

	char match[CR_MAX_MATCH][CR_KEY_MAX];
	int nmatch; /* 0: the lane matches the key equal to its name */
	struct cr_hostrule hosts[CR_MAX_HOSTS];
	int nhosts; /* 0: any destination */

	/* limits and timeouts, milliseconds */
	long max_conns_per_host;         /* [0 = unlimited] */
	long max_idle_per_host;          /* [8] */
	long idle_timeout_ms;            /* [90s] */
	long long pool_schemes;          /* bit per scheme [http, https] */
	long max_lifetime_ms;            /* [0 = none] */
	long connect_timeout_ms;         /* [5s]; curl: covers TLS */
	long response_header_timeout_ms; /* [0 = none] */
	long request_timeout_ms;         /* [0 = none] */
	long queue_timeout_ms;           /* [= connect_timeout] */

	/* socket options; -1 = leave the socket as the app made it */
	int keepalive_idle_s; /* keepalive = 30s -> SO_KEEPALIVE + TCP_KEEPIDLE */
	int keepalive_interval_s;
	int keepalive_count;
	int nodelay;    /* [on] for lanes in the file */
	int tos;        /* IP_TOS / IPV6_TCLASS byte; dscp = ef sets tos = 0xb8 */
	long priority;  /* SO_PRIORITY */
	long long mark; /* SO_MARK (uint32) */
	int bind_set;
	struct sockaddr_storage bind_addr;
	socklen_t bind_len;

	/* TLS and retries (curl lanes) */
	int min_tls;                /* 10, 11, 12, 13 = TLS 1.0 .. 1.3 [12] */
	int retries;                /* [0] */
	double retry_budget_ratio;  /* [0.20] of the lane's requests */
	int retry_budget_min_per_s; /* [3] */

	/* resilience (lib/health.c); each part is off until its switch is set */
	long eject_after;             /* [0 = off] consecutive failures of an address */
	long eject_time_ms;           /* [30s] base; x ejections, at most 10x */
	double eject_max;             /* [0.5] of a host's known addresses */
	double breaker_failure_ratio; /* [0 = off] */
	long breaker_window_ms;       /* [10s] */
	long breaker_min_requests;    /* [20] */
	long breaker_open_ms;         /* [5s] */
	long breaker_probes;          /* [3] */
	long retry_tokens;            /* [0 = off] */
	double retry_token_ratio;     /* [0.1] */

	/* warm pools */
	struct cr_prewarm prewarm[CR_MAX_PREWARM];
	int nprewarm;
	char prewarm_url[512];   /* "" = none */
	char prewarm_method[16]; /* [HEAD] */
	double preconnect_ratio; /* [0 = off], at most 3 */
	long warm_max_idle_ms;   /* [15s] */

	/* outbound access log (docs/access-log.md); "" / -1 in the file: the
	 * [global] value, resolved by cr_config_finish() */
	char access_log[CR_ALOG_SPEC_MAX]; /* PATH | stderr | unix:PATH | off [off] */
	double access_log_sample;          /* [1] */
	long access_log_slow_ms;           /* [0 = every request] */
	int access_log_query;              /* [off] */

	/* derived at load by cr_config_finish() */
	int passthrough;      /* nothing to apply to a raw connect() */
	int alog_on;          /* this lane's calls are logged (access_log names an output) */
	int health;           /* CR_H_* parts of lib/health.c that are on; 0: none (one branch) */
	uint64_t health_hash; /* the resilience settings: state survives a reload
			       * that keeps them (lib/health.c) */
	int index;
	/* set by the engine when it publishes the config */
	int id;             /* stable across reloads for the same lane name */
	uint64_t conn_hash; /* settings a pooled connection carries: a change
				   * retires the lane's old pools on reload */
};

struct cr_threadrule {
	char glob[16]; /* thread names are at most 15 bytes */
	char key[CR_KEY_MAX];
	int line;
};

struct cr_diag {
	int n; /* errors recorded (may exceed CR_MAX_DIAG; the rest are counted) */
	char msg[CR_MAX_DIAG][CR_DIAG_LEN]; /* "FILE:LINE: message; fix" */
};

struct cr_config {
	char path[1024];   /* "" for the built-in configuration */
	int log_level;     /* [global] log; -1 unset (env/default decides) */
	char metrics[256]; /* [global] metrics = 127.0.0.1:9464 | unix:PATH; "" = off */
	/* [global] access log: the lanes' defaults, and the process-wide settings */
	char access_log[CR_ALOG_SPEC_MAX]; /* "" = off */
	double access_log_sample;          /* [1] */
	long access_log_slow_ms;           /* [0] */
	int access_log_query;              /* [0] */
	int access_log_mode;               /* [0600] files created */
	int access_log_buffer;             /* [1024] records in the ring */
	struct cr_lane lanes[CR_MAX_LANES];
	int nlanes;
	int default_lane; /* index of lane "default", always present */
	struct cr_threadrule threads[CR_MAX_THREADS];
	int nthreads;
};

/* Fills *cfg with the built-in configuration: one implicit, pass-through
 * lane "default". */
/* URL schemes, by their bit in a lane's pool_schemes (docs/INTERNALS.md,
 * "Pooled schemes"): cr_scheme_names[i] is bit i; a scheme not in the table
 * is CR_SCHEME_OTHER (pooled only with `pool_schemes = *`). */
#define CR_SCHEME_HTTP          0
#define CR_SCHEME_HTTPS         1
#define CR_SCHEME_OTHER         63
#define CR_POOL_SCHEMES_DEFAULT ((1LL << CR_SCHEME_HTTP) | (1LL << CR_SCHEME_HTTPS))
#define CR_POOL_SCHEMES_ALL     (-1LL)
extern const char *const cr_scheme_names[];
extern const int cr_nschemes;
/* The bit of the scheme S[0..N) (any case), CR_SCHEME_OTHER if not known. */
int cr_scheme_bit(const char *s, size_t n);

void cr_config_builtin(struct cr_config *cfg);

/* Parses FILE into *cfg. Returns 0 when valid, -1 otherwise with every
 * problem recorded in *diag as "FILE:LINE: what is wrong; how to fix it".
 * On failure *cfg is unspecified. */
int cr_config_load_file(const char *path, struct cr_config *cfg, struct cr_diag *diag);

/* Same from a string; NAME stands for the file name in messages. */
int cr_config_load_string(const char *text, const char *name, struct cr_config *cfg,
			  struct cr_diag *diag);

/* Prints the effective lanes (every knob, defaults resolved) for
 * `connroute check`. */
void cr_config_dump(const struct cr_config *cfg, FILE *out);

/* Parses "250ms", "1s", "1.5s", "2m" (and a bare "0") into milliseconds;
 * -1 on error (a bare non-zero number is an error: the unit is required). */
long cr_parse_duration_ms(const char *s);

/* Finds a lane by name; -1 if absent. */
int cr_config_find_lane(const struct cr_config *cfg, const char *name);

/* A hash of the lane's connection settings: what a pooled connection carries
 * (socket options, TLS floor; the keys flagged in config_keys.c). Equal for
 * lanes whose connections are interchangeable; a reload that changes it
 * retires the lane's pools. */
uint64_t cr_config_lane_conn_hash(const struct cr_lane *l);

/* Parts of lib/health.c a lane turns on (cr_lane.health). */
#define CR_H_EJECT    1 /* eject_after > 0 */
#define CR_H_BREAKER  2 /* breaker_failure_ratio > 0 */
#define CR_H_THROTTLE 4 /* retry_tokens > 0 */

/* A hash of the lane's resilience keys (KEY_HEALTH in config_keys.c). */
uint64_t cr_config_lane_health_hash(const struct cr_lane *l);

#endif
