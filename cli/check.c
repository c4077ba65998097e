/* connroute check: a config file judged as the shim judges it (the same
 * trust rules, lib/trust.c, for the user the service runs as, and the same
 * parser), its effective lanes printed as valid input, mistakes the parser
 * cannot call errors reported as warnings (an empty file, a lane that can
 * never match), and --key: which lane a key selects and why, with the
 * shim's own matching code (lib/lane.c, lib/key.c). */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "glob.h"
#include "key.h"
#include "lane.h"
#include "trust.h"

#define STDIN_MAX (1u << 20)

static void check_usage(FILE *f)
{
	fputs("usage: connroute check [OPTIONS] [FILE...]\n"
	      "Validate connroute config files with the shim's own parser and trust rules, and\n"
	      "print each one's effective lanes (valid input: feed it back, it means the same).\n"
	      "FILE '-' reads standard input (no trust rules: a file is judged where it is).\n"
	      "No FILE: the file a program started here would read: $CONNROUTE_CONFIG, "
	      "else\n" CONNROUTE_SYSCONF " if it exists.\n"
	      "\n"
	      "  --as-root           judge the trust rules for a service that runs as root\n"
	      "  --as-user           judge them for a user other than root (the default unless\n"
	      "                      connroute itself runs as root)\n"
	      "  -q, --quiet         print problems and warnings only, not the effective lanes\n"
	      "  -k, --key KEY       explain which lane KEY (as set by connroute_set_key or\n"
	      "                      CONNROUTE_KEY) selects, and the rule that matched\n"
	      "      --host HOST:PORT  the destination, for lanes with hosts = (an address for a\n"
	      "                      raw connect(); a name matches libcurl transfers only)\n"
	      "      --thread NAME   the thread's name, for [threads] rules (a key from --key\n"
	      "                      wins over them, as connroute_set_key's does)\n"
	      "      --lanes         print the lane names only, one a line\n"
	      "  -c, --config FILE   the same as FILE\n"
	      "  -h, --help          this text\n"
	      "\n"
	      "Exit status: 0 every file is valid and would be read (warnings allowed), 1 some\n"
	      "file is invalid or refused (a program would run unrouted), 2 bad usage.\n",
	      f);
}

struct opts {
	uid_t as;
	int as_set, quiet, lanes;
	const char *key, *host, *thread;
};

/* ---------------------------------------------------------------- warnings */

/* Does every string that Q matches also match P? (Sufficient, not
 * necessary: a 'no' may still be a cover, never the other way round.) */
static int glob_covers(const char *p, const char *q)
{
	if (*p == '*')
		return glob_covers(p + 1, q) || (*q && glob_covers(p, q + 1));
	if (!*q)
		return !*p;
	if (!*p || *q == '*')
		return 0;
	if (*p == '?' || *p == *q)
		return (*p != '?' || *q != '*') && glob_covers(p + 1, q + 1);
	return 0;
}

static int lane_ok_for_all_hosts(const struct cr_lane *l)
{
	if (l->nhosts == 0)
		return 1;
	for (int i = 0; i < l->nhosts; i++)
		if (l->hosts[i].family == AF_UNSPEC && l->hosts[i].port == 0 &&
		    (!l->hosts[i].name[0] || !strcmp(l->hosts[i].name, "*")))
			return 1;
	return 0;
}

/* The globs of L (its name when it has no match =). */
static int globs_of(const struct cr_lane *l, const char **out)
{
	if (l->nmatch == 0) {
		out[0] = l->name;
		return 1;
	}
	for (int i = 0; i < l->nmatch; i++)
		out[i] = l->match[i];
	return l->nmatch;
}

/* A lane that can never be selected: an earlier lane, for every destination,
 * takes every key it could match. */
