/* plughost: a plugin host (issue 11, item 5). It does not link libcurl itself: it dlopens
 * each plugin given, calls its plug_run(URL, CAFILE) (tests/progs/plugins/plug.c) and
 * dlcloses it before opening the next. Prints, per plugin, where it was loaded, and
 * "same_address=1" when a plugin landed where the previous one was (the case where a
 * cache keyed by the caller's load address goes stale).
 *
 *   plughost URL CAFILE PLUGIN.so...
 * Exit status: 0 when every plug_run returned 0. */
#include <dlfcn.h>
#include <stdio.h>

typedef int (*plug_run_fn)(const char *url, const char *cafile);

int main(int argc, char **argv)
{
	const void *prev = NULL;
	int bad = 0;
	if (argc < 4) {
		fprintf(stderr, "usage: plughost URL CAFILE PLUGIN.so...\n");
		return 2;
	}
	for (int i = 3; i < argc; i++) {
		void *dl = dlopen(argv[i], RTLD_NOW | RTLD_LOCAL);
		if (!dl) {
			fprintf(stderr, "plughost: %s\n", dlerror());
			return 2;
		}
		plug_run_fn run = (plug_run_fn)dlsym(dl, "plug_run");
		Dl_info di;
		if (!run || !dladdr((void *)run, &di)) {
			fprintf(stderr, "plughost: %s: no plug_run\n", argv[i]);
			return 2;
		}
		printf("loaded %d same_address=%d\n", i - 2, prev == di.dli_fbase);
		fflush(stdout);
		prev = di.dli_fbase;
		if (run(argv[1], argv[2]) != 0)
			bad = 1;
		if (dlclose(dl) != 0) {
			fprintf(stderr, "plughost: dlclose: %s\n", dlerror());
			return 2;
		}
	}
	printf("exit\n");
	return bad;
}
