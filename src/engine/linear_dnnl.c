/*
 * linear_dnnl.c - the products that run on oneDNN (see linear.h).
 *
 * bf16: on CPUs with AVX512-BF16 or AMX, oneDNN multiplies bfloat16
 *   matrices about twice (AVX512-BF16) to several times (AMX) as fast as
 *   fp32 sgemm.  Each weight matrix is rounded to bfloat16 once and stored in
 *   the blocked layout oneDNN's matmul prefers; activations are rounded when
 *   a product runs, and products accumulate and return in fp32.
 * int8: each weight row (output channel j) is quantised once to s8 with its
 *   own scale sw[j] = max|W[j, :]| / 127; each activation row i is quantised
 *   when the product runs, sx[i] = max|x[i, :]| / 127.  oneDNN multiplies the
 *   s8 matrices into int32 (VNNI: four products per lane and instruction),
 *   and y[i, j] = sx[i] * sw[j] * acc[i, j] returns to fp32 (dequantise_piece,
 *   right after each piece).  Why per row: a text's results do not depend on
 *   the batch it is in.  One scale per input, as ONNX Runtime does, would
 *   let oneDNN scale as it writes (a per-column "binary mul" post-op with an
 *   f32 dst; oneDNN 2.6's brgemm takes no runtime output scales and no
 *   per-row factor, those fall back to 10-1000x slower kernels), but
 *   measured on a Zen 5 that post-op costs the product about 13%, as much as
 *   the separate dequantising pass: no faster, and it moved a text's
 *   probabilities by up to 0.01 with its batch mates.
 * fp32: oneDNN's f32 matmul reads the fp32 weights where they are (the
 *   checkpoint's mapping), as W[out, in] = the [in, out] matrix in "ba"
 *   order for forward products and the [out, in] one in "ab" order for
 *   backward ones; no copy.  kernel_choice.c decides whether it runs.
 * bf16 backward (mixed-precision training): dx = dy . W reads the packed
 *   copy too, which is the only copy of a bf16 model's weights in memory
 *   (see "bf16 backward" below).
 * Everything else in the model (norms, softmax, attention's small products)
 * stays fp32.
 *
 * A matmul primitive is specific to its shape; primitives are cached by
 * (kind, M, N, K, accumulate, threads), and a new shape costs about 0.7 ms once.
 * Products run in pieces of at most piece_rows[math] rows (run_pieces),
 * whose row counts are multiples of 16 or fewer than 16, so the shapes stay
 * few and the cache (least recently used out) holds those in use.
 * Threads: products may run from several threads at once (a decoder step
 * split by rows, generate.c), each thread alone on its product
 * (omp_set_num_threads(1) in it): the primitives it gets are planned for one
 * thread, and each thread passes its own scratchpad (run_matmul).
 */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <oneapi/dnnl/dnnl.h>
#include <omp.h>

#include "dtype.h"
#include "error.h"
#include "safetensors.h"
#include "linear.h"
#include "runtime.h"

/* The kinds of product, each with its own operand types (and primitives). */
typedef enum Kind
{
	KIND_BF16,					/* bf16 [m, k] x packed bf16 W^T -> f32 */
	KIND_INT8,					/* s8 [m, k] x packed s8 W^T -> s32 */
	KIND_F32_FORWARD,			/* f32 [m, in] x W^T (plain, "ba") -> f32 [m, out] */
	KIND_F32_BACKWARD,			/* f32 [m, out] x W (plain, "ab") -> f32 [m, in] */
	KIND_BF16_BACKWARD,			/* bf16 [m, out] x W unpacked from the packed copy -> f32 [m, in] */
	KIND_BF16_TO_BF16,			/* bf16 [m, k] x packed bf16 W^T -> bf16 (inference: the next step reads bf16) */
	N_KINDS
} Kind;

struct PtLinearPacked
{
	PtMath		math;			/* PT_MATH_BF16 or PT_MATH_INT8 */
	dnnl_memory_desc_t weights_md;	/* the blocked layout the weights are stored in */
	dnnl_memory_t weights;
	float	   *scales;			/* int8: [out_dim], W[j, :] ~ scales[j] * Wq[j, :] */
};

/*
 * Primitives (kind, m, n, k, accumulate, threads) in use; see run_pieces.  An
 * entry is evicted (destroyed) only when least recently used: a product
 * takes its primitives and runs them outside the lock, which is safe while
 * the products in flight use far fewer shapes than this (a model: a few dozen).
 */
#define CACHE_SIZE 512

/*
 * A reorder that unpacks rows of W from a packed bf16 copy for backward
 * products (see "bf16 backward"): from the rows' part of the packed copy,
 * seen as [rows, in] (offset0 = 0), to the layout oneDNN's matmul prefers
 * for [rows, in] weights.
 */
typedef struct CachedUnpack
{
	dnnl_memory_desc_t from;
	dnnl_memory_desc_t to;
	dnnl_primitive_t reorder;
	unsigned long last_used;
} CachedUnpack;

#define UNPACK_CACHE_SIZE 32	/* (weight shape, chunk) pairs in use: a few per model */

typedef struct CachedPrimitive
{
	Kind		kind;
	int			m,
				n,
				k;
	bool		accumulate;		/* with a "sum" post-op: y += product */
	int			threads;		/* omp_get_max_threads() when made: oneDNN plans the work for so many */
	dnnl_primitive_t primitive;
	unsigned long last_used;
} CachedPrimitive;

static struct
{
	pthread_once_t once;
	bool		ok;				/* oneDNN runs (f32) */
	bool		bf16;			/* ... and multiplies bfloat16 natively */
	bool		int8;			/* ... and has an int8 matmul */
	dnnl_engine_t engine;
	dnnl_stream_t stream;
	CachedPrimitive cache[CACHE_SIZE];
	unsigned long clock;
	pthread_mutex_t lock;
	int			piece_rows[3];	/* [PtMath]: the most rows of one product (see run_pieces) */
	char		impl[N_KINDS][64];	/* oneDNN's name of the last primitive made per kind */
	CachedUnpack unpack[UNPACK_CACHE_SIZE];	/* under lock, as cache */
} dnnl = {PTHREAD_ONCE_INIT, false, false, false, NULL, NULL, {{0}}, 0, PTHREAD_MUTEX_INITIALIZER, {0}, {""}, {{{0}, {0}, NULL, 0}}};

/*
 * Per-thread scratch: the converted activations (bf16 or s8, and int8's row
 * scales) and int8's int32 products of one piece.
 */
