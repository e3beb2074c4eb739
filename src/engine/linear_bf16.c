/*
 * linear_bf16.c - the bfloat16 path of pt_linear_forward(), on oneDNN.
 *
 * On CPUs with AVX512-BF16 or AMX, oneDNN multiplies bfloat16 matrices about
 * twice (AVX512-BF16) to several times (AMX) as fast as fp32 sgemm.  Each
 * weight matrix is rounded to bfloat16 once and stored in the blocked layout
 * oneDNN's matmul prefers; activations are rounded when a product runs, and
 * products accumulate and return in fp32.  Everything else in the model
 * (norms, softmax, attention's small products) stays fp32.
 *
 * A matmul primitive is specific to its shape; primitives are cached by
 * (M, N, K), and a new shape costs about 0.7 ms once.  Products run in
 * pieces of a few fixed row counts (pt_bf16_matmul), so the shapes are few
 * and the cache (least recently used out) holds them all.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>

#include "dtype.h"
#include "error.h"
#include "linear.h"

struct PtLinearBf16
{
	dnnl_memory_desc_t weights_md;	/* the blocked layout the weights are stored in */
	dnnl_memory_t weights;
};

#define CACHE_SIZE 256		/* shapes: at most 31 row counts (see pt_bf16_matmul) per weight shape */

typedef struct CachedPrimitive
{
	int			m,
				n,
				k;
	bool		accumulate;		/* with a "sum" post-op: y += product */
	dnnl_primitive_t primitive;
	unsigned long last_used;
} CachedPrimitive;

static struct
{
	pthread_once_t once;
	bool		ok;
	dnnl_engine_t engine;
	dnnl_stream_t stream;
	CachedPrimitive cache[CACHE_SIZE];
	unsigned long clock;
	pthread_mutex_t lock;
} dnnl = {PTHREAD_ONCE_INIT, false, NULL, NULL, {{0}}, 0, PTHREAD_MUTEX_INITIALIZER};

/* per-thread scratch for the bfloat16 copy of the activations */
static __thread uint16_t *scratch;
static __thread size_t scratch_size;
static __thread size_t scratch_used;	/* elements loaded by pt_bf16_load_input */

static void
init_dnnl(void)
{
	dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();

	/* ISAs are bit masks; without AVX512-BF16 oneDNN would emulate bfloat16, slower than fp32 */
	if ((isa & dnnl_cpu_isa_avx512_core_bf16) != dnnl_cpu_isa_avx512_core_bf16)
		return;
	/*
	 * Our own cache holds the primitives we use; oneDNN's would keep another
	 * copy (and its JIT code) of up to 1024 more, so bound it.
	 */
	dnnl_set_primitive_cache_capacity(16);
	if (dnnl_engine_create(&dnnl.engine, dnnl_cpu, 0) != dnnl_success ||
		dnnl_stream_create(&dnnl.stream, dnnl.engine, dnnl_stream_default_flags) != dnnl_success)
		return;
	dnnl.ok = true;
}

bool
pt_bf16_supported(void)
{
	pthread_once(&dnnl.once, init_dnnl);
	return dnnl.ok;
}

/*
 * A matmul of bfloat16 [m, k] x weights [k, n] (the given layout) -> fp32
 * [m, n]; with accumulate, the product is added to what dst holds.
 */
static dnnl_primitive_desc_t
matmul_desc(int m, int n, int k, const dnnl_memory_desc_t *weights, bool accumulate)
{
	dnnl_memory_desc_t src,
				dst;
	dnnl_dims_t src_dims = {m, k},
				dst_dims = {m, n};
	dnnl_matmul_desc_t desc;
	dnnl_primitive_desc_t pd = NULL;
	dnnl_primitive_attr_t attr = NULL;
	dnnl_post_ops_t sum = NULL;
	bool		ok;

	if (accumulate &&
		(dnnl_primitive_attr_create(&attr) != dnnl_success ||
		 dnnl_post_ops_create(&sum) != dnnl_success ||
		 dnnl_post_ops_append_sum(sum, 1.0f) != dnnl_success ||
		 dnnl_primitive_attr_set_post_ops(attr, sum) != dnnl_success))
		ok = false;
	else
		ok = dnnl_memory_desc_init_by_tag(&src, 2, src_dims, dnnl_bf16, dnnl_ab) == dnnl_success &&
			dnnl_memory_desc_init_by_tag(&dst, 2, dst_dims, dnnl_f32, dnnl_ab) == dnnl_success &&
			dnnl_matmul_desc_init(&desc, &src, weights, NULL, &dst) == dnnl_success &&
			dnnl_primitive_desc_create(&pd, &desc, attr, dnnl.engine, NULL) == dnnl_success;
	if (sum)
		dnnl_post_ops_destroy(sum);
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	return ok ? pd : NULL;
}

