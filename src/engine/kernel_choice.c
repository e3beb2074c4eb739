/*
 * kernel_choice.c - chooses the fp32 kernels by measurement (see
 * kernel_choice.h).
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
#include "runtime.h"

#define MEASURE_ROWS 512		/* rows of a measured product: a typical batch's */
#define MAX_SHAPES 16
#define KEY_LEN 1024

static struct
{
	pthread_mutex_t lock;
	PtKernel	kernel[2];		/* [backward] */
	double		gflops[2][2];	/* [kernel][backward] */
	const char *source;
	char		key[KEY_LEN];	/* of the current choice */
} choice = {PTHREAD_MUTEX_INITIALIZER, {PT_KERNEL_OPENBLAS, PT_KERNEL_OPENBLAS}, {{0}}, "default", ""};

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
 * The last line of the cache for this key: "key \t forward \t backward \t
 * four GFLOP/s".  false if there is none (or no readable cache).
 */
static bool
read_cache(const char *key)
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
		char		fwd[16],
					bwd[16];
		double		g[4];

		if (tab == NULL || (size_t) (tab - line) != strlen(key) || strncmp(line, key, tab - line) != 0)
			continue;
		if (sscanf(tab + 1, "%15s %15s %lf %lf %lf %lf", fwd, bwd, &g[0], &g[1], &g[2], &g[3]) != 6)
			continue;
		choice.kernel[0] = strcmp(fwd, "onednn") == 0 ? PT_KERNEL_ONEDNN : PT_KERNEL_OPENBLAS;
		choice.kernel[1] = strcmp(bwd, "onednn") == 0 ? PT_KERNEL_ONEDNN : PT_KERNEL_OPENBLAS;
		for (int i = 0; i < 4; i++)
			choice.gflops[i / 2][i % 2] = g[i];
		found = true;
	}
	fclose(f);
	return found;
}

/* Appends this choice to the cache; failures (read-only home) are ignored. */
static void
write_cache(const char *key)
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
	len = snprintf(line, sizeof(line), "%s\t%s %s %.1f %.1f %.1f %.1f\n", key,
				   pt_kernel_name(choice.kernel[0]), pt_kernel_name(choice.kernel[1]),
				   choice.gflops[0][0], choice.gflops[0][1], choice.gflops[1][0], choice.gflops[1][1]);
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

/* Seconds of the fastest of a few runs of kernel over every shape, 0 if it cannot run. */
static double
time_kernel(PtKernel kernel, bool backward, const PtLinear *const *shapes, int n, float *x, float *y)
{
	double		best = 0.0;

	for (int rep = 0; rep < 3; rep++)	/* the first run also builds oneDNN's primitives */
	{
		double		t0 = pt_seconds();

		for (int i = 0; i < n; i++)
			if (!pt_fp32_product(kernel, backward, shapes[i], x, MEASURE_ROWS, y, false))
				return 0.0;
		t0 = pt_seconds() - t0;
		if (rep > 0 && (best == 0.0 || t0 < best))
			best = t0;
	}
	return best;
}

void
pt_kernels_choose(const PtLinear *const *lins, int n)
{
	const PtLinear *shapes[MAX_SHAPES];
	int			n_shapes = 0;
	int			max_dim = 0;
	double		flops = 0.0;
	char		key[KEY_LEN];
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
	used = snprintf(key, sizeof(key), "%s|%s|%s|%s|oneDNN %d.%d.%d|threads %d|shapes", pt_cpu_model(),
					pt_cpu_flags(), pt_blas_config(), pt_blas_core(), v->major, v->minor, v->patch,
					pt_get_threads());
	for (int i = 0; i < n_shapes && used > 0 && (size_t) used < sizeof(key); i++)
	{
		used += snprintf(key + used, sizeof(key) - used, " %dx%d", shapes[i]->out_dim, shapes[i]->in_dim);
		max_dim = shapes[i]->in_dim > max_dim ? shapes[i]->in_dim : max_dim;
		max_dim = shapes[i]->out_dim > max_dim ? shapes[i]->out_dim : max_dim;
		flops += 2.0 * MEASURE_ROWS * shapes[i]->out_dim * shapes[i]->in_dim;
	}
	for (char *p = key; *p; p++)	/* the key is one field of a line */
		if (*p == '\t' || *p == '\n')
			*p = ' ';

	pthread_mutex_lock(&choice.lock);
	if (forced && (strcmp(forced, "onednn") == 0 || strcmp(forced, "openblas") == 0))
	{
		PtKernel	k = strcmp(forced, "onednn") == 0 && pt_dnnl_supported() ? PT_KERNEL_ONEDNN
			: PT_KERNEL_OPENBLAS;

		choice.kernel[0] = choice.kernel[1] = k;
		choice.source = "forced by PTUNE_FP32_KERNEL";
		choice.key[0] = '\0';
		goto done;
	}
	if (strcmp(key, choice.key) == 0)	/* this process chose for these shapes already */
		goto done;
	if (read_cache(key))
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
	write_cache(key);

done:
	pthread_mutex_unlock(&choice.lock);
	free(x);
	free(y);
}
