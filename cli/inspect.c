/* connroute run / doctor: what LD_PRELOAD can and cannot reach in a program,
 * read from its file before it runs (docs/INTERNALS.md, "Out of reach"):
 *   - the ELF class and machine (a 64-bit shim is never loaded into a
 *     32-bit process), the program interpreter (none: static; musl's: the
 *     glibc-built shim does not load);
 *   - a Go build id or buildinfo (Go makes its own system calls);
 *   - setuid/setgid bits and file capabilities that start secure execution
 *     for this user (the loader then drops a preload given by path, and the
 *     shim ignores CONNROUTE_*);
 *   - the needed-library graph, resolved like the loader does (RPATH,
 *     LD_LIBRARY_PATH, RUNPATH, ld.so.conf, the default directories): libc,
 *     and libcurl with the object that needs it;
 *   - PHP, whose extensions are loaded with RTLD_DEEPBIND (reached by the
 *     shim's rebinding: reported, not refused).
 * Only this file's parsing runs in the CLI; nothing here is in the shim. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "cli.h"

#define MAX_OBJS 256
#define MAX_DIRS 64

#if defined(__x86_64__)
#define CR_MACHINE EM_X86_64
#elif defined(__aarch64__)
#define CR_MACHINE EM_AARCH64
#else
#error "connroute's ELF inspection knows x86_64 and aarch64"
#endif

struct elfview {
	const unsigned char *p;
	size_t n;
};

static int in_file(const struct elfview *v, uint64_t off, uint64_t len)
{
	return off <= v->n && len <= v->n - off;
}

static const Elf64_Ehdr *ehdr(const struct elfview *v)
{
	if (v->n < sizeof(Elf64_Ehdr) || memcmp(v->p, ELFMAG, SELFMAG) ||
	    v->p[EI_CLASS] != ELFCLASS64)
		return NULL;
	const Elf64_Ehdr *e = (const Elf64_Ehdr *)(const void *)v->p;
	if (e->e_phentsize != sizeof(Elf64_Phdr) ||
	    !in_file(v, e->e_phoff, (uint64_t)e->e_phnum * sizeof(Elf64_Phdr)))
		return NULL;
	return e;
}

static const Elf64_Phdr *phdr(const struct elfview *v, int i)
{
	const Elf64_Ehdr *e = (const Elf64_Ehdr *)(const void *)v->p;
	return (const Elf64_Phdr *)(const void *)(v->p + e->e_phoff +
						  (size_t)i * sizeof(Elf64_Phdr));
}

/* A virtual address to a file offset, through the PT_LOAD segments. */
static int vaddr_off(const struct elfview *v, uint64_t va, uint64_t *off)
{
	const Elf64_Ehdr *e = (const Elf64_Ehdr *)(const void *)v->p;
	for (int i = 0; i < e->e_phnum; i++) {
		const Elf64_Phdr *ph = phdr(v, i);
		if (ph->p_type == PT_LOAD && va >= ph->p_vaddr && va - ph->p_vaddr < ph->p_filesz) {
			*off = ph->p_offset + (va - ph->p_vaddr);
			return 0;
		}
	}
	return -1;
}

static int map_file(const char *path, struct elfview *v)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0) {
		close(fd);
		errno = EINVAL;
		return -1;
	}
	void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return -1;
	v->p = p;
	v->n = (size_t)st.st_size;
	return 0;
}

static void unmap(struct elfview *v)
{
	if (v->p)
		munmap((void *)v->p, v->n);
	v->p = NULL;
}

/* The dynamic section's strings: NEEDED names, RPATH, RUNPATH. */
struct dyn {
	const char *needed[64];
	int nneeded;
	const char *rpath, *runpath;
};