int
pt_linear_prepare_bf16(PtLinear *lin)
{
	int			n = lin->out_dim,
				k = lin->in_dim;
	dnnl_dims_t dims = {k, n};
	dnnl_memory_desc_t any,
				plain;
	dnnl_primitive_desc_t pd,
				reorder_pd = NULL;
	dnnl_primitive_t reorder = NULL;
	dnnl_memory_t src = NULL;
	uint16_t   *rounded;
	struct PtLinearBf16 *b;
	int			rc = -1;

	if (lin->bf16)
		return 0;
	if (!pt_bf16_supported())
		return pt_fail(PT_ERR_ARGUMENT, "this CPU has no bfloat16 matrix instructions");
	/* let oneDNN pick the weights layout, for a typical batch */
	if (dnnl_memory_desc_init_by_tag(&any, 2, dims, dnnl_bf16, dnnl_format_tag_any) != dnnl_success ||
		(pd = matmul_desc(1024, n, k, &any, false)) == NULL)
		return pt_fail(PT_ERR_INTERNAL, "oneDNN has no bfloat16 matmul for %d x %d", n, k);
	b = pt_calloc(1, sizeof(*b));
	rounded = pt_malloc(sizeof(uint16_t) * (size_t) n * k);
	if (b == NULL || rounded == NULL)
		goto done;
	b->weights_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);

	/* W is [n, k] row-major, i.e. the [k, n] matrix in column-major ("ba") order */
	for (size_t i = 0; i < (size_t) n * k; i++)
		rounded[i] = pt_f32_to_bf16(lin->w[i]);
	if (dnnl_memory_desc_init_by_tag(&plain, 2, dims, dnnl_bf16, dnnl_ba) != dnnl_success ||
		dnnl_memory_create(&src, &plain, dnnl.engine, rounded) != dnnl_success ||
		dnnl_memory_create(&b->weights, &b->weights_md, dnnl.engine, DNNL_MEMORY_ALLOCATE) != dnnl_success ||
		dnnl_reorder_primitive_desc_create(&reorder_pd, &plain, dnnl.engine, &b->weights_md,
										   dnnl.engine, NULL) != dnnl_success ||
		dnnl_primitive_create(&reorder, reorder_pd) != dnnl_success)
	{
		pt_fail(PT_ERR_INTERNAL, "oneDNN could not lay out a %d x %d weight", n, k);
		goto done;
	}
	{
		dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, b->weights}};

		if (dnnl_primitive_execute(reorder, dnnl.stream, 2, args) != dnnl_success ||
			dnnl_stream_wait(dnnl.stream) != dnnl_success)
		{
			pt_fail(PT_ERR_INTERNAL, "oneDNN could not reorder a weight");
			goto done;
		}
	}
	lin->bf16 = b;
	b = NULL;
	rc = 0;

done:
	if (reorder)
		dnnl_primitive_destroy(reorder);
	if (reorder_pd)
		dnnl_primitive_desc_destroy(reorder_pd);
	if (src)
		dnnl_memory_destroy(src);
	if (b && b->weights)
		dnnl_memory_destroy(b->weights);
	free(b);
	free(rounded);
	dnnl_primitive_desc_destroy(pd);
	return rc;
}

void
pt_linear_release_bf16(PtLinear *lin)
{
	if (lin->bf16)
	{
		dnnl_memory_destroy(lin->bf16->weights);
		free(lin->bf16);
		lin->bf16 = NULL;
	}
}

/* The cached primitive for this shape (created on first use); NULL if oneDNN fails. */
static dnnl_primitive_t
primitive_for(const PtLinear *lin, int m, bool accumulate)
{
	CachedPrimitive *slot = &dnnl.cache[0];
	dnnl_primitive_t prim = NULL;

	pthread_mutex_lock(&dnnl.lock);
	for (int i = 0; i < CACHE_SIZE; i++)
	{
		CachedPrimitive *c = &dnnl.cache[i];

		if (c->primitive && c->m == m && c->n == lin->out_dim && c->k == lin->in_dim &&
			c->accumulate == accumulate)
		{
			c->last_used = ++dnnl.clock;
			prim = c->primitive;
			break;
		}
		if (c->last_used < slot->last_used)
			slot = c;
	}
	if (prim == NULL)
	{
		dnnl_primitive_desc_t pd = matmul_desc(m, lin->out_dim, lin->in_dim, &lin->bf16->weights_md,
											   accumulate);

		if (pd && dnnl_primitive_create(&prim, pd) == dnnl_success)
		{
			if (slot->primitive)
				dnnl_primitive_destroy(slot->primitive);
			*slot = (CachedPrimitive) {m, lin->out_dim, lin->in_dim, accumulate, prim, ++dnnl.clock};
		}
		else
			prim = NULL;
		if (pd)
			dnnl_primitive_desc_destroy(pd);
	}
	pthread_mutex_unlock(&dnnl.lock);
	return prim;
}

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
static void
round_to_bf16(const float *x, size_t n, uint16_t *out)
{
	for (size_t i = 0; i < n; i++)
		out[i] = pt_f32_to_bf16(x[i]);
}