static __thread void *scratch;
static __thread size_t scratch_bytes;
static __thread size_t scratch_used;	/* elements loaded by pt_bf16/int8_load_input */
static __thread Kind scratch_kind;
static __thread void *row_scales;	/* int8: float [m] */
static __thread size_t row_scales_bytes;
static __thread void *acc;		/* int8: int32_t [piece rows, n] */
static __thread size_t acc_bytes;
static __thread void *unpacked;	/* bf16 backward: rows of W unpacked from the packed copy */
static __thread size_t unpacked_bytes;

/*
 * The rows of a product go through in pieces of piece_rows[math], then a
 * multiple of 16, then fewer than 16 (run_pieces).
 *
 * The best piece size depends on the machine, so kernel_choice.c chooses it
 * per precision by a timed trial (pt_dnnl_set_piece_rows) when a model
 * loads.  Why it matters: with AMX, oneDNN 2.6's matmul picks a poor
 * blocking for some row counts, at a third of its speed or less (measured on
 * a Xeon for 1024 x 512 weights: 600 GFLOP/s at m = 256, 60 at m = 212, 163
 * at m = 228, 156 at m = 1824, against 540 for 1824 rows in pieces of 256);
 * without AMX (AVX512-BF16, VNNI, AVX2) brgemm runs any row count near its
 * best and pieces only cost per-call overhead: on a 2-core Zen 5 products in
 * pieces of 256 rows reached 59% (bf16) and 32% (int8) of one whole matmul's
 * speed.  Until a choice is made: DEFAULT_PIECE_ROWS, AMX_PIECE_ROWS with AMX.
 *
 * PTUNE_PIECE_ROWS (16 .. MAX_PIECE_ROWS, rounded down to a multiple of 16)
 * forces one size for every precision, for measurements.
 */
#define AMX_PIECE_ROWS 256
#define DEFAULT_PIECE_ROWS 4096
#define MAX_PIECE_ROWS 8192

/* a size in 16 .. MAX_PIECE_ROWS, a multiple of 16 */
static int
clamp_piece_rows(long rows)
{
	return (int) (rows > MAX_PIECE_ROWS ? MAX_PIECE_ROWS : rows < 16 ? 16 : rows & ~15L);
}

int
pt_dnnl_piece_rows_forced(void)
{
	const char *env = getenv("PTUNE_PIECE_ROWS");
	long		rows = env && env[0] ? strtol(env, NULL, 10) : 0;

	return rows >= 16 ? clamp_piece_rows(rows) : 0;
}

static void
init_dnnl(void)
{
	dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();

	/*
	 * Our own cache holds the primitives we use; oneDNN's would keep another
	 * copy (and its JIT code) of up to 1024 more, so bound it.
	 */
	dnnl_set_primitive_cache_capacity(16);
	if (dnnl_engine_create(&dnnl.engine, dnnl_cpu, 0) != dnnl_success ||
		dnnl_stream_create(&dnnl.stream, dnnl.engine, dnnl_stream_default_flags) != dnnl_success)
		return;
	dnnl.ok = true;
	/* ISAs are bit masks; without AVX512-BF16 oneDNN would emulate bfloat16, slower than fp32 */
	dnnl.bf16 = (isa & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16;
	/*
	 * int8 only with VNNI (AVX512-VNNI, AVX-VNNI, or AMX, which implies it):
	 * without it oneDNN sums pairs of u8 x s8 products in 16 bits
	 * (vpmaddubsw), which saturates on full-range weights and moved
	 * probabilities by 0.05 in tests run where VNNI is hidden (valgrind).
	 */
	dnnl.int8 = (isa & dnnl_cpu_isa_avx512_core_vnni) == dnnl_cpu_isa_avx512_core_vnni ||
		(isa & dnnl_cpu_isa_avx2_vnni) == dnnl_cpu_isa_avx2_vnni;
	{
		int			forced = pt_dnnl_piece_rows_forced();
		int			rows = forced ? forced : (isa & dnnl_cpu_isa_avx512_core_amx) == dnnl_cpu_isa_avx512_core_amx
			? AMX_PIECE_ROWS : DEFAULT_PIECE_ROWS;

		for (int math = 0; math < 3; math++)
			dnnl.piece_rows[math] = rows;
	}
}

bool
pt_dnnl_supported(void)
{
	pthread_once(&dnnl.once, init_dnnl);
	return dnnl.ok;
}

bool
pt_bf16_supported(void)
{
	return pt_dnnl_supported() && dnnl.bf16;
}

bool
pt_int8_supported(void)
{
	return pt_dnnl_supported() && dnnl.int8;
}

int
pt_dnnl_piece_rows(PtMath math)
{
	return pt_dnnl_supported() ? __atomic_load_n(&dnnl.piece_rows[math], __ATOMIC_RELAXED) : 0;
}

void
pt_dnnl_set_piece_rows(PtMath math, int rows)
{
	if (pt_dnnl_supported())
		__atomic_store_n(&dnnl.piece_rows[math], clamp_piece_rows(rows), __ATOMIC_RELAXED);
}

const char *
pt_dnnl_kernel(PtMath math)
{
	const char *name = math == PT_MATH_BF16 ? dnnl.impl[KIND_BF16] :
		math == PT_MATH_INT8 ? dnnl.impl[KIND_INT8] : dnnl.impl[KIND_F32_FORWARD];

	return name[0] ? name : "not used yet";
}

/*
 * A matmul of src [m, k] x weights [k, n] (the given layout) -> dst [m, n];
 * with accumulate, the product is added to what dst holds.
 */
static dnnl_primitive_desc_t
matmul_desc(int m, int n, int k, dnnl_data_type_t src_type, const dnnl_memory_desc_t *weights,
			dnnl_data_type_t dst_type, bool accumulate)
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

	if (dnnl_primitive_attr_create(&attr) != dnnl_success ||
		dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) != dnnl_success ||
		(accumulate &&
		 (dnnl_post_ops_create(&sum) != dnnl_success ||
		  dnnl_post_ops_append_sum(sum, 1.0f) != dnnl_success ||
		  dnnl_primitive_attr_set_post_ops(attr, sum) != dnnl_success)))
		ok = false;
	else
		ok = dnnl_memory_desc_init_by_tag(&src, 2, src_dims, src_type, dnnl_ab) == dnnl_success &&
			dnnl_memory_desc_init_by_tag(&dst, 2, dst_dims, dst_type, dnnl_ab) == dnnl_success &&
			dnnl_matmul_desc_init(&desc, &src, weights, NULL, &dst) == dnnl_success &&
			dnnl_primitive_desc_create(&pd, &desc, attr, dnnl.engine, NULL) == dnnl_success;
	if (sum)
		dnnl_post_ops_destroy(sum);
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	return ok ? pd : NULL;
}