static int warn_shadowed(const struct cr_config *cfg, const char *name)
{
	int n = 0;
	for (int j = 0; j < cfg->nlanes; j++) {
		const struct cr_lane *b = &cfg->lanes[j];
		const char *bg[CR_MAX_MATCH];
		int nb = j == cfg->default_lane ? 0 : globs_of(b, bg);
		for (int i = 0; i < cfg->nlanes; i++) {
			const struct cr_lane *a = &cfg->lanes[i];
			const char *ag[CR_MAX_MATCH];
			if (i == j || i == cfg->default_lane || (i > j && j != cfg->default_lane) ||
			    !lane_ok_for_all_hosts(a))
				continue;
			int na = globs_of(a, ag), all = 1;
			if (j == cfg->default_lane) { /* the fallback: dead if A takes every key */
				all = 0;
				for (int x = 0; x < na && !all; x++)
					all = !strcmp(ag[x], "*");
				if (!all || b->implicit)
					continue;
			}
			for (int y = 0; y < nb && all; y++) {
				int cov = 0;
				for (int x = 0; x < na && !cov; x++)
					cov = glob_covers(ag[x], bg[y]);
				all = cov;
			}
			if (!all)
				continue;
			if (j == cfg->default_lane)
				fprintf(stderr,
					"%s:%d: warning: [lane default] is never selected: [lane "
					"%s] "
					"(line %d) takes every key; narrow its match\n",
					name, b->line, a->name, a->line);
			else
				fprintf(stderr,
					"%s:%d: warning: [lane %s] is never selected: [lane %s] "
					"(line "
					"%d) comes first and takes every key it matches%s; move "
					"[lane %s] "
					"before it, or narrow [lane %s]'s match\n",
					name, b->line, b->name, a->name, a->line,
					a->nhosts ? ", for every destination" : "", b->name,
					a->name);
			n++;
			break;
		}
	}
	return n;
}

/* [threads] rules whose key no lane takes: the thread ends in lane default. */
static int warn_thread_keys(const struct cr_config *cfg, const char *name)
{
	int n = 0;
	for (int i = 0; i < cfg->nthreads; i++) {
		int unmatched = 0;
		struct cr_dest any = {.family = AF_UNSPEC};
		cr_lane_select(cfg, cfg->threads[i].key, &any, &unmatched);
		if (!unmatched || !strcmp(cfg->threads[i].key, "default"))
			continue;
		/* a lane with hosts = may still take it for some destinations */
		int maybe = 0;
		size_t kl = cr_key_flags(cfg->threads[i].key, NULL);
		for (int l = 0; l < cfg->nlanes && !maybe; l++) {
			const char *g[CR_MAX_MATCH];
			int ng = l == cfg->default_lane ? 0 : globs_of(&cfg->lanes[l], g);
			for (int x = 0; x < ng && !maybe; x++)
				maybe = cr_glob_match_n(g[x], cfg->threads[i].key, kl, 0);
		}
		if (maybe)
			continue;
		fprintf(stderr,
			"%s:%d: warning: [threads] %s = %s: no lane matches this key, so these "
			"threads use lane default; check the lanes' match =\n",
			name, cfg->threads[i].line, cfg->threads[i].glob, cfg->threads[i].key);
		n++;
	}
	return n;
}

static int is_empty(const struct cr_config *cfg)
{
	return cfg->nlanes == 1 && cfg->lanes[0].implicit && cfg->nthreads == 0 &&
	       cfg->log_level < 0 && !cfg->metrics[0];
}

/* ----------------------------------------------------------------- --key */

static void print_globs(const struct cr_lane *l)
{
	if (l->nmatch == 0) {
		printf("the lane's name '%s'", l->name);
		return;
	}
	for (int i = 0; i < l->nmatch; i++)
		printf("%s'%s'", i ? ", " : "", l->match[i]);
}

static void print_rule(const struct cr_hostrule *r)
{
	char a[INET6_ADDRSTRLEN];
	if (r->family == AF_UNSPEC) {
		printf("%s", r->name[0] ? r->name : "*");
	} else {
		inet_ntop(r->family, r->addr, a, sizeof(a));
		printf("%s%s%s/%d", r->family == AF_INET6 ? "[" : "", a,
		       r->family == AF_INET6 ? "]" : "", r->prefix);
	}
	if (r->port)
		printf(":%d", r->port);
}

/* HOST:PORT, [V6]:PORT, or HOST alone (port 0: rules with a port do not
 * match). An address literal fills the address and the name, as a libcurl
 * transfer to it has both. */
