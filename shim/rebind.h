/* connroute: RTLD_DEEPBIND objects rebound to the shim (shim/rebind.c). */
#ifndef CR_SHIM_REBIND_H
#define CR_SHIM_REBIND_H

/* Called once by the constructor when the state became READY: looks up
 * what the global scope binds each name of lib/hooks.def to, rebinds the
 * objects loaded with RTLD_DEEPBIND before then, and turns rebinding on for
 * every later RTLD_DEEPBIND dlopen. */
void cr_rebind_init(void);

#endif