/* The operand types of a kind: src and dst data types, and whether W's rows are the output's columns */
static void
kind_types(Kind kind, dnnl_data_type_t *src, dnnl_data_type_t *dst)
{
	*src = kind == KIND_BF16 || kind == KIND_BF16_BACKWARD || kind == KIND_BF16_TO_BF16 ? dnnl_bf16
		: kind == KIND_INT8 ? dnnl_s8 : dnnl_f32;
	*dst = kind == KIND_INT8 ? dnnl_s32 : kind == KIND_BF16_TO_BF16 ? dnnl_bf16 : dnnl_f32;
}

/*
 * Whether a kind's weights are lin->packed's (a layout of oneDNN's choosing)
 * rather than the plain fp32 w.  For KIND_BF16_BACKWARD lin is a view of
 * rows of W unpacked into this thread's scratch (pt_bf16_backward).
 */
static bool
packed_kind(Kind kind)
{
	return kind == KIND_BF16 || kind == KIND_INT8 || kind == KIND_BF16_BACKWARD || kind == KIND_BF16_TO_BF16;
}

/* The plain fp32 weights (w) as oneDNN sees them: [in, out] "ba" forward, [out, in] "ab" backward. */
static bool
plain_weights_md(const PtLinear *lin, bool backward, dnnl_memory_desc_t *md, dnnl_data_type_t type)
{
	dnnl_dims_t dims = {backward ? lin->out_dim : lin->in_dim, backward ? lin->in_dim : lin->out_dim};

	return dnnl_memory_desc_init_by_tag(md, 2, dims, type, backward ? dnnl_ab : dnnl_ba) == dnnl_success;
}

/*
 * Rounds or quantises W once into oneDNN's preferred layout for math's
 * products.  int8 rows get their own scales (see the file's comment).
 */
static int
prepare(PtLinear *lin, PtMath math)
{
	int			n = lin->out_dim,
				k = lin->in_dim;
	bool		int8 = math == PT_MATH_INT8;
	dnnl_data_type_t type = int8 ? dnnl_s8 : dnnl_bf16;
	dnnl_dims_t dims = {k, n};
	dnnl_memory_desc_t any,
				plain;
	dnnl_primitive_desc_t pd,
				reorder_pd = NULL;
	dnnl_primitive_t reorder = NULL;
	dnnl_memory_t src = NULL;
	void	   *converted;
	struct PtLinearPacked *b;
	int			rc = -1;

	if (pt_linear_packed_math(lin) == math)
		return 0;
	pt_linear_release_bf16(lin);
	if (int8 ? !pt_int8_supported() : !pt_bf16_supported())
		return pt_fail(PT_ERR_ARGUMENT, int8 ? "this CPU has no int8 dot-product instructions (VNNI or AMX)"
					   : "this CPU has no bfloat16 matrix instructions");
	/* let oneDNN pick the weights layout, for a typical batch */
	if (dnnl_memory_desc_init_by_tag(&any, 2, dims, type, dnnl_format_tag_any) != dnnl_success ||
		(pd = matmul_desc(1024, n, k, int8 ? dnnl_s8 : dnnl_bf16, &any,
						  int8 ? dnnl_s32 : dnnl_f32, false)) == NULL)
		return pt_fail(PT_ERR_INTERNAL, "oneDNN has no %s matmul for %d x %d", pt_math_name(math), n, k);
	if (int8 && lin->w == NULL)
		return pt_fail(PT_ERR_INTERNAL, "int8 weights are quantised from fp32 weights");
	b = pt_calloc(1, sizeof(*b));
	/* a checkpoint's aligned BF16 tensor is reordered straight from the mapping */
	if (!int8 && lin->w == NULL && lin->src_dtype == PT_DTYPE_BF16 && ((uintptr_t) lin->src % 2) == 0)
		converted = NULL;
	else if ((converted = pt_malloc((int8 ? 1 : 2) * (size_t) n * k)) == NULL)
	{
		free(b);
		return -1;
	}
	if (b == NULL || (int8 && (b->scales = pt_malloc(sizeof(float) * n)) == NULL))
		goto done;
	b->math = math;
	b->weights_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
	{
		const char *impl = NULL;

		if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl)
			snprintf(dnnl.impl[int8 ? KIND_INT8 : KIND_BF16], sizeof(dnnl.impl[0]), "%s", impl);
	}

	/* W is [n, k] row-major, i.e. the [k, n] matrix in column-major ("ba") order */
	if (int8)
		for (int j = 0; j < n; j++)
		{
			const float *row = lin->w + (size_t) j * k;
			int8_t	   *q = (int8_t *) converted + (size_t) j * k;
			float		amax = 0.0f;

			for (int i = 0; i < k; i++)
				amax = fmaxf(amax, fabsf(row[i]));
			b->scales[j] = amax / 127.0f;
			for (int i = 0; i < k; i++)
				q[i] = amax > 0.0f ? (int8_t) lrintf(row[i] * (127.0f / amax)) : 0;
		}
	else if (lin->w != NULL)
		for (size_t i = 0; i < (size_t) n * k; i++)
			((uint16_t *) converted)[i] = pt_f32_to_bf16(lin->w[i]);
	else if (converted != NULL)
		pt_convert_to_bf16(lin->src_dtype, lin->src, (size_t) n * k, converted);
	if (dnnl_memory_desc_init_by_tag(&plain, 2, dims, type, dnnl_ba) != dnnl_success ||
		dnnl_memory_create(&src, &plain, dnnl.engine, converted ? converted : (void *) lin->src) != dnnl_success ||
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
	lin->packed = b;
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
	if (b)
		free(b->scales);
	free(b);
	free(converted);
	dnnl_primitive_desc_destroy(pd);
	return rc;
}

int
pt_linear_prepare_bf16(PtLinear *lin)
{
	return prepare(lin, PT_MATH_BF16);
}

int
pt_linear_prepare_int8(PtLinear *lin)
{
	return prepare(lin, PT_MATH_INT8);
}

void
pt_linear_release_bf16(PtLinear *lin)
{
	if (lin->packed)
	{
		dnnl_memory_destroy(lin->packed->weights);
		free(lin->packed->scales);
		free(lin->packed);
		lin->packed = NULL;
	}
}