static void read_dynamic(const struct elfview *v, struct dyn *d)
{
	const Elf64_Ehdr *e = (const Elf64_Ehdr *)(const void *)v->p;
	memset(d, 0, sizeof(*d));
	for (int i = 0; i < e->e_phnum; i++) {
		const Elf64_Phdr *ph = phdr(v, i);
		if (ph->p_type != PT_DYNAMIC || !in_file(v, ph->p_offset, ph->p_filesz))
			continue;
		const Elf64_Dyn *dy = (const Elf64_Dyn *)(const void *)(v->p + ph->p_offset);
		size_t n = ph->p_filesz / sizeof(Elf64_Dyn);
		uint64_t strtab = 0, strsz = 0, off;
		for (size_t k = 0; k < n && dy[k].d_tag != DT_NULL; k++) {
			if (dy[k].d_tag == DT_STRTAB)
				strtab = dy[k].d_un.d_ptr;
			else if (dy[k].d_tag == DT_STRSZ)
				strsz = dy[k].d_un.d_val;
		}
		if (!strtab || vaddr_off(v, strtab, &off) != 0 || !in_file(v, off, strsz) ||
		    !strsz || v->p[off + strsz - 1] != '\0')
			return;
		const char *s = (const char *)v->p + off;
		for (size_t k = 0; k < n && dy[k].d_tag != DT_NULL; k++) {
			uint64_t x = dy[k].d_un.d_val;
			if (x >= strsz)
				continue;
			if (dy[k].d_tag == DT_NEEDED && d->nneeded < 64)
				d->needed[d->nneeded++] = s + x;
			else if (dy[k].d_tag == DT_RPATH)
				d->rpath = s + x;
			else if (dy[k].d_tag == DT_RUNPATH)
				d->runpath = s + x;
		}
		return;
	}
}

/* A Go program: the build id note, or a .go.buildinfo / .note.go.buildid
 * section. */
static int is_go(const struct elfview *v)
{
	const Elf64_Ehdr *e = (const Elf64_Ehdr *)(const void *)v->p;
	for (int i = 0; i < e->e_phnum; i++) {
		const Elf64_Phdr *ph = phdr(v, i);
		if (ph->p_type != PT_NOTE || !in_file(v, ph->p_offset, ph->p_filesz))
			continue;
		size_t o = 0;
		while (o + 12 <= ph->p_filesz) {
			const uint32_t *nh = (const uint32_t *)(const void *)(v->p + ph->p_offset +
									      o);
			uint32_t nsz = nh[0], dsz = nh[1], type = nh[2];
			size_t next = 12 + ((nsz + 3u) & ~3u) + ((dsz + 3u) & ~3u);
			if (next > ph->p_filesz - o)
				break;
			if (nsz == 4 && type == 4 &&
			    !memcmp(v->p + ph->p_offset + o + 12, "Go\0\0", 4))
				return 1;
			o += next;
		}
	}
	if (e->e_shentsize != sizeof(Elf64_Shdr) || e->e_shstrndx >= e->e_shnum ||
	    !in_file(v, e->e_shoff, (uint64_t)e->e_shnum * sizeof(Elf64_Shdr)))
		return 0;
	const Elf64_Shdr *sh = (const Elf64_Shdr *)(const void *)(v->p + e->e_shoff);
	const Elf64_Shdr *ss = &sh[e->e_shstrndx];
	if (!in_file(v, ss->sh_offset, ss->sh_size))
		return 0;
	for (int i = 0; i < e->e_shnum; i++) {
		uint64_t nm = sh[i].sh_name;
		if (nm >= ss->sh_size)
			continue;
		const char *name = (const char *)v->p + ss->sh_offset + nm;
		size_t left = ss->sh_size - nm;
		if (!strncmp(name, ".go.buildinfo", left) ||
		    !strncmp(name, ".note.go.buildid", left))
			return 1;
	}
	return 0;
}

/* ------------------------------------------------ the loader's search path */

struct dirs {
	char *d[MAX_DIRS];
	int n;
};

