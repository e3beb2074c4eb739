/* cmd_evaluate.c - placeholder until the command is implemented. */
#include <stdio.h>

#include "cli.h"

int
cmd_evaluate(int argc, char **argv)
{
	(void) argc;
	(void) argv;
	fprintf(stderr, "ptune: evaluate is not implemented yet\n");
	return 1;
}
