/*
 * kernel_choice.c - chooses the fp32 kernels and oneDNN's piece sizes by
 * measurement (see kernel_choice.h).
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <oneapi/dnnl/dnnl.h>

#include "kernel_choice.h"
#include "error.h"
#include "safetensors.h"
#include "runtime.h"

#define MEASURE_ROWS 512		/* rows of a measured product: a typical batch's */
#define MAX_SHAPES 16
#define KEY_LEN 1024

/*
 * The piece sizes tried for oneDNN's products (linear_dnnl.c: run_pieces),
 * on PIECE_TRIAL_ROWS rows: 16 sequences of 128 tokens.  At that many rows
 * the largest candidate runs the product whole.
 */
static const int piece_candidates[N_PIECE_CANDIDATES] = {256, 1024, 4096};

#define PIECE_TRIAL_ROWS 2048

static struct
{
	pthread_mutex_t lock;
	PtKernel	kernel[2];		/* [backward] */
	double		gflops[2][2];	/* [kernel][backward] */
	const char *source;
	char		key[KEY_LEN];	/* of the current choice */
	/* oneDNN's piece sizes, [PtMath] (0: not chosen), and GFLOP/s per candidate */
	int			piece_rows[3];
	double		piece_gflops[3][N_PIECE_CANDIDATES];
	const char *pieces_source;
	char		pieces_key[KEY_LEN + 64];
} choice = {PTHREAD_MUTEX_INITIALIZER, {PT_KERNEL_OPENBLAS, PT_KERNEL_OPENBLAS}, {{0}}, "default", "",
{0}, {{0}}, "default", ""};

PtKernel
pt_fp32_kernel(bool backward)
{
	return choice.kernel[backward];
}

const char *
pt_kernel_name(PtKernel kernel)
{
	return kernel == PT_KERNEL_ONEDNN ? "onednn" : "openblas";
}

const char *
pt_kernels_source(void)
{
	return choice.source;
}

double
pt_kernels_gflops(PtKernel kernel, bool backward)
{
	return choice.gflops[kernel][backward];
}

const char *
pt_pieces_source(void)
{
	return choice.pieces_source;
}

int
pt_piece_candidate(int i)
{
	return piece_candidates[i];
}

double
pt_piece_gflops(PtMath math, int i)
{
	return choice.piece_gflops[math][i];
}


/* The cache file's path, or false if no directory is known. */
static bool
cache_path(char *path, size_t size, char *dir, size_t dir_size)
{
	const char *env = getenv("PTUNE_CACHE_DIR"),
			   *xdg = getenv("XDG_CACHE_HOME"),
			   *home = getenv("HOME");

	if (env && env[0])
		snprintf(dir, dir_size, "%s", env);
	else if (xdg && xdg[0])
		snprintf(dir, dir_size, "%s/ptune", xdg);
	else if (home && home[0])
		snprintf(dir, dir_size, "%s/.cache/ptune", home);
	else
		return false;
	return (size_t) snprintf(path, size, "%s/kernels.tsv", dir) < size;
}

/*
 * Calls parse(value) on each cache line "key \t value" of this key, the
 * last one last; true if parse accepted any (it checks the value's form).
 * false too if there is no readable cache.
 */
static bool
read_cache(const char *key, bool (*parse) (const char *value))
{
	char		path[4096],
				dir[4000],
				line[KEY_LEN + 256];
	FILE	   *f;
	bool		found = false;

	if (!cache_path(path, sizeof(path), dir, sizeof(dir)) || (f = fopen(path, "r")) == NULL)
		return false;
	while (fgets(line, sizeof(line), f))
	{
		char	   *tab = strchr(line, '\t');

		if (tab == NULL || (size_t) (tab - line) != strlen(key) || strncmp(line, key, tab - line) != 0)
			continue;
		found |= parse(tab + 1);
	}
	fclose(f);
	return found;
}