PtMath
pt_linear_packed_math(const PtLinear *lin)
{
	return lin->packed ? lin->packed->math : PT_MATH_FP32;
}

/*
 * This thread's scratchpad for oneDNN's matmuls (user scratchpad mode, set in
 * matmul_desc).  oneDNN's own ("library") scratchpad belongs to the thread
 * that created the primitive, and a primitive must then run on that thread
 * only: the cached primitives are made by whichever thread needs a shape
 * first, and a decoder step split by rows (generate.c) runs them from two
 * threads at once, which wrote into each other's scratch (errors of order 1;
 * test_products_from_threads).  The one CPU stream is shared: with the
 * OpenMP runtime, oneDNN 2.x executes a CPU primitive on the calling thread.
 */
static __thread void *dnnl_scratch;
static __thread size_t dnnl_scratch_bytes;

/* The scratchpad prim needs (NULL: none), and its size in *bytes. */
static const dnnl_memory_desc_t *
scratchpad_md(dnnl_primitive_t prim, size_t *bytes)
{
	const_dnnl_primitive_desc_t pd = NULL;
	const dnnl_memory_desc_t *md = NULL;

	*bytes = 0;
	if (dnnl_primitive_get_primitive_desc(prim, &pd) == dnnl_success &&
		(md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0)) != NULL)
		*bytes = dnnl_memory_desc_get_size(md);
	return *bytes > 0 ? md : NULL;
}

/*
 * Grows this thread's scratchpad to what prim needs; false if memory runs
 * out.  Called for every primitive of a product before its first piece, so
 * that no piece fails for want of scratch after others have written y.
 * 64-byte aligned for oneDNN's kernels (pt_grow reallocs: 16 bytes), and
 * nothing to keep, so no realloc.
 */
static bool
reserve_scratchpad(dnnl_primitive_t prim)
{
	size_t		bytes;
	void	   *p = NULL;

	scratchpad_md(prim, &bytes);
	if (bytes <= dnnl_scratch_bytes)
		return true;
	if (posix_memalign(&p, 64, bytes) != 0)
		return false;
	free(dnnl_scratch);
	dnnl_scratch = p;
	dnnl_scratch_bytes = bytes;
	return true;
}

/*
 * Executes a matmul primitive made by matmul_desc on args3 (src, weights,
 * dst) with this thread's scratchpad, reserved beforehand (reserve_scratchpad).
 */
static bool
run_matmul(dnnl_primitive_t prim, const dnnl_exec_arg_t *args3)
{
	size_t		bytes;
	const dnnl_memory_desc_t *md = scratchpad_md(prim, &bytes);
	dnnl_memory_t scratch = NULL;
	dnnl_exec_arg_t args[4] = {args3[0], args3[1], args3[2], {DNNL_ARG_SCRATCHPAD, NULL}};
	bool		ok;

	if (bytes > dnnl_scratch_bytes ||
		(md && dnnl_memory_create(&scratch, md, dnnl.engine, dnnl_scratch) != dnnl_success))
		return false;
	args[3].memory = scratch;
	ok = dnnl_primitive_execute(prim, dnnl.stream, md ? 4 : 3, args) == dnnl_success &&
		dnnl_stream_wait(dnnl.stream) == dnnl_success;
	if (scratch)
		dnnl_memory_destroy(scratch);
	return ok;
}

/* The cached primitive for this kind and shape (created on first use); NULL if oneDNN fails. */
static dnnl_primitive_t
primitive_for(Kind kind, const PtLinear *lin, int m, bool accumulate)
{
	CachedPrimitive *slot = &dnnl.cache[0];
	dnnl_primitive_t prim = NULL;
	int			threads = omp_get_max_threads();

	pthread_mutex_lock(&dnnl.lock);
	for (int i = 0; i < CACHE_SIZE; i++)
	{
		CachedPrimitive *c = &dnnl.cache[i];

		if (c->primitive && c->kind == kind && c->m == m && c->n == lin->out_dim &&
			c->k == lin->in_dim && c->accumulate == accumulate && c->threads == threads)
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
		bool		backward = kind == KIND_F32_BACKWARD || kind == KIND_BF16_BACKWARD;
		dnnl_data_type_t src_type,
					dst_type;
		dnnl_memory_desc_t plain;
		const dnnl_memory_desc_t *weights = &plain;
		dnnl_primitive_desc_t pd = NULL;

		kind_types(kind, &src_type, &dst_type);
		if (packed_kind(kind))
			weights = &lin->packed->weights_md;
		if (weights != &plain || plain_weights_md(lin, backward, &plain, src_type))
			pd = matmul_desc(m, backward ? lin->in_dim : lin->out_dim, backward ? lin->out_dim : lin->in_dim,
							 src_type, weights, dst_type, accumulate);
		if (pd && dnnl_primitive_create(&prim, pd) == dnnl_success)
		{
			const char *impl = NULL;

			if (slot->primitive)
				dnnl_primitive_destroy(slot->primitive);
			*slot = (CachedPrimitive) {kind, m, lin->out_dim, lin->in_dim, accumulate, threads, prim, ++dnnl.clock};
			if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl)
				snprintf(dnnl.impl[kind], sizeof(dnnl.impl[kind]), "%s", impl);
		}
		else
			prim = NULL;
		if (pd)
			dnnl_primitive_desc_destroy(pd);
	}
	pthread_mutex_unlock(&dnnl.lock);
	return prim;
}

/*
 * dst[rows, n] (+)= src[rows, k] . W for one piece of the rows, with the
 * primitive of that shape (n, k: the product's, so swapped for backward).
 */
static bool
matmul_piece(Kind kind, const PtLinear *lin, dnnl_primitive_t prim, const void *x, int rows, void *y)
{
	bool		backward = kind == KIND_F32_BACKWARD || kind == KIND_BF16_BACKWARD;
	int			k = backward ? lin->out_dim : lin->in_dim,
				n = backward ? lin->in_dim : lin->out_dim;
	dnnl_data_type_t src_type,
				dst_type;
	dnnl_memory_desc_t src_md,
				dst_md,
				plain;
	dnnl_dims_t src_dims = {rows, k},
				dst_dims = {rows, n};
	dnnl_memory_t src = NULL,
				dst = NULL,
				weights = NULL;
	bool		ok = false;

	kind_types(kind, &src_type, &dst_type);
	if (packed_kind(kind))
		weights = lin->packed->weights;
	else if (!plain_weights_md(lin, backward, &plain, src_type) ||
			 dnnl_memory_create(&weights, &plain, dnnl.engine, (void *) lin->w) != dnnl_success)
		weights = NULL;
	if (weights &&
		dnnl_memory_desc_init_by_tag(&src_md, 2, src_dims, src_type, dnnl_ab) == dnnl_success &&
		dnnl_memory_desc_init_by_tag(&dst_md, 2, dst_dims, dst_type, dnnl_ab) == dnnl_success &&
		dnnl_memory_create(&src, &src_md, dnnl.engine, (void *) x) == dnnl_success &&
		dnnl_memory_create(&dst, &dst_md, dnnl.engine, y) == dnnl_success)
	{
		dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, dst}};

		ok = run_matmul(prim, args);
	}
	if (src)
		dnnl_memory_destroy(src);
	if (dst)
		dnnl_memory_destroy(dst);
	if (weights && !packed_kind(kind))
		dnnl_memory_destroy(weights);
	return ok;
}