bool
pt_bf16_load_input(const float *x, size_t n)
{
	if (n > scratch_size)
	{
		uint16_t   *grown = realloc(scratch, sizeof(uint16_t) * n);

		if (grown == NULL)
			return false;
		scratch = grown;
		scratch_size = n;
	}
	round_to_bf16(x, n, scratch);
	scratch_used = n;
	return true;
}

/* y[rows, n] (+)= x[rows, k] . W^T for one piece of the rows, with the primitive of that shape */
static bool
matmul_piece(const PtLinear *lin, dnnl_primitive_t prim, const uint16_t *x, int rows, float *y)
{
	dnnl_memory_desc_t src_md,
				dst_md;
	dnnl_dims_t src_dims = {rows, lin->in_dim},
				dst_dims = {rows, lin->out_dim};
	dnnl_memory_t src = NULL,
				dst = NULL;
	bool		ok = false;

	if (dnnl_memory_desc_init_by_tag(&src_md, 2, src_dims, dnnl_bf16, dnnl_ab) == dnnl_success &&
		dnnl_memory_desc_init_by_tag(&dst_md, 2, dst_dims, dnnl_f32, dnnl_ab) == dnnl_success &&
		dnnl_memory_create(&src, &src_md, dnnl.engine, (void *) x) == dnnl_success &&
		dnnl_memory_create(&dst, &dst_md, dnnl.engine, y) == dnnl_success)
	{
		dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, lin->bf16->weights}, {DNNL_ARG_DST, dst}};

		ok = dnnl_primitive_execute(prim, dnnl.stream, 3, args) == dnnl_success &&
			dnnl_stream_wait(dnnl.stream) == dnnl_success;
	}
	if (src)
		dnnl_memory_destroy(src);
	if (dst)
		dnnl_memory_destroy(dst);
	return ok;
}

/*
 * The rows go through in pieces of PIECE_ROWS, then a multiple of 16, then
 * fewer than 16.  Why: oneDNN 2.6's AMX matmul picks a poor blocking for
 * some row counts, at a third of its speed or less (measured here for
 * 1024 x 512 weights: 600 GFLOP/s at m = 256, 60 at m = 212, 163 at m = 228,
 * 156 at m = 1824, against 540 for 1824 rows in pieces of 256).  Pieces of
 * these sizes are always fast, and they bound the shapes, hence the
 * primitives cached, to about 31 per weight: memory stays flat however the
 * batches vary.
 */
#define PIECE_ROWS 256

bool
pt_bf16_matmul(const PtLinear *lin, int m, float *y, bool accumulate)
{
	int			k = lin->in_dim,
				n = lin->out_dim;
	/* the three piece sizes: full pieces, then a multiple of 16, then fewer than 16 rows */
	int			sizes[3] = {PIECE_ROWS, (m % PIECE_ROWS) & ~15, m % 16};
	int			counts[3] = {m / PIECE_ROWS, sizes[1] > 0, sizes[2] > 0};
	dnnl_primitive_t prims[3] = {NULL, NULL, NULL};
	int			r = 0;

	/* the loaded input must be this product's [m, in_dim] */
	if (scratch_used != (size_t) m * k)
		return false;
	/*
	 * Every primitive before any product: if one cannot be made, y is still
	 * untouched and the caller's fp32 fallback (which may add to y) is right.
	 */
	for (int i = 0; i < 3; i++)
		if (counts[i] > 0 && (prims[i] = primitive_for(lin, sizes[i], accumulate)) == NULL)
			return false;
	for (int i = 0; i < 3; i++)
		for (int c = 0; c < counts[i]; c++, r += sizes[i])
			if (!matmul_piece(lin, prims[i], scratch + (size_t) r * k, sizes[i], y + (size_t) r * n))
				return false;
	return true;
}
