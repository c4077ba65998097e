/* connroute(1): the commands that live outside cli/connroute.c. */
#ifndef CR_CLI_H
#define CR_CLI_H

/* `connroute stats [PID | ADDRESS] [--watch [SECS]] [--count N] [--raw]` */
int cr_cli_stats(int argc, char **argv);
/* `connroute reload PID | ADDRESS` */
int cr_cli_reload(int argc, char **argv);

/* `connroute tail PID | PATH [--slow] [-n N] [--lane NAME]` (cli/tail.c) */
int cr_cli_tail(int argc, char **argv);

#endif