static void dequantise_piece(const PtLinear *lin, int r0, int rows, float *y, bool accumulate);

/*
 * Tests only (pt_dnnl_fail_forward): the forward bf16 / int8 product that
 * fails next, counting down (0: this one; -1: none), as if oneDNN had.
 */
static int fail_forward = -1;

int
pt_dnnl_fail_forward(int after)
{
	return __atomic_exchange_n(&fail_forward, after, __ATOMIC_RELAXED);
}

/* true if this forward product is to fail (consumes the countdown) */
static bool
forward_fails(void)
{
	int			n = __atomic_load_n(&fail_forward, __ATOMIC_RELAXED);

	/* a countdown: the product that takes it from 0 to -1 fails (one, even from several threads) */
	while (n >= 0 && !__atomic_compare_exchange_n(&fail_forward, &n, n - 1, false, __ATOMIC_RELAXED,
												  __ATOMIC_RELAXED))
		;
	return n == 0;
}

/*
 * Runs a product of m rows in pieces: src rows of src_row bytes, dst rows of
 * dst_row bytes (y is float, or bf16 for KIND_BF16_TO_BF16).  int8 pieces go
 * to the int32 scratch first, and dequantise_piece finishes each into y.
 */
static bool
run_pieces(Kind kind, int piece, const PtLinear *lin, int m, const void *x, size_t src_row, void *y,
		   size_t dst_row, bool accumulate)
{
	bool		int8 = kind == KIND_INT8;
	/* the three piece sizes: full pieces, then a multiple of 16, then fewer than 16 rows */
	int			sizes[3] = {piece, (m % piece) & ~15, m % 16};
	int			counts[3] = {m / piece, sizes[1] > 0, sizes[2] > 0};
	dnnl_primitive_t prims[3] = {NULL, NULL, NULL};
	int			r = 0;

	/*
	 * Every primitive and its scratchpad before any product: if one cannot be
	 * made, y is still untouched and the caller's fp32 fallback (which may add
	 * to y) is right.
	 * int8's primitives have no sum post-op: the row scales come after.
	 */
	for (int i = 0; i < 3; i++)
		if (counts[i] > 0 && ((prims[i] = primitive_for(kind, lin, sizes[i], accumulate && !int8)) == NULL ||
							  !reserve_scratchpad(prims[i])))
			return false;
	for (int i = 0; i < 3; i++)
		for (int c = 0; c < counts[i]; c++, r += sizes[i])
		{
			if (!matmul_piece(kind, lin, prims[i], (const char *) x + (size_t) r * src_row, sizes[i],
							  int8 ? acc : (char *) y + (size_t) r * dst_row))
				return false;
			if (int8)
				dequantise_piece(lin, r, sizes[i], y, accumulate);
		}
	return true;
}

/* ---- bf16 ------------------------------------------------------------------ */

static bool
grow_scratch(size_t bytes)
{
	return pt_grow(&scratch, &scratch_bytes, bytes) != NULL;
}

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
static void
round_to_bf16(const float *x, size_t n, uint16_t *out)
{
	for (size_t i = 0; i < n; i++)
		out[i] = pt_f32_to_bf16(x[i]);
}

/* Chunks of the input the threads round in parallel (a batch's input is millions of values). */
#define ROUND_CHUNK ((size_t) 1 << 16)

bool
pt_bf16_load_input(const float *x, size_t n)
{
	size_t		chunks = (n + ROUND_CHUNK - 1) / ROUND_CHUNK;
	/* the scratch is this thread's (__thread): the loop's other threads get its address */
	uint16_t   *out = pt_bf16_input_room(n);

	if (out == NULL)
		return false;
#pragma omp parallel for schedule(static) if (chunks > 1)
	for (size_t c = 0; c < chunks; c++)
	{
		size_t		start = c * ROUND_CHUNK;

		round_to_bf16(x + start, n - start < ROUND_CHUNK ? n - start : ROUND_CHUNK, out + start);
	}
	return true;
}

uint16_t *
pt_bf16_input_room(size_t n)
{
	if (!grow_scratch(sizeof(uint16_t) * n))
		return NULL;
	scratch_used = n;
	scratch_kind = KIND_BF16;
	return scratch;
}

/*
 * y (+)= the loaded input . W^T, y fp32 (KIND_BF16) or bf16
 * (KIND_BF16_TO_BF16); the loaded input must be this product's [m, in_dim].
 */
static bool
loaded_bf16_product(Kind kind, const PtLinear *lin, int m, void *y, size_t y_value, bool accumulate)
{
	if (scratch_kind != KIND_BF16 || scratch_used != (size_t) m * lin->in_dim ||
		pt_linear_packed_math(lin) != PT_MATH_BF16 || forward_fails())
		return false;
	return run_pieces(kind, pt_dnnl_piece_rows(PT_MATH_BF16), lin, m, scratch, sizeof(uint16_t) * lin->in_dim,
					  y, y_value * lin->out_dim, accumulate);
}

bool
pt_bf16_matmul(const PtLinear *lin, int m, float *y, bool accumulate)
{
	return loaded_bf16_product(KIND_BF16, lin, m, y, sizeof(float), accumulate);
}

bool
pt_bf16_matmul_to_bf16(const PtLinear *lin, int m, uint16_t *y)
{
	return loaded_bf16_product(KIND_BF16_TO_BF16, lin, m, y, sizeof(uint16_t), false);
}

/* ---- int8 ------------------------------------------------------------------ */