/* The fp32 choice's value: "forward backward" and four GFLOP/s. */
static bool
parse_fp32(const char *value)
{
	char		fwd[16],
				bwd[16];
	double		g[4];

	if (sscanf(value, "%15s %15s %lf %lf %lf %lf", fwd, bwd, &g[0], &g[1], &g[2], &g[3]) != 6)
		return false;
	choice.kernel[0] = strcmp(fwd, "onednn") == 0 ? PT_KERNEL_ONEDNN : PT_KERNEL_OPENBLAS;
	choice.kernel[1] = strcmp(bwd, "onednn") == 0 ? PT_KERNEL_ONEDNN : PT_KERNEL_OPENBLAS;
	for (int i = 0; i < 4; i++)
		choice.gflops[i / 2][i % 2] = g[i];
	return true;
}

/* The piece sizes' value: per precision (fp32, bf16, int8) the rows and each candidate's GFLOP/s. */
static bool
parse_pieces(const char *value)
{
	int			rows[3];
	double		g[3][N_PIECE_CANDIDATES];

	if (sscanf(value, "%d %lf %lf %lf %d %lf %lf %lf %d %lf %lf %lf", &rows[0], &g[0][0], &g[0][1], &g[0][2],
			   &rows[1], &g[1][0], &g[1][1], &g[1][2], &rows[2], &g[2][0], &g[2][1], &g[2][2]) != 12)
		return false;
	for (int math = 0; math < 3; math++)
		if (rows[math] < 0 || rows[math] > 1 << 20)
			return false;
	memcpy(choice.piece_rows, rows, sizeof(rows));
	memcpy(choice.piece_gflops, g, sizeof(g));
	return true;
}

/* Appends "key \t value" to the cache; failures (read-only home) are ignored. */
static void
write_cache(const char *key, const char *value)
{
	char		path[4096],
				dir[4000],
				line[KEY_LEN + 256];
	int			fd,
				len;

	if (!cache_path(path, sizeof(path), dir, sizeof(dir)))
		return;
	/* the default's parent ($HOME/.cache) may not exist yet */
	{
		char	   *slash = strrchr(dir, '/');

		if (slash && slash != dir)
		{
			*slash = '\0';
			(void) mkdir(dir, 0700);
			*slash = '/';
		}
		(void) mkdir(dir, 0700);
	}
	len = snprintf(line, sizeof(line), "%s\t%s\n", key, value);
	if (len <= 0 || (size_t) len >= sizeof(line))
		return;
	/* one write() of one line with O_APPEND: concurrent loaders do not interleave lines */
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd >= 0)
	{
		if (write(fd, line, len) != len)
		{
			/* a short write leaves a line read_cache skips */
		}
		close(fd);
	}
}

/* One timed run of a trial: false if it cannot run. */
typedef bool (*TrialRun) (const void *trial);

/*
 * Seconds of the fastest of two timed runs of a trial, after a warm-up run
 * that also builds oneDNN's primitives; 0 if it cannot run.
 */
static double
best_of_runs(TrialRun run, const void *trial)
{
	double		best = 0.0;

	for (int rep = 0; rep < 3; rep++)
	{
		double		t0 = pt_seconds();

		if (!run(trial))
			return 0.0;
		t0 = pt_seconds() - t0;
		if (rep > 0 && (best == 0.0 || t0 < best))
			best = t0;
	}
	return best;
}

/* The fp32 kernel trial: kernel over every shape, MEASURE_ROWS rows each. */
typedef struct KernelTrial
{
	PtKernel	kernel;
	bool		backward;
	const PtLinear *const *shapes;
	int			n;
	float	   *x,
			   *y;
} KernelTrial;

static bool
run_kernel_trial(const void *arg)
{
	const KernelTrial *t = arg;

	for (int i = 0; i < t->n; i++)
		if (!pt_fp32_product(t->kernel, t->backward, t->shapes[i], t->x, MEASURE_ROWS, t->y, false))
			return false;
	return true;
}

