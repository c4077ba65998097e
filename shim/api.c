/* connroute: the functions behind include/connroute.h. The header reaches
 * them through weak references, so a program built with it runs unchanged
 * without the shim. They are also callable by name (dlsym, ctypes). */
#include <errno.h>

#include "engine.h"
#include "key.h"
#include "shim.h"

CR_API int connroute_shim_set_key(const char *key)
{
	if (cr_key_set(key) != 0) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}

CR_API const char *connroute_shim_get_key(void)
{
	return cr_key_resolve(cr_cfgref_current());
}

CR_API const char *connroute_shim_api_key(void)
{
	return cr_key_api();
}

CR_API int connroute_set_key(const char *key)
{
	return connroute_shim_set_key(key);
}

CR_API const char *connroute_get_key(void)
{
	return connroute_shim_get_key();
}
