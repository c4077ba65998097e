/* earlyprog: prints what hooked calls returned in a library constructor that
 * runs before libconnroute's (tests/progs/early/libearly.c), then the same
 * probe from main(), after every constructor. */
#include <stddef.h>
#include <stdio.h>

void early_probe(char *buf, size_t n, const char *who);
const char *early_ctor_output(void);

int main(void)
{
	static char out[4096];
	early_probe(out, sizeof(out), "main");
	fputs(early_ctor_output(), stdout);
	fputs(out, stdout);
	return 0;
}