/* Seconds of the fastest of a few runs of kernel over every shape, 0 if it cannot run. */
static double
time_kernel(PtKernel kernel, bool backward, const PtLinear *const *shapes, int n, float *x, float *y)
{
	KernelTrial t = {kernel, backward, shapes, n, x, y};

	return best_of_runs(run_kernel_trial, &t);
}

/*
 * The piece-size trial: one product of PIECE_TRIAL_ROWS rows of math in the
 * pieces set.  lin is prepared for math; for bf16 and int8 the input is
 * already loaded.
 */
typedef struct PieceTrial
{
	PtMath		math;
	const PtLinear *lin;
	const float *x;
	float	   *y;
} PieceTrial;

static bool
run_piece_trial(const void *arg)
{
	const PieceTrial *t = arg;

	return t->math == PT_MATH_BF16 ? pt_bf16_matmul(t->lin, PIECE_TRIAL_ROWS, t->y, false) :
		t->math == PT_MATH_INT8 ? pt_int8_matmul(t->lin, PIECE_TRIAL_ROWS, t->y, false) :
		pt_fp32_product(PT_KERNEL_ONEDNN, false, t->lin, t->x, PIECE_TRIAL_ROWS, t->y, false);
}

/* Seconds of the fastest run of the piece trial in pieces of rows; 0 if it cannot run. */
static double
time_pieces(PtMath math, int rows, const PtLinear *lin, const float *x, float *y)
{
	PieceTrial	t = {math, lin, x, y};

	pt_dnnl_set_piece_rows(math, rows);
	return best_of_runs(run_piece_trial, &t);
}

/*
 * Measures the piece size of each precision oneDNN runs here (fp32 only if
 * oneDNN was chosen for it) on the out x in weight shape: choice.piece_rows
 * and piece_gflops.  Weights and inputs are made up: speed does not depend on
 * the values.  A precision that cannot be measured keeps 0 (the default).
 */
static void
measure_pieces(int out, int in)
{
	PtLinear	lin = {.out_dim = out, .in_dim = in, .src_dtype = PT_DTYPE_F32};
	float	   *w = malloc(sizeof(float) * out * in),
			   *x = malloc(sizeof(float) * PIECE_TRIAL_ROWS * in),
			   *y = malloc(sizeof(float) * PIECE_TRIAL_ROWS * out);
	double		flops = 2.0 * PIECE_TRIAL_ROWS * out * in;

	memset(choice.piece_rows, 0, sizeof(choice.piece_rows));
	memset(choice.piece_gflops, 0, sizeof(choice.piece_gflops));
	if (w == NULL || x == NULL || y == NULL)
		goto done;
	for (size_t i = 0; i < (size_t) out * in; i++)
		w[i] = (float) ((int) (i * 2246822519u % 2001) - 1000) * 1e-4f;
	for (size_t i = 0; i < (size_t) PIECE_TRIAL_ROWS * in; i++)
		x[i] = (float) ((int) (i * 2654435761u % 2001) - 1000) * 1e-3f;
	lin.w = lin.src = w;
	for (int math = 0; math < 3; math++)
	{
		double		best = 0.0;

		if (math == PT_MATH_FP32 && choice.kernel[0] != PT_KERNEL_ONEDNN && choice.kernel[1] != PT_KERNEL_ONEDNN)
			continue;
		if ((math == PT_MATH_BF16 && (pt_linear_prepare_bf16(&lin) != 0 ||
									  !pt_bf16_load_input(x, (size_t) PIECE_TRIAL_ROWS * in))) ||
			(math == PT_MATH_INT8 && (pt_linear_prepare_int8(&lin) != 0 ||
									  !pt_int8_load_input(x, PIECE_TRIAL_ROWS, in))))
		{
			pt_clear_error();
			continue;
		}
		for (int i = 0; i < N_PIECE_CANDIDATES; i++)
		{
			double		t = time_pieces(math, piece_candidates[i], &lin, x, y);

			choice.piece_gflops[math][i] = t > 0 ? flops / t * 1e-9 : 0.0;
			if (t > 0 && (best == 0.0 || t < best))
			{
				best = t;
				choice.piece_rows[math] = piece_candidates[i];
			}
		}
	}
done:
	pt_linear_release_bf16(&lin);
	free(w);
	free(x);
	free(y);
}

