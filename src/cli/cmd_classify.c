/* cmd_classify.c - placeholder until the command is implemented. */
#include <stdio.h>

#include "cli.h"

int
cmd_classify(int argc, char **argv)
{
	(void) argc;
	(void) argv;
	fprintf(stderr, "ptune: classify is not implemented yet\n");
	return 1;
}
