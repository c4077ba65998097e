/* connroute: shell-style globs ('*' and '?' only) for keys, thread names and
 * host names. Base layer: no state. */
#ifndef CR_GLOB_H
#define CR_GLOB_H

#include <stddef.h>

/* Does PAT match the first SLEN bytes of S? ICASE: ASCII case-insensitive. */
int cr_glob_match_n(const char *pat, const char *s, size_t slen, int icase);

/* Case-sensitive, whole S. */
int cr_glob_match(const char *pat, const char *s);

/* ASCII case-insensitive, whole S (host names). */
int cr_glob_match_icase(const char *pat, const char *s);

#endif