static void add_dir(struct dirs *ds, const char *s, size_t n, const char *origin)
{
	char buf[PATH_MAX];
	if (n == 0 || ds->n >= MAX_DIRS || n >= sizeof(buf))
		return;
	if (n >= 7 && !strncmp(s, "$ORIGIN", 7)) {
		if (snprintf(buf, sizeof(buf), "%s%.*s", origin, (int)(n - 7), s + 7) >=
		    (int)sizeof(buf))
			return;
	} else if (n >= 9 && !strncmp(s, "${ORIGIN}", 9)) {
		if (snprintf(buf, sizeof(buf), "%s%.*s", origin, (int)(n - 9), s + 9) >=
		    (int)sizeof(buf))
			return;
	} else {
		memcpy(buf, s, n);
		buf[n] = '\0';
	}
	for (int i = 0; i < ds->n; i++)
		if (!strcmp(ds->d[i], buf))
			return;
	ds->d[ds->n++] = strdup(buf);
}

static void add_list(struct dirs *ds, const char *list, const char *origin)
{
	while (list && *list) {
		size_t n = strcspn(list, ":;");
		add_dir(ds, list, n, origin);
		list += n;
		if (*list)
			list++;
	}
}

static void add_conf(struct dirs *ds, const char *file, int depth)
{
	FILE *f = fopen(file, "re");
	char line[512];
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *s = line + strspn(line, " \t");
		s[strcspn(s, "#\r\n")] = '\0';
		size_t n = strlen(s);
		while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
			s[--n] = '\0';
		if (!n)
			continue;
		if (!strncmp(s, "include", 7) && (s[7] == ' ' || s[7] == '\t') && depth < 4) {
			/* `include DIR/STAR.conf`, the only form Debian uses (lib/glob.h
			 * hides the system's glob.h) */
			char *pat = s + 8 + strspn(s + 8, " \t");
			char *sl = strrchr(pat, '/');
			if (sl && !strcmp(sl, "/*.conf")) {
				*sl = '\0';
				struct dirent **ents;
				int ne = scandir(pat, &ents, NULL, alphasort);
				for (int i = 0; i < ne; i++) {
					size_t l = strlen(ents[i]->d_name);
					char inc[PATH_MAX];
					if (l > 5 && !strcmp(ents[i]->d_name + l - 5, ".conf") &&
					    snprintf(inc, sizeof(inc), "%s/%s", pat,
						     ents[i]->d_name) < (int)sizeof(inc))
						add_conf(ds, inc, depth + 1);
					free(ents[i]);
				}
				if (ne >= 0)
					free(ents);
			}
			continue;
		}
		if (s[0] == '/')
			add_dir(ds, s, n, "");
	}
	fclose(f);
}

static void free_dirs(struct dirs *ds)
{
	for (int i = 0; i < ds->n; i++)
		free(ds->d[i]);
	ds->n = 0;
}

static int find_lib(const char *name, const struct dyn *d, const char *origin, char *out, size_t n)
{
	struct dirs ds = {0};
	if (strchr(name, '/')) {
		snprintf(out, n, "%s", name);
		return access(out, R_OK);
	}
	if (!d->runpath)
		add_list(&ds, d->rpath, origin);
	add_list(&ds, getenv("LD_LIBRARY_PATH"), origin);
	add_list(&ds, d->runpath, origin);
	add_conf(&ds, "/etc/ld.so.conf", 0);
	add_list(&ds,
		 "/lib/" CONNROUTE_MULTIARCH ":/usr/lib/" CONNROUTE_MULTIARCH
		 ":/lib64:/usr/lib64:/lib:/usr/lib",
		 "");
	int rc = -1;
	for (int i = 0; i < ds.n && rc != 0; i++)
		if (snprintf(out, n, "%s/%s", ds.d[i], name) < (int)n && access(out, R_OK) == 0)
			rc = 0;
	free_dirs(&ds);
	return rc;
}

/* --------------------------------------------------------------- program */

static int resolve_prog(const char *prog, char *out, size_t n)
{
	if (strchr(prog, '/')) {
		snprintf(out, n, "%s", prog);
		return access(out, F_OK);
	}
	const char *path = getenv("PATH");
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	while (*path) {
		size_t k = strcspn(path, ":");
		if (snprintf(out, n, "%.*s%s%s", (int)k, path, k ? "/" : "", prog) < (int)n &&
		    access(out, X_OK) == 0)
			return 0;
		path += k;
		if (*path)
			path++;
	}
	errno = ENOENT;
	return -1;
}