/*
 * The piece sizes of oneDNN's products (linear_dnnl.c), from the cache or a
 * timed trial on the model's largest weight shape.  key: the machine's, as
 * for the fp32 choice.
 */
static void
choose_pieces(const char *key, const PtLinear *const *lins, int n)
{
	char		pkey[KEY_LEN + 64],
				value[512];
	int			out = 0,
				in = 0,
				forced = pt_dnnl_piece_rows_forced();

	if (!pt_dnnl_supported())
		return;
	if (forced)
	{
		for (int math = 0; math < 3; math++)
			choice.piece_rows[math] = forced;
		memset(choice.piece_gflops, 0, sizeof(choice.piece_gflops));
		choice.pieces_source = "forced by PTUNE_PIECE_ROWS";
		choice.pieces_key[0] = '\0';
		goto apply;
	}
	for (int i = 0; i < n; i++)	/* bf16 models have no fp32 w: any linear counts */
		if ((double) lins[i]->out_dim * lins[i]->in_dim > (double) out * in)
			out = lins[i]->out_dim, in = lins[i]->in_dim;
	if (out == 0)
		return;
	/* the fp32 kernels are part of the key: fp32 pieces are measured only for oneDNN */
	snprintf(pkey, sizeof(pkey), "pieces %dx%d %s %s|%s", out, in, pt_kernel_name(choice.kernel[0]),
			 pt_kernel_name(choice.kernel[1]), key);
	if (strcmp(pkey, choice.pieces_key) == 0)	/* this process chose already */
		goto apply;
	if (read_cache(pkey, parse_pieces))
		choice.pieces_source = "cached";
	else
	{
		measure_pieces(out, in);
		choice.pieces_source = "measured";
		snprintf(value, sizeof(value), "%d %.1f %.1f %.1f %d %.1f %.1f %.1f %d %.1f %.1f %.1f",
				 choice.piece_rows[0], choice.piece_gflops[0][0], choice.piece_gflops[0][1], choice.piece_gflops[0][2],
				 choice.piece_rows[1], choice.piece_gflops[1][0], choice.piece_gflops[1][1], choice.piece_gflops[1][2],
				 choice.piece_rows[2], choice.piece_gflops[2][0], choice.piece_gflops[2][1], choice.piece_gflops[2][2]);
		write_cache(pkey, value);
	}
	snprintf(choice.pieces_key, sizeof(choice.pieces_key), "%s", pkey);

apply:
	for (int math = 0; math < 3; math++)
		if (choice.piece_rows[math] > 0)
			pt_dnnl_set_piece_rows(math, choice.piece_rows[math]);
}

