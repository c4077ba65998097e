/* Compiled as C99 and as C++11 with -pedantic -Werror by `make test`: the
 * public header must stay clean in both. */
#include <connroute.h>

int use_header(void);
int use_header(void)
{
	int n = 0;
	CONNROUTE_WITH_KEY("a/b") {
		n += connroute_get_key() != 0;
		CONNROUTE_WITH_KEY("c/d") {
			n += connroute_set_key(0);
		}
	}
	return n;
}