/* setuid/setgid/capabilities: does running FILE as us start secure
 * execution (AT_SECURE)? */
static void secure_of(const char *file, const struct stat *st, struct cr_inspect *in)
{
	if ((st->st_mode & S_ISUID) && st->st_uid != getuid()) {
		in->secure = 1;
		snprintf(in->secure_why, sizeof(in->secure_why), "setuid (owner uid %u)",
			 (unsigned)st->st_uid);
	} else if ((st->st_mode & S_ISGID) && st->st_gid != getgid()) {
		in->secure = 1;
		snprintf(in->secure_why, sizeof(in->secure_why), "setgid (group %u)",
			 (unsigned)st->st_gid);
	} else if (getuid() != 0 && getxattr(file, "security.capability", NULL, 0) > 0) {
		in->secure = 1;
		snprintf(in->secure_why, sizeof(in->secure_why),
			 "file capabilities (getcap shows them)");
	}
}

/* The needed graph, breadth first: libc, libcurl (and who needs it). */
static void walk_needed(const struct elfview *prog, const char *progpath, struct cr_inspect *in)
{
	char *objs[MAX_OBJS];
	int nobj = 0;
	objs[nobj++] = strdup(progpath);
	for (int i = 0; i < nobj; i++) {
		struct elfview v = {0};
		const struct elfview *use = prog;
		if (i > 0) {
			if (map_file(objs[i], &v) != 0 || !ehdr(&v)) {
				unmap(&v);
				continue;
			}
			use = &v;
		}
		struct dyn d;
		read_dynamic(use, &d);
		char origin[PATH_MAX];
		snprintf(origin, sizeof(origin), "%s", objs[i]);
		char *sl = strrchr(origin, '/');
		if (sl)
			*sl = '\0';
		for (int k = 0; k < d.nneeded; k++) {
			const char *nm = d.needed[k];
			if (!strcmp(nm, "libc.so.6"))
				in->libc = 1;
			char path[PATH_MAX];
			if (find_lib(nm, &d, origin, path, sizeof(path)) != 0) {
				if (!in->missing[0])
					snprintf(in->missing, sizeof(in->missing), "%s", nm);
				continue;
			}
			int seen = 0;
			for (int j = 0; j < nobj && !seen; j++)
				seen = !strcmp(objs[j], path);
			if (seen || nobj >= MAX_OBJS)
				continue;
			if (!strncmp(nm, "libcurl", 7) && !in->curl) {
				in->curl = i == 0 ? 1 : 2;
				snprintf(in->curl_lib, sizeof(in->curl_lib), "%s", path);
				snprintf(in->curl_via, sizeof(in->curl_via), "%s", objs[i]);
			}
			if (strstr(nm, "libphp"))
				in->php = 1;
			objs[nobj++] = strdup(path);
		}
		unmap(&v);
	}
	in->nobjects = nobj;
	for (int i = 0; i < nobj; i++)
		free(objs[i]);
}

