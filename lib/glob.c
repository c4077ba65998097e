/* connroute: globs; see glob.h. */
#include <string.h>

#include "base.h"
#include "glob.h"

/* Iterative with single-star backtracking: linear in practice and no
 * recursion depth to worry about on untrusted patterns. */
int cr_glob_match_n(const char *p, const char *s, size_t slen, int icase)
{
	const char *star = NULL, *back = NULL;
	const char *end = s + slen;
	while (s < end) {
		if (*p == '*') {
			star = ++p;
			back = s;
		} else if (*p && (*p == '?' || (icase ? cr_lower((unsigned char)*p) ==
								cr_lower((unsigned char)*s)
						      : *p == *s))) {
			p++;
			s++;
		} else if (star) {
			p = star;
			s = ++back;
		} else {
			return 0;
		}
	}
	while (*p == '*')
		p++;
	return *p == '\0';
}

int cr_glob_match(const char *pat, const char *s)
{
	return cr_glob_match_n(pat, s, strlen(s), 0);
}

int cr_glob_match_icase(const char *pat, const char *s)
{
	return cr_glob_match_n(pat, s, strlen(s), 1);
}
