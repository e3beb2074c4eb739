/* cmd_train.c - placeholder until the command is implemented. */
#include <stdio.h>

#include "cli.h"

int
cmd_train(int argc, char **argv)
{
	(void) argc;
	(void) argv;
	fprintf(stderr, "ptune: train is not implemented yet\n");
	return 1;
}