static int parse_dest(const char *s, struct cr_dest *d, char *host, size_t hn)
{
	const char *colon = NULL, *h = s;
	size_t hl;
	memset(d, 0, sizeof(*d));
	if (s[0] == '[') {
		const char *e = strchr(s, ']');
		if (!e)
			return -1;
		h = s + 1;
		hl = (size_t)(e - h);
		colon = e[1] == ':' ? e + 1 : NULL;
		if (e[1] && !colon)
			return -1;
	} else {
		colon = strrchr(s, ':');
		if (colon && strchr(s, ':') != colon)
			colon = NULL; /* a bare IPv6 address */
		hl = colon ? (size_t)(colon - s) : strlen(s);
	}
	if (hl == 0 || hl >= hn)
		return -1;
	memcpy(host, h, hl);
	host[hl] = '\0';
	if (colon) {
		char *end;
		long p = strtol(colon + 1, &end, 10);
		if (*end || p < 1 || p > 65535)
			return -1;
		d->port = (uint16_t)p;
	}
	d->host = host;
	if (inet_pton(AF_INET, host, d->addr) == 1)
		d->family = AF_INET;
	else if (inet_pton(AF_INET6, host, d->addr) == 1)
		d->family = AF_INET6;
	else
		d->family = AF_UNSPEC;
	return 0;
}

static int explain(const struct cr_config *cfg, const char *name, const struct opts *o)
{
	struct cr_dest d, *dp = NULL;
	char host[CR_HOST_MAX];
	if (o->host) {
		if (parse_dest(o->host, &d, host, sizeof(host)) != 0) {
			fprintf(stderr,
				"connroute check: --host %s: use HOST:PORT, IP:PORT or "
				"[IPv6]:PORT\n",
				o->host);
			return CLI_USAGE;
		}
		dp = &d;
	}
	/* The key as the shim resolves it: the API key (--key), else a thread
	 * rule for the thread's name, else the process default. */
	cr_key_set(NULL);
	cr_key_set_default("default");
	if (o->thread)
		prctl(PR_SET_NAME, o->thread, 0, 0, 0);
	const char *why = NULL;
	int rule = -1;
	if (o->thread) {
		char tn[17] = {0};
		prctl(PR_GET_NAME, tn, 0, 0, 0);
		for (int i = 0; i < cfg->nthreads && rule < 0; i++)
			if (cr_glob_match(cfg->threads[i].glob, tn))
				rule = i;
	}
	if (o->key)
		cr_key_set(o->key);
	const char *key = cr_key_resolve(cfg);
	char whybuf[256];
	if (o->key) {
		why = "--key";
	} else if (rule >= 0) {
		snprintf(whybuf, sizeof(whybuf), "[threads] %s = %s, line %d, for thread '%s'",
			 cfg->threads[rule].glob, cfg->threads[rule].key, cfg->threads[rule].line,
			 o->thread);
		why = whybuf;
	} else {
		why = o->thread ? "no [threads] rule matches the thread: the process default"
				: "the process default";
	}
	int unmatched = 0;
	const struct cr_lane *sel = cr_lane_select(cfg, key, dp, &unmatched);

	printf("%s: key '%s' (%s)", name, key, why);
	if (dp)
		printf(", destination %s", o->host);
	printf("\n");
	if (o->key && rule >= 0)
		printf("  note: a key set by connroute_set_key wins over [threads] %s = %s (line "
		       "%d); "
		       "from CONNROUTE_KEY it would not\n",
		       cfg->threads[rule].glob, cfg->threads[rule].key, cfg->threads[rule].line);
	size_t klen = cr_key_flags(key, NULL);
	for (int i = 0; i < cfg->nlanes; i++) {
		const struct cr_lane *l = &cfg->lanes[i];
		if (i == cfg->default_lane)
			continue;
		printf("  [lane %s] line %d: ", l->name, l->line);
		const char *hit = NULL;
		if (l->nmatch == 0)
			hit = strlen(l->name) == klen && !memcmp(l->name, key, klen) ? l->name
										     : NULL;
		for (int g = 0; g < l->nmatch && !hit; g++)
			if (cr_glob_match_n(l->match[g], key, klen, 0))
				hit = l->match[g];
		if (!hit) {
			printf("no: the key matches none of ");
			print_globs(l);
			printf("\n");
			continue;
		}
		int hrule = -1;
		for (int h = 0; h < l->nhosts && hrule < 0; h++)
			if (dp && cr_hostrule_match(&l->hosts[h], dp))
				hrule = h;
		if (l->nhosts && hrule < 0) {
			printf("no: the key matches '%s', but %s", hit,
			       dp ? "the destination matches no hosts = rule ("
				  : "no --host given for hosts = (");
			for (int h = 0; h < l->nhosts; h++) {
				printf("%s", h ? ", " : "");
				print_rule(&l->hosts[h]);
			}
			printf(")\n");
			continue;
		}
		printf("YES: the key matches '%s'", hit);
		if (hrule >= 0) {
			printf(" and the destination matches hosts rule '");
			print_rule(&l->hosts[hrule]);
			printf("'");
		} else {
			printf(", any destination");
		}
		printf("\n");
		if (l != sel) /* not reached: the same code chose */
			fprintf(stderr,
				"connroute check: internal: explanation and selection differ\n");
		break;
	}
	if (unmatched) {
		const struct cr_lane *def = &cfg->lanes[cfg->default_lane];
		printf("  [lane default]%s: YES: no other lane takes the key%s\n",
		       def->implicit ? " (implicit)" : "",
		       strcmp(key, "default") ? " (counted in connroute_unmatched_keys_total, "
						"and logged once at info)"
					      : "");
	}
	printf("lane: %s%s\n", sel->name, sel->passthrough ? " (pass-through for connect())" : "");
	return CLI_OK;
}

