/* A NEEDED library of deephost whose constructor, when CRPRE_LOAD is set, loads
 * libcrplug.so with RTLD_DEEPBIND. A program's own libraries are initialised before a
 * preloaded one: this load happens before connroute's constructor has run. */
#include <dlfcn.h>
#include <stdlib.h>

static void *handle;

__attribute__((constructor)) static void crpre_init(void)
{
	if (getenv("CRPRE_LOAD"))
		handle = dlopen("libcrplug.so", RTLD_NOW | RTLD_DEEPBIND);
}

/* The handle the constructor got (NULL if it did not load). */
__attribute__((visibility("default"))) void *crpre_handle(void)
{
	return handle;
}
