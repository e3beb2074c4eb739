/* cmd_explain.c - placeholder until the command is implemented. */
#include <stdio.h>

#include "cli.h"

int
cmd_explain(int argc, char **argv)
{
	(void) argc;
	(void) argv;
	fprintf(stderr, "ptune: explain is not implemented yet\n");
	return 1;
}