/* ------------------------------------------------------------------ files */

static int read_stdin(char **out)
{
	size_t n = 0, cap = 0;
	char *buf = NULL;
	for (;;) {
		if (cap - n < 4096) {
			cap = cap ? cap * 2 : 65536;
			if (cap > STDIN_MAX + 4096) {
				free(buf);
				return -1;
			}
			char *q = realloc(buf, cap);
			if (!q) {
				free(buf);
				return -1;
			}
			buf = q;
		}
		size_t k = fread(buf + n, 1, cap - n - 1, stdin);
		n += k;
		if (k == 0)
			break;
	}
	buf[n] = '\0';
	*out = buf;
	return 0;
}

static const char *judged_for(uid_t as)
{
	static char b[64];
	if (as == 0)
		return "as root: the ownership and mode rules applied";
	snprintf(b, sizeof(b), "as uid %u, not root", (unsigned)as);
	return b;
}

static int check_one(const char *file, int origin, const struct opts *o)
{
	struct cr_config *cfg = calloc(1, sizeof(*cfg));
	struct cr_diag *diag = calloc(1, sizeof(*diag));
	const char *name = file;
	int rc = CLI_FAIL, loaded;
	if (!cfg || !diag)
		goto out;
	if (!strcmp(file, "-")) {
		char *text;
		name = "<stdin>";
		if (read_stdin(&text) != 0) {
			fprintf(stderr, "%s: larger than %u KiB or unreadable\n", name,
				STDIN_MAX / 1024);
			goto out;
		}
		loaded = cr_config_load_string(text, name, cfg, diag);
		free(text);
	} else {
		char why[CR_DIAG_LEN];
		int fd = cr_config_open_trusted_as(file, o->as, origin, why, sizeof(why));
		if (fd < 0) {
			fprintf(stderr, "%s\n", why);
			fprintf(stderr, "%s: refused (judged %s); a program would run unrouted\n",
				file, judged_for(o->as));
			goto out;
		}
		close(fd);
		loaded = cr_config_load_file(file, cfg, diag);
	}
	if (loaded != 0) {
		int shown = diag->n < CR_MAX_DIAG ? diag->n : CR_MAX_DIAG;
		for (int i = 0; i < shown; i++)
			fprintf(stderr, "%s\n", diag->msg[i]);
		if (diag->n > shown)
			fprintf(stderr, "... and %d more\n", diag->n - shown);
		fprintf(stderr,
			"%s: %d problem%s; a program run with this file would run unrouted\n", name,
			diag->n, diag->n == 1 ? "" : "s");
		goto out;
	}
	rc = CLI_OK;
	if (o->lanes) {
		for (int i = 0; i < cfg->nlanes; i++)
			printf("%s\n", cfg->lanes[i].name);
		goto out;
	}
	int warnings = 0;
	if (is_empty(cfg)) {
		fprintf(stderr,
			"%s: warning: the file sets nothing: every connection passes through "
			"unchanged (one built-in lane, default)\n",
			name);
		warnings++;
	}
	warnings += warn_shadowed(cfg, name);
	warnings += warn_thread_keys(cfg, name);
	if (o->key || o->thread) {
		rc = explain(cfg, name, o);
		goto out;
	}
	if (!o->quiet)
		cr_config_dump(cfg, stdout);
	fflush(stdout);
	if (strcmp(file, "-"))
		fprintf(stderr, "%s: OK (judged %s)%s%s\n", name, judged_for(o->as),
			warnings ? "; warnings above" : "",
			o->as != 0 && !o->as_set
				? "; --as-root judges it for a service that runs as root"
				: "");
	else
		fprintf(stderr, "%s: OK%s\n", name, warnings ? "; warnings above" : "");
out:
	free(cfg);
	free(diag);
	return rc;
}