void
pt_kernels_choose(const PtLinear *const *lins, int n)
{
	const PtLinear *shapes[MAX_SHAPES];
	int			n_shapes = 0;
	int			max_dim = 0;
	double		flops = 0.0;
	char		key[KEY_LEN],
				machine[KEY_LEN],
				value[256];
	const dnnl_version_t *v = dnnl_version();
	const char *forced = getenv("PTUNE_FP32_KERNEL");
	int			used;
	float	   *x = NULL,
			   *y = NULL;

	/* the distinct shapes */
	for (int i = 0; i < n && n_shapes < MAX_SHAPES; i++)
	{
		bool		seen = false;

		for (int j = 0; j < n_shapes; j++)
			seen |= shapes[j]->out_dim == lins[i]->out_dim && shapes[j]->in_dim == lins[i]->in_dim;
		if (!seen && lins[i]->w)
			shapes[n_shapes++] = lins[i];
	}
	snprintf(machine, sizeof(machine), "%s|%s|%s|%s|oneDNN %d.%d.%d|threads %d", pt_cpu_model(),
			 pt_cpu_flags(), pt_blas_config(), pt_blas_core(), v->major, v->minor, v->patch, pt_get_threads());
	for (char *p = machine; *p; p++)	/* the key is one field of a line */
		if (*p == '\t' || *p == '\n')
			*p = ' ';
	used = snprintf(key, sizeof(key), "%s|shapes", machine);
	for (int i = 0; i < n_shapes && used > 0 && (size_t) used < sizeof(key); i++)
	{
		used += snprintf(key + used, sizeof(key) - used, " %dx%d", shapes[i]->out_dim, shapes[i]->in_dim);
		max_dim = shapes[i]->in_dim > max_dim ? shapes[i]->in_dim : max_dim;
		max_dim = shapes[i]->out_dim > max_dim ? shapes[i]->out_dim : max_dim;
		flops += 2.0 * MEASURE_ROWS * shapes[i]->out_dim * shapes[i]->in_dim;
	}

	pthread_mutex_lock(&choice.lock);
	if (forced && (strcmp(forced, "onednn") == 0 || strcmp(forced, "openblas") == 0))
	{
		PtKernel	k = strcmp(forced, "onednn") == 0 && pt_dnnl_supported() ? PT_KERNEL_ONEDNN
			: PT_KERNEL_OPENBLAS;

		choice.kernel[0] = choice.kernel[1] = k;
		choice.source = "forced by PTUNE_FP32_KERNEL";
		choice.key[0] = '\0';
		choice.pieces_key[0] = '\0';	/* the pieces' key names the fp32 kernels */
		goto done;
	}
	if (strcmp(key, choice.key) == 0)	/* this process chose for these shapes already */
		goto done;
	if (read_cache(key, parse_fp32))
	{
		choice.source = "cached";
		snprintf(choice.key, sizeof(choice.key), "%s", key);
		goto done;
	}

	x = malloc(sizeof(float) * MEASURE_ROWS * max_dim);
	y = malloc(sizeof(float) * MEASURE_ROWS * max_dim);
	if (n_shapes == 0 || x == NULL || y == NULL)
		goto done;
	/* small values of either sign: the speed of a product does not depend on them */
	for (size_t i = 0; i < (size_t) MEASURE_ROWS * max_dim; i++)
		x[i] = (float) ((int) (i * 2654435761u % 2001) - 1000) * 1e-3f;
	for (int backward = 0; backward < 2; backward++)
	{
		double		blas = time_kernel(PT_KERNEL_OPENBLAS, backward, shapes, n_shapes, x, y);
		double		onednn = pt_dnnl_supported() ?
			time_kernel(PT_KERNEL_ONEDNN, backward, shapes, n_shapes, x, y) : 0.0;

		choice.gflops[PT_KERNEL_OPENBLAS][backward] = blas > 0 ? flops / blas * 1e-9 : 0.0;
		choice.gflops[PT_KERNEL_ONEDNN][backward] = onednn > 0 ? flops / onednn * 1e-9 : 0.0;
		choice.kernel[backward] = onednn > 0 && onednn < blas ? PT_KERNEL_ONEDNN : PT_KERNEL_OPENBLAS;
	}
	choice.source = "measured";
	snprintf(choice.key, sizeof(choice.key), "%s", key);
	snprintf(value, sizeof(value), "%s %s %.1f %.1f %.1f %.1f",
			 pt_kernel_name(choice.kernel[0]), pt_kernel_name(choice.kernel[1]),
			 choice.gflops[0][0], choice.gflops[0][1], choice.gflops[1][0], choice.gflops[1][1]);
	write_cache(key, value);

done:
	/* fp32's pieces follow its kernels: measured after them */
	choose_pieces(machine, lins, n);
	pthread_mutex_unlock(&choice.lock);
	free(x);
	free(y);
}