/*
 * q[i, :] = round(x[i, :] / s[i]), half to even, with s[i] = max|x[i, :]| /
 * 127 (0 for a zero row).  max|x| compares the bit patterns of |x| as
 * unsigned integers, which order as the values do for non-negative floats
 * and vectorise without fast-math (fmaxf does not: it kept this pass scalar
 * and made quantising the input cost as much as the product itself).  A
 * NaN compares above every number: its row's scale and outputs are NaN, as
 * fp32's would be.
 */
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
static void
quantise_row(const float *x, int k, int8_t *q, float *scale)
{
	uint32_t	most = 0;
	float		amax,
				inv;

	for (int i = 0; i < k; i++)
	{
		uint32_t	bits;

		memcpy(&bits, &x[i], sizeof(bits));
		bits &= 0x7fffffffu;
		most = bits > most ? bits : most;
	}
	memcpy(&amax, &most, sizeof(amax));
	*scale = amax / 127.0f;
	/*
	 * |x[i] * inv| <= 127.  An infinite or NaN maximum quantises the row to
	 * 0 (its scale carries the inf or NaN), and so does a maximum so small
	 * (below 127 / FLT_MAX, about 4e-37) that 127 / amax would overflow:
	 * converting an infinite x * inv to int is undefined.
	 */
	inv = amax >= 127.0f / FLT_MAX && amax <= FLT_MAX ? 127.0f / amax : 0.0f;
	for (int i = 0; i < k; i++)
		q[i] = (int8_t) (int) nearbyintf(x[i] * inv);
}

bool
pt_int8_load_input(const float *x, int m, int k)
{
	if (!grow_scratch((size_t) m * k))
		return false;
	if (pt_grow(&row_scales, &row_scales_bytes, sizeof(float) * m) == NULL)
		return false;
	{
		/* the scratch is this thread's (__thread): the loop's other threads get its address */
		int8_t	   *q = scratch;
		float	   *scales = row_scales;

#pragma omp parallel for schedule(static) if (m >= 64)
		for (int i = 0; i < m; i++)
			quantise_row(x + (size_t) i * k, k, q + (size_t) i * k, &scales[i]);
	}
	scratch_used = (size_t) m * k;
	scratch_kind = KIND_INT8;
	return true;
}

/* y[r0 + i, j] (+)= sx[r0 + i] * sw[j] * acc[i, j] for one piece of rows */
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
static void
dequantise_piece(const PtLinear *lin, int r0, int rows, float *y, bool accumulate)
{
	int			n = lin->out_dim;
	const float *sw = lin->packed->scales;
	/* this thread's (__thread) scratch, for the loop's other threads too */
	const int32_t *products = acc;
	const float *sxs = row_scales;

#pragma omp parallel for schedule(static) if (rows >= 64)
	for (int i = 0; i < rows; i++)
	{
		const int32_t *a = products + (size_t) i * n;
		float	   *out = y + (size_t) (r0 + i) * n;
		float		sx = sxs[r0 + i];

		if (accumulate)
			for (int j = 0; j < n; j++)
				out[j] += sx * sw[j] * (float) a[j];
		else
			for (int j = 0; j < n; j++)
				out[j] = sx * sw[j] * (float) a[j];
	}
}

bool
pt_int8_matmul(const PtLinear *lin, int m, float *y, bool accumulate)
{
	/* one read: another thread's model load may choose anew meanwhile */
	int			piece = pt_dnnl_piece_rows(PT_MATH_INT8);
	size_t		need = (size_t) (m < piece ? m : piece) * lin->out_dim;

	if (scratch_kind != KIND_INT8 || scratch_used != (size_t) m * lin->in_dim ||
		pt_linear_packed_math(lin) != PT_MATH_INT8 || forward_fails())
		return false;
	if (pt_grow(&acc, &acc_bytes, sizeof(int32_t) * need) == NULL)
		return false;
	return run_pieces(KIND_INT8, piece, lin, m, scratch, lin->in_dim, y, sizeof(float) * lin->out_dim, accumulate);
}

/* ---- bf16 backward ----------------------------------------------------------
 *
 * Mixed-precision training's dx[m, in] (+)= dy[m, out] . W for a bf16 model,
 * whose only copy of W in memory is the packed one: the checkpoint's pages
 * were given back after packing (model.c), and reading them again would
 * fault a second copy of every weight into the process (the page cache of
 * its mapping counts in its RSS).
 *
 * The packed copy is W^T [in, out] blocked for products that sum over in
 * (on a Zen 5 "16a64b2a": pairs of in values side by side, out in blocks of
 * 64 outermost); a backward product sums over out and wants pairs of out
 * values.  So each product first reorders the rows of W it needs into this
 * thread's scratch, in the layout oneDNN's matmul prefers for them, then
 * multiplies.  Measured on the Zen 5 for flan-t5-small's shapes: the
 * reorder takes 0.03-0.1 ms per weight and the product from the blocked
 * layout is faster than the one from plain bf16 weights (which oneDNN
 * repacks inside every call: 1.6 against 2.0 ms for 1184 x 1024 x 512).
 *
 * At most UNPACK_BYTES of W are unpacked at a time: a larger W (lm_head's
 * vocabulary rows, flan-t5-xl's feed-forward) goes in chunks of rows
 * [r0, r0 + c), whose products dy[:, r0 .. r0 + c) . W[r0 .. r0 + c, :] add
 * up in dx.  Chunks start at multiples of the packed layout's block of out
 * rows, where oneDNN can describe the chunk's part of the packed copy.
 */
#define UNPACK_BYTES ((size_t) 8 << 20)

/* The reorder for one chunk (described by from) and the layout it unpacks to; false if oneDNN fails. */
static bool
unpack_for(const dnnl_memory_desc_t *from, dnnl_primitive_t *reorder, dnnl_memory_desc_t *to)
{
	CachedUnpack *slot = &dnnl.unpack[0];
	bool		found = false;

	pthread_mutex_lock(&dnnl.lock);
	for (int i = 0; i < UNPACK_CACHE_SIZE && !found; i++)
	{
		CachedUnpack *c = &dnnl.unpack[i];

		if (c->reorder && dnnl_memory_desc_equal(&c->from, from))
		{
			c->last_used = ++dnnl.clock;
			slot = c;
			found = true;
		}
		else if (c->last_used < slot->last_used)
			slot = c;
	}
	if (!found)
	{
		/* from is W's rows [rows, in]: a backward product's weights, K = rows, N = in */
		int			rows = (int) from->dims[0],
					in = (int) from->dims[1];
		dnnl_dims_t dims = {rows, in};
		dnnl_memory_desc_t any,
					layout;
		dnnl_primitive_desc_t pd = NULL,
					reorder_pd = NULL;
		dnnl_primitive_t prim = NULL;

		/* the layout for a typical batch, as prepare() chooses the forward one */
		if (dnnl_memory_desc_init_by_tag(&any, 2, dims, dnnl_bf16, dnnl_format_tag_any) == dnnl_success &&
			(pd = matmul_desc(1024, in, rows, dnnl_bf16, &any, dnnl_f32, false)) != NULL)
		{
			layout = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
			if (dnnl_reorder_primitive_desc_create(&reorder_pd, from, dnnl.engine, &layout,
												   dnnl.engine, NULL) == dnnl_success &&
				dnnl_primitive_create(&prim, reorder_pd) == dnnl_success)
			{
				if (slot->reorder)
					dnnl_primitive_destroy(slot->reorder);
				*slot = (CachedUnpack) {*from, layout, prim, ++dnnl.clock};
				found = true;
			}
		}
		if (reorder_pd)
			dnnl_primitive_desc_destroy(reorder_pd);
		if (pd)
			dnnl_primitive_desc_destroy(pd);
	}
	if (found)
	{
		*reorder = slot->reorder;
		*to = slot->to;
	}
	pthread_mutex_unlock(&dnnl.lock);
	return found;
}

