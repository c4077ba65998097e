/* deephost: a host that loads a plugin the way PHP loads its extensions, with
 * dlopen(RTLD_DEEPBIND), by bare name (found through this program's RUNPATH, $ORIGIN/plug),
 * and lets it make connections (tests/progs/plug/crplug.c).
 *
 *   deephost [--lazy] [--no-deepbind] [--cycle] [--early] [--deny-mprotect-write]
 *            [--threads N] HOST PORT PATH
 *
 * --lazy: load libcrplug_lazy.so (PLT bound at first call) instead of libcrplug.so (-z now).
 * --no-deepbind: a plain dlopen (RTLD_LOCAL).
 * --cycle: load, fetch, dlclose; load the other plugin, fetch, dlclose; load the first again,
 *   fetch, dlclose: every load is a new mapping, every unloaded one is gone.
 * --deny-mprotect-write: before loading, a seccomp filter makes every mprotect() that asks
 *   for PROT_WRITE fail with EPERM (a read-only mapping that cannot be changed).
 * --early: use the handle libcrpre.so's constructor got (run with CRPRE_LOAD=1): the plugin
 *   was loaded with RTLD_DEEPBIND before any preloaded library's constructor ran.
 * Prints "load NAME ok" or "load NAME failed: DLERROR", then the plugin's lines
 * ("crplug I BODY"). Exit 0 when every load and connection worked, 1 otherwise. */
#include <dlfcn.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static int deny_mprotect_write(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mprotect, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
		BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, PROT_WRITE, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 1 /* EPERM */),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		return -1;
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

void *crpre_handle(void);
static int early;

static int run(const char *name, int flags, const char *host, int port, const char *path, int threads)
{
	void *h = early ? crpre_handle() : dlopen(name, flags);
	if (!h) {
		printf("load %s failed: %s\n", name, dlerror());
		return 0;
	}
	printf("load %s ok\n", name);
	fflush(stdout);
	int (*fetch)(const char *, int, const char *, int);
	*(void **)&fetch = dlsym(h, "plug_fetch");
	int ok = fetch && fetch(host, port, path, threads) == threads;
	dlclose(h);
	return ok;
}

int main(int argc, char **argv)
{
	int lazy = 0, deep = 1, cycle = 0, deny = 0, threads = 1, i;
	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--lazy"))
			lazy = 1;
		else if (!strcmp(argv[i], "--no-deepbind"))
			deep = 0;
		else if (!strcmp(argv[i], "--cycle"))
			cycle = 1;
		else if (!strcmp(argv[i], "--early"))
			early = 1;
		else if (!strcmp(argv[i], "--deny-mprotect-write"))
			deny = 1;
		else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
			threads = atoi(argv[++i]);
		else
			break;
	}
	if (argc - i != 3) {
		fprintf(stderr, "usage: deephost [--lazy] [--no-deepbind] [--cycle] [--early] "
				"[--deny-mprotect-write] [--threads N] HOST PORT PATH\n");
		return 2;
	}
	const char *host = argv[i], *path = argv[i + 2];
	int port = atoi(argv[i + 1]);
	if (deny && deny_mprotect_write() != 0) {
		perror("seccomp");
		return 2;
	}
	int flags = (lazy ? RTLD_LAZY : RTLD_NOW) | (deep ? RTLD_DEEPBIND : 0);
	const char *first = lazy ? "libcrplug_lazy.so" : "libcrplug.so";
	const char *second = lazy ? "libcrplug.so" : "libcrplug_lazy.so";
	int ok = run(first, flags, host, port, path, threads);
	if (cycle) {
		ok &= run(second, flags, host, port, path, threads);
		ok &= run(first, flags, host, port, path, threads);
	}
	return ok ? 0 : 1;
}