int cr_cli_check(int argc, char **argv)
{
	enum { O_AS_ROOT = 256, O_AS_USER, O_HOST, O_THREAD, O_LANES };
	static const struct option longs[] = {
		{"as-root", no_argument, 0, O_AS_ROOT}, {"as-user", no_argument, 0, O_AS_USER},
		{"quiet", no_argument, 0, 'q'},         {"key", required_argument, 0, 'k'},
		{"host", required_argument, 0, O_HOST}, {"thread", required_argument, 0, O_THREAD},
		{"lanes", no_argument, 0, O_LANES},     {"help", no_argument, 0, 'h'},
		{"config", required_argument, 0, 'c'},  {0, 0, 0, 0},
	};
	struct opts o = {.as = geteuid()};
	int c;
	opterr = 0;
	optind = 1;
	const char *files[64];
	int nfiles = 0;
	while ((c = getopt_long(argc, argv, "hqk:c:", longs, NULL)) != -1) {
		switch (c) {
		case 'c': /* --config FILE: the same as FILE, as `run` spells it */
			if (nfiles < 64)
				files[nfiles++] = optarg;
			break;
		case 'h': check_usage(stdout); return CLI_OK;
		case 'q': o.quiet = 1; break;
		case 'k':
			if (cr_key_check(optarg) != 0) {
				fprintf(stderr,
					"connroute check: --key '%s' is not a valid key; use 1-127 "
					"characters of A-Za-z0-9._~:/@=- (e.g. "
					"payments/critical)\n",
					optarg);
				return CLI_USAGE;
			}
			o.key = optarg;
			break;
		case O_AS_ROOT:
			o.as = 0;
			o.as_set = 1;
			break;
		case O_AS_USER:
			o.as = geteuid() ? geteuid()
					 : 65534; /* nobody: only the rules for everyone */
			o.as_set = 1;
			break;
		case O_HOST: o.host = optarg; break;
		case O_THREAD: o.thread = optarg; break;
		case O_LANES: o.lanes = 1; break;
		default: return cr_cli_bad_option("check", argv, optind, optopt);
		}
	}
	if (o.host && !o.key && !o.thread) {
		fprintf(stderr, "connroute check: --host needs --key or --thread\n");
		return CLI_USAGE;
	}
	int rc = CLI_OK, origin;
	for (int i = optind; i < argc && nfiles < 64; i++)
		files[nfiles++] = argv[i];
	if (nfiles == 0) {
		const char *env = getenv("CONNROUTE_CONFIG");
		const char *path = cr_cli_config_path(env, env != NULL, &origin);
		if (!path[0]) {
			fprintf(stderr,
				"connroute check: no FILE, CONNROUTE_CONFIG is %s and %s does not "
				"exist: a program started here runs with the built-in pass-through "
				"lane; give a FILE\n",
				env ? "empty" : "unset", CONNROUTE_SYSCONF);
			return CLI_USAGE;
		}
		fprintf(stderr, "connroute check: %s (from %s)\n", path,
			origin == CR_TRUST_SYSCONF ? "the system default" : "CONNROUTE_CONFIG");
		return check_one(path, origin, &o);
	}
	for (int i = 0; i < nfiles; i++) {
		int r = check_one(files[i], CR_TRUST_ARG, &o);
		if (r > rc)
			rc = r;
	}
	return rc;
}