/*
 * One chunk of W's rows: its part of the packed copy (whole is the packed
 * copy seen as W [out, in]) described at offset 0, so that every chunk of
 * the same size shares one description and reorder, and its unpacking.
 */
typedef struct Chunk
{
	dnnl_memory_desc_t from;
	dnnl_primitive_t reorder;
	dnnl_memory_desc_t to;
} Chunk;

static bool
chunk_of(const dnnl_memory_desc_t *whole, int r0, int rows, Chunk *c)
{
	dnnl_dims_t dims = {rows, whole->dims[1]},
				offsets = {r0, 0};

	if (rows == whole->dims[0])
		c->from = *whole;
	else if (dnnl_memory_desc_init_submemory(&c->from, whole, dims, offsets) != dnnl_success)
		return false;
	c->from.offset0 = 0;
	return unpack_for(&c->from, &c->reorder, &c->to);
}

/* The out rows of one block of the packed layout (chunks start at multiples of it) */
static int64_t
row_block(const dnnl_memory_desc_t *whole)
{
	const dnnl_blocking_desc_t *b = &whole->format_desc.blocking;
	int64_t		block = 1;

	for (int i = 0; i < b->inner_nblks; i++)
		if (b->inner_idxs[i] == 0)
			block *= b->inner_blks[i];
	return block;
}

/* The rows of W per chunk: at most UNPACK_BYTES, a multiple of the packed layout's block of out rows */
static int
chunk_rows(const dnnl_memory_desc_t *whole)
{
	int64_t		block = row_block(whole),
				rows;

	rows = (int64_t) (UNPACK_BYTES / (sizeof(uint16_t) * whole->padded_dims[1])) / block * block;
	if (rows < block)
		rows = block;
	return rows < whole->dims[0] ? (int) rows : (int) whole->dims[0];
}

/* scratch[m, c] = bf16 of x[:, c0 .. c0 + c) for rows of ld values: a chunk's columns of dy */
static bool
load_columns(const float *x, int m, int ld, int c0, int c)
{
	uint16_t   *out;

	if (!grow_scratch(sizeof(uint16_t) * (size_t) m * c))
		return false;
	out = scratch;
#pragma omp parallel for schedule(static) if ((size_t) m * c >= ROUND_CHUNK)
	for (int i = 0; i < m; i++)
		round_to_bf16(x + (size_t) i * ld + c0, c, out + (size_t) i * c);
	scratch_used = (size_t) m * c;
	scratch_kind = KIND_BF16;
	return true;
}

/* The products of one chunk: unpack its rows, then dx (+)= dy[:, r0 ..) . W[r0 .., :] */
static bool
backward_chunk(const PtLinear *lin, const Chunk *c, const uint16_t *part, const float *dy, int m, int r0,
			   int rows, float *dx, bool accumulate)
{
	dnnl_memory_t from = NULL,
				to = NULL;
	struct PtLinearPacked view_packed = {PT_MATH_BF16, c->to, NULL, NULL};
	PtLinear	view = {.out_dim = rows, .in_dim = lin->in_dim, .packed = &view_packed};
	bool		ok = false;

	if (dnnl_memory_create(&from, &c->from, dnnl.engine, (void *) part) == dnnl_success &&
		dnnl_memory_create(&to, &c->to, dnnl.engine, unpacked) == dnnl_success)
	{
		dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};

		view_packed.weights = to;
		ok = dnnl_primitive_execute(c->reorder, dnnl.stream, 2, args) == dnnl_success &&
			dnnl_stream_wait(dnnl.stream) == dnnl_success &&
			(rows == lin->out_dim ? pt_bf16_load_input(dy, (size_t) m * rows)
			 : load_columns(dy, m, lin->out_dim, r0, rows)) &&
			run_pieces(KIND_BF16_BACKWARD, pt_dnnl_piece_rows(PT_MATH_BF16), &view, m, scratch,
					   sizeof(uint16_t) * rows, dx, sizeof(float) * lin->in_dim, accumulate);
	}
	if (from)
		dnnl_memory_destroy(from);
	if (to)
		dnnl_memory_destroy(to);
	return ok;
}

/* The primitives of a chunk's pieces (run_pieces' three sizes), made ahead; false if one cannot be */
static bool
chunk_primitives(const Chunk *c, int rows, const PtLinear *lin, int m, bool accumulate)
{
	struct PtLinearPacked view_packed = {PT_MATH_BF16, c->to, NULL, NULL};
	PtLinear	view = {.out_dim = rows, .in_dim = lin->in_dim, .packed = &view_packed};
	int			piece = pt_dnnl_piece_rows(PT_MATH_BF16);
	int			sizes[3] = {m < piece ? 0 : piece, (m % piece) & ~15, m % 16};

	for (int i = 0; i < 3; i++)
		if (sizes[i] > 0 && primitive_for(KIND_BF16_BACKWARD, &view, sizes[i], accumulate) == NULL)
			return false;
	return true;
}

/* Tests only: the chunk (>= 1) at which pt_bf16_backward fails as if oneDNN had; -1: none */
static int fail_chunk = -1;

void
pt_dnnl_fail_backward_chunk(int chunk)
{
	fail_chunk = chunk;
}

