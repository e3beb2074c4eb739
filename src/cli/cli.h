/*
 * cli.h - subcommands of the `ptune` command-line tool.
 *
 * Each subcommand gets argc/argv after the subcommand name and returns the
 * process exit status (0 ok, 1 failure, 2 usage error).
 */
#ifndef PT_CLI_H
#define PT_CLI_H

#include "model.h"

int			cmd_tokenize(int argc, char **argv);
int			cmd_check(int argc, char **argv);
int			cmd_bench(int argc, char **argv);
int			cmd_train(int argc, char **argv);
int			cmd_classify(int argc, char **argv);
int			cmd_evaluate(int argc, char **argv);
int			cmd_explain(int argc, char **argv);
int			cmd_info(int argc, char **argv);
int			cmd_optcheck(int argc, char **argv);
int			cmd_generate(int argc, char **argv);
int			cmd_generate_check(int argc, char **argv);
int			cmd_bench_generate(int argc, char **argv);

/* Loads MODEL_DIR or prints the engine's error and returns NULL. */
PtModel    *cli_load_model(const char *dir);

/* The median of v[0..n) (sorts v); n >= 1. */
double		cli_median(double *v, int n);

/* Prints "ptune: <message>" for the engine's last error; returns 1. */
int			cli_engine_error(const char *what);

#endif