int cr_inspect_program(const char *prog, struct cr_inspect *in, char *err, size_t n)
{
	char path[PATH_MAX];
	memset(in, 0, sizeof(*in));
	if (resolve_prog(prog, path, sizeof(path)) != 0) {
		snprintf(err, n, "%s: %s", prog, strerror(errno));
		return -1;
	}
	/* #! scripts: the interpreter is what runs (at most 4 levels, as Linux). */
	for (int depth = 0; depth < 5; depth++) {
		char head[256] = {0};
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		ssize_t k = fd >= 0 ? read(fd, head, sizeof(head) - 1) : -1;
		if (fd >= 0)
			close(fd);
		if (k < 0) {
			snprintf(err, n, "%s: %s", path, strerror(errno));
			return -1;
		}
		if (k < 2 || head[0] != '#' || head[1] != '!')
			break;
		char *s = head + 2 + strspn(head + 2, " \t");
		s[strcspn(s, " \t\r\n")] = '\0';
		if (!in->script[0])
			snprintf(in->script, sizeof(in->script), "%s", path);
		if (!*s) {
			snprintf(err, n, "%s: an empty #! line", path);
			return -1;
		}
		char interp[PATH_MAX];
		snprintf(interp, sizeof(interp), "%s", s);
		/* #!/usr/bin/env NAME: NAME from PATH */
		if (!strcmp(interp, "/usr/bin/env") || !strcmp(interp, "/bin/env")) {
			char *nm = head + 2 + strspn(head + 2, " \t");
			nm += strlen(nm) + 1;
			nm += strspn(nm, " \t");
			nm[strcspn(nm, " \t\r\n")] = '\0';
			if (*nm && resolve_prog(nm, interp, sizeof(interp)) != 0) {
				snprintf(err, n, "%s: its interpreter %s is not in PATH", path, nm);
				return -1;
			}
		}
		snprintf(path, sizeof(path), "%s", interp);
	}
	char real[PATH_MAX];
	if (realpath(path, real))
		snprintf(path, sizeof(path), "%s", real);
	snprintf(in->path, sizeof(in->path), "%s", path);
	struct stat st;
	if (stat(path, &st) != 0) {
		snprintf(err, n, "%s: %s", path, strerror(errno));
		return -1;
	}
	secure_of(path, &st, in);
	if (strstr(path, "php"))
		in->php = 1;
	struct elfview v = {0};
	if (map_file(path, &v) != 0) {
		snprintf(err, n, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (v.n >= SELFMAG && !memcmp(v.p, ELFMAG, SELFMAG)) {
		in->elf = 1;
		const Elf64_Ehdr *e = ehdr(&v);
		if (!e || e->e_machine != CR_MACHINE)
			in->wrong_class = 1; /* 32-bit, or another machine's */
		if (e && !in->wrong_class) {
			in->is_static = 1;
			for (int i = 0; i < e->e_phnum; i++) {
				const Elf64_Phdr *ph = phdr(&v, i);
				if (ph->p_type == PT_INTERP &&
				    in_file(&v, ph->p_offset, ph->p_filesz) && ph->p_filesz > 1) {
					in->is_static = 0;
					size_t l = ph->p_filesz < sizeof(in->interp)
							   ? ph->p_filesz
							   : sizeof(in->interp) - 1;
					memcpy(in->interp, v.p + ph->p_offset, l);
					in->interp[l] = '\0';
				}
			}
			in->foreign_libc = !in->is_static && !strstr(in->interp, "ld-linux");
			in->go = is_go(&v);
			if (!in->is_static)
				walk_needed(&v, path, in);
		}
	}
	unmap(&v);
	return 0;
}

int cr_inspect_report(const struct cr_inspect *in, FILE *out, const char *pre)
{
	int bad = 0;
	if (!in->elf) {
		fprintf(out, "%s%s is not an ELF program: cannot tell what it links\n", pre,
			in->path);
		return 0;
	}
	if (in->wrong_class) {
		fprintf(out,
			"%s%s is not a 64-bit program of this machine: the shim cannot be loaded "
			"into it (the loader ignores it), nothing is routed\n",
			pre, in->path);
		return 1;
	}
	if (in->secure) {
		fprintf(out,
			"%s%s runs with secure execution for you (%s): the loader drops a preload "
			"given by path and connroute ignores CONNROUTE_*: nothing is routed\n",
			pre, in->path, in->secure_why);
		bad++;
	}
	if (in->go) {
		fprintf(out,
			"%s%s is a Go program: Go makes its own system calls, LD_PRELOAD reaches "
			"none of them: nothing is routed\n",
			pre, in->path);
		bad++;
	} else if (in->is_static) {
		fprintf(out,
			"%s%s is statically linked: there is no dynamic loader to preload into: "
			"nothing is routed\n",
			pre, in->path);
		bad++;
	} else if (in->foreign_libc) {
		fprintf(out,
			"%s%s uses the program interpreter %s, not glibc's: the shim (built for "
			"glibc) does not load: nothing is routed\n",
			pre, in->path, in->interp);
		bad++;
	}
	return bad;
}