int
pt_bf16_backward(const PtLinear *lin, const float *dy, int m, float *dx, bool accumulate)
{
	static const int swap[2] = {1, 0};
	dnnl_memory_desc_t whole;
	void	   *packed = NULL;
	int			rows,
				last;
	Chunk		full,
				tail;			/* the last chunk where it has fewer rows */
	size_t		need;

	if (pt_linear_packed_math(lin) != PT_MATH_BF16 || !pt_bf16_supported() ||
		dnnl_memory_desc_permute_axes(&whole, &lin->packed->weights_md, swap) != dnnl_success ||
		whole.format_kind != dnnl_blocked ||
		dnnl_memory_get_data_handle(lin->packed->weights, &packed) != dnnl_success || packed == NULL)
		return 0;
	rows = chunk_rows(&whole);
	last = lin->out_dim - (lin->out_dim - 1) / rows * rows;	/* the last chunk's rows, 1 .. rows */

	/*
	 * Everything that can fail before the first product, so that a failure
	 * leaves dx as it was for the caller's fallback: both chunk sizes'
	 * reorders and product primitives (cached), and the scratch.
	 */
	if (!chunk_of(&whole, 0, rows, &full) ||
		!chunk_primitives(&full, rows, lin, m, accumulate) ||
		(rows != lin->out_dim && !chunk_primitives(&full, rows, lin, m, true)))
		return 0;
	if (last == rows)
		tail = full;
	else if (!chunk_of(&whole, lin->out_dim - last, last, &tail) ||
			 !chunk_primitives(&tail, last, lin, m, true))
		return 0;
	need = dnnl_memory_desc_get_size(&full.to);
	if (dnnl_memory_desc_get_size(&tail.to) > need)
		need = dnnl_memory_desc_get_size(&tail.to);
	if (pt_grow(&unpacked, &unpacked_bytes, need) == NULL)
		return 0;
	if (!grow_scratch(sizeof(uint16_t) * (size_t) m * rows))
		return 0;

	for (int r0 = 0; r0 < lin->out_dim; r0 += rows)
	{
		int			n = lin->out_dim - r0 < rows ? lin->out_dim - r0 : rows;
		/* r0 is a multiple of the block: its part starts at outer block r0 / block of dimension 0 */
		const uint16_t *part = (const uint16_t *) packed + r0 / row_block(&whole) * whole.format_desc.blocking.strides[0];

		/* rows [0, r0) of W are in dx: the caller finishes from r0 (see linear.h) */
		if (r0 / rows == fail_chunk ||
			!backward_chunk(lin, n == rows ? &full : &tail, part, dy, m, r0, n, dx, accumulate || r0 > 0))
			return r0;
	}
	return lin->out_dim;
}

/* ---- fp32 ------------------------------------------------------------------ */

bool
pt_dnnl_f32_matmul(const PtLinear *lin, bool backward, const float *x, int m, float *y, bool accumulate)
{
	int			k = backward ? lin->out_dim : lin->in_dim,
				n = backward ? lin->in_dim : lin->out_dim;

	if (!pt_dnnl_supported())
		return false;
	return run_pieces(backward ? KIND_F32_BACKWARD : KIND_F32_FORWARD, pt_dnnl_piece_rows(PT_MATH_FP32), lin, m, x, sizeof(float) * k,
					  y, sizeof(float) * n, accumulate);
}

/* ---- the ceiling, for ptune bench ------------------------------------------- */


double
pt_dnnl_matmul_gflops(PtMath math, int m, int n, int k, int reps)
{
	dnnl_data_type_t src_type = math == PT_MATH_BF16 ? dnnl_bf16 : math == PT_MATH_INT8 ? dnnl_s8 : dnnl_f32,
				dst_type = math == PT_MATH_INT8 ? dnnl_s32 : dnnl_f32;
	dnnl_dims_t wdims = {k, n},
				sdims = {m, k},
				ddims = {m, n};
	dnnl_memory_desc_t any,
				src_md,
				dst_md;
	dnnl_primitive_desc_t pd = NULL;
	dnnl_primitive_t prim = NULL;
	dnnl_memory_t src = NULL,
				weights = NULL,
				dst = NULL;
	double		best = 0.0;

	if ((math == PT_MATH_BF16 && !pt_bf16_supported()) || (math == PT_MATH_INT8 && !pt_int8_supported()) ||
		!pt_dnnl_supported())
		return 0.0;
	/* oneDNN's own best case: one primitive for all m rows, weights in the layout it prefers */
	if (dnnl_memory_desc_init_by_tag(&any, 2, wdims, src_type == dnnl_f32 ? dnnl_f32 : src_type == dnnl_bf16 ? dnnl_bf16 : dnnl_s8,
									 dnnl_format_tag_any) == dnnl_success &&
		(pd = matmul_desc(m, n, k, src_type, &any, dst_type, false)) != NULL &&
		dnnl_primitive_create(&prim, pd) == dnnl_success && reserve_scratchpad(prim) &&
		dnnl_memory_desc_init_by_tag(&src_md, 2, sdims, src_type, dnnl_ab) == dnnl_success &&
		dnnl_memory_desc_init_by_tag(&dst_md, 2, ddims, dst_type, dnnl_ab) == dnnl_success &&
		dnnl_memory_create(&src, &src_md, dnnl.engine, DNNL_MEMORY_ALLOCATE) == dnnl_success &&
		dnnl_memory_create(&weights, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0), dnnl.engine,
						   DNNL_MEMORY_ALLOCATE) == dnnl_success &&
		dnnl_memory_create(&dst, &dst_md, dnnl.engine, DNNL_MEMORY_ALLOCATE) == dnnl_success)
	{
		dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, dst}};
		void	   *p = NULL;

		/* zeros: the speed does not depend on the values, and nothing is uninitialised */
		if (dnnl_memory_get_data_handle(src, &p) == dnnl_success && p)
			memset(p, 0, dnnl_memory_desc_get_size(&src_md));
		if (dnnl_memory_get_data_handle(weights, &p) == dnnl_success && p)
			memset(p, 0, dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0)));
		for (int r = 0; r <= reps; r++)	/* the first run is a warm-up */
		{
			double		t = pt_seconds();

			if (!run_matmul(prim, args))
				break;
			t = pt_seconds() - t;
			if (r > 0 && (best == 0.0 || t < best))
				best = t;
		}
	}
	if (src)
		dnnl_memory_destroy(src);
	if (weights)
		dnnl_memory_destroy(weights);
	if (dst)
		dnnl_memory_destroy(dst);
	if (prim)
		dnnl_primitive_destroy(prim);
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	return best > 0 ? 2.0 * m * n * k / best * 1e-9 : 0.0;
}
